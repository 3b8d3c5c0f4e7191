package leaderboard

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/testutil"
)

// gate is a TCP proxy to Redis that can hold new connections: while it
// holds, a connection is accepted but nothing flows until it opens, as
// with a Redis node slow to answer. Connections made before keep flowing.
type gate struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	open     chan struct{} // closed: new connections flow
	conns    []net.Conn
}

func newGate(t *testing.T, upstream string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, upstream: upstream, open: make(chan struct{})}
	close(g.open)
	go g.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		g.mu.Lock()
		defer g.mu.Unlock()
		g.release()
		for _, c := range g.conns {
			_ = c.Close()
		}
	})
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }

// hold makes new connections wait until release.
func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gate) release() {
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.release()
}

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		open := g.open
		g.conns = append(g.conns, c)
		g.mu.Unlock()
		go func() {
			<-open
			up, err := net.Dial("tcp", g.upstream)
			if err != nil {
				_ = c.Close()
				return
			}
			g.mu.Lock()
			g.conns = append(g.conns, up)
			g.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			_, _ = io.Copy(c, up)
			_ = c.Close()
		}()
	}
}

// woken waits for a wake-up, generously.
func woken(t *testing.T, what string, wake <-chan struct{}) {
	t.Helper()
	select {
	case <-wake:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s was not woken", what)
	}
}

// TestSlowSubscriptionDoesNotStallOtherBoards makes one board's
// subscription hang (its Redis connection held by a proxy) and checks that
// the hub keeps working meanwhile: announcements on another board still
// reach its watchers, a watcher joins an existing subscription at once,
// the watchers of the slow board share one subscription, and once it is
// made none of them misses the next announcement.
func TestSlowSubscriptionDoesNotStallOtherBoards(t *testing.T) {
	direct, keys := testutil.RedisNode(t) // the node the proxy fronts
	opt, err := redis.ParseURL(testutil.RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	g := newGate(t, opt.Addr)
	opt.Addr = g.addr()
	opt.ReadTimeout, opt.DialTimeout = time.Minute, time.Minute
	proxied := redis.NewClient(opt)
	t.Cleanup(func() { _ = proxied.Close() })
	h := newHub(proxied, keys, slog.New(slog.DiscardHandler))
	h.timeout = time.Minute
	t.Cleanup(h.close)
	ctx := testutil.Context(t)
	announce := func(board uuid.UUID) {
		t.Helper()
		if err := direct.SPublish(ctx, keysOf(keys, board).live, 1).Err(); err != nil {
			t.Fatal(err)
		}
	}
	subscribers := func(board uuid.UUID) int64 {
		t.Helper()
		n, err := direct.PubSubShardNumSub(ctx, keysOf(keys, board).live).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[keysOf(keys, board).live]
	}

	quick, slow := uuid.New(), uuid.New()
	wakeQuick, stopQuick, err := h.subscribe(ctx, quick)
	if err != nil {
		t.Fatal(err)
	}
	defer stopQuick()

	// Every new Redis connection now hangs: the slow board's watchers wait
	// for their subscription.
	g.hold()
	const waiting = 4
	type sub struct {
		wake <-chan struct{}
		stop func()
		err  error
	}
	subs := make(chan sub, waiting)
	for range waiting {
		go func() {
			w, s, err := h.subscribe(ctx, slow)
			subs <- sub{w, s, err}
		}()
	}
	// One more gives up while the subscription is being made.
	impatient, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, _, err := h.subscribe(impatient, slow)
		gaveUp <- err
	}()

	// Meanwhile the quick board's announcements still reach its watchers,
	// and a second watcher joins its subscription without a round trip.
	for i := range 3 {
		announce(quick)
		woken(t, "the quick board's watcher", wakeQuick)
		if i == 0 {
			w2, stop2, err := h.subscribe(ctx, quick)
			if err != nil {
				t.Fatal(err)
			}
			announce(quick)
			woken(t, "the quick board's second watcher", w2)
			woken(t, "the quick board's watcher", wakeQuick)
			stop2()
		}
	}
	select {
	case s := <-subs:
		t.Fatalf("a watcher of the slow board returned before its subscription was made (%v)", s.err)
	default:
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("the impatient watcher got %v", err)
	}

	g.Release()
	var got []sub
	for range waiting {
		select {
		case s := <-subs:
			if s.err != nil {
				t.Fatal(s.err)
			}
			got = append(got, s)
		case <-time.After(time.Minute):
			t.Fatal("the slow board's watchers still wait after Redis answered")
		}
	}
	if n := subscribers(slow); n != 1 {
		t.Fatalf("%d subscriptions for the slow board's %d watchers, want one", n, waiting)
	}
	announce(slow)
	for _, s := range got {
		woken(t, "a slow board's watcher", s.wake)
	}
	for _, s := range got {
		s.stop()
	}
	deadline := time.Now().Add(20 * time.Second)
	for subscribers(slow) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow board's subscription outlived its watchers")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
