package dashboard

import (
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/testutil"
)

// Two instances share a key prefix; watchers of three companies on both
// instances receive exactly their company's changes, whichever instance
// published them. It runs against the single node and, under
// `make test-cluster`, against Redis Cluster, where each company's channel
// lives on the shard of its hash tag.
func TestHubDeliversEachCompanysChangesAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	rdb, keys := testutil.Redis(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hubs := []*Hub{NewHub(rdb, keys, quiet), NewHub(rdb, keys, quiet)}
	for _, h := range hubs {
		go h.Run(ctx)
	}
	companies := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	for _, c := range companies {
		if ch := hubs[0].Channel(c); !strings.Contains(ch, "{t:"+c.String()+"}") || !strings.HasPrefix(ch, keys.Prefix) {
			t.Fatalf("channel %q: want the prefix and the company's hash tag", ch)
		}
	}

	type watcher struct {
		company uuid.UUID
		sub     *subscription
		got     map[uuid.UUID]bool
	}
	var watchers []*watcher
	for _, h := range hubs {
		for _, c := range companies {
			for range 2 {
				sub, stop, err := h.subscribe(ctx, c)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
				watchers = append(watchers, &watcher{company: c, sub: sub, got: map[uuid.UUID]bool{}})
			}
		}
	}

	// Random batches of measures, published by either instance; the
	// reference is the union of each company's measures.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	want := map[uuid.UUID]map[uuid.UUID]bool{}
	for _, c := range companies {
		want[c] = map[uuid.UUID]bool{}
	}
	for range 60 {
		c := companies[rng.IntN(len(companies))]
		measures := make([]uuid.UUID, 1+rng.IntN(4))
		for i := range measures {
			measures[i] = uuid.New()
			want[c][measures[i]] = true
		}
		hubs[rng.IntN(2)].Publish(ctx, c, measures)
	}

	deadline := time.Now().Add(20 * time.Second)
	for _, w := range watchers {
		for !maps.Equal(w.got, want[w.company]) {
			if len(w.got) > len(want[w.company]) {
				break
			}
			select {
			case <-w.sub.notify:
				pending, all := w.sub.take()
				if all {
					t.Fatal("a full refresh was asked without a reconnection")
				}
				maps.Copy(w.got, pending)
			case <-time.After(time.Until(deadline)):
				t.Fatalf("watcher of %s got %d of %d measures", w.company, len(w.got), len(want[w.company]))
			}
		}
		if !maps.Equal(w.got, want[w.company]) {
			foreign := slices.DeleteFunc(slices.Collect(maps.Keys(w.got)), func(m uuid.UUID) bool { return want[w.company][m] })
			t.Fatalf("watcher of %s got %d measures of other companies: %v", w.company, len(foreign), foreign)
		}
	}
}

// The last watcher of a company closes its subscription; the next one opens
// it again and receives what is published after it returned.
func TestHubSubscriptionFollowsItsWatchers(t *testing.T) {
	t.Parallel()
	ctx := testutil.Context(t)
	rdb, keys := testutil.Redis(t)
	h := NewHub(rdb, keys, slog.New(slog.NewTextHandler(io.Discard, nil)))
	company := uuid.New()
	open := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.companies)
	}
	for round := range 3 {
		sub, stop, err := h.subscribe(ctx, company)
		if err != nil {
			t.Fatal(err)
		}
		if n := open(); n != 1 {
			t.Fatalf("round %d: %d company subscriptions open, want 1", round, n)
		}
		m := uuid.New()
		h.Publish(ctx, company, []uuid.UUID{m})
		select {
		case <-sub.notify:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: no message", round)
		}
		if got, _ := sub.take(); !got[m] || len(got) != 1 {
			t.Fatalf("round %d: got %v, want %s", round, got, m)
		}
		stop()
		if n := open(); n != 0 {
			t.Fatalf("round %d: %d company subscriptions left open after the last watcher", round, n)
		}
	}
}
