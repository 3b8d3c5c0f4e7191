package leaderboard

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/redisdb"
)

// Live updates. Every change written to a board's live ranking is announced
// on the board's sharded pub/sub channel (SPUBLISH, so that on Redis Cluster
// it stays on the board's shard). Each server instance keeps one
// subscription per board that has watchers, whoever wrote the change, and
// wakes its watchers; each watcher re-reads its view at most every
// WatchInterval and sends it when it changed.

// WatchInterval is the least time between two updates of one stream: changes
// in between are coalesced into the next update.
const WatchInterval = 250 * time.Millisecond

// watchRefresh re-reads a watched board even without announcements, so that
// one lost while Redis reconnected delays an update rather than loses it
// (Deps.WatchRefresh changes it).
const watchRefresh = 10 * time.Second

// Watch sends the ranking req selects, then an update whenever it changes,
// until ctx ends or send fails. Updates are coalesced: at most one per
// WatchInterval.
//
// Errors: as Ranking.
func (s *Service) Watch(ctx context.Context, p rallye.Principal, req RankingRequest, send func(Ranking) error) error {
	b, self, err := s.open(ctx, p, req.BoardID)
	if err != nil {
		return err
	}
	wake, stop, err := s.live.subscribe(ctx, b.ID)
	if err != nil {
		return err
	}
	defer stop()
	var last Ranking
	var sentAt time.Time
	refresh := time.NewTicker(s.watchRefresh)
	defer refresh.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-s.stopping:
				return nil
			case <-wake:
			case <-refresh.C:
			}
			if wait := WatchInterval - time.Since(sentAt); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-s.stopping:
					t.Stop()
					return nil
				case <-t.C:
				}
			}
			// Announcements received while waiting are covered by this read.
			select {
			case <-wake:
			default:
			}
		}
		if b.Frozen() || b.virtual {
			// A frozen board no longer changes; a virtual one gets a row
			// when someone scores.
			if nb, err := s.board(ctx, b.TenantID, b.ID); err == nil {
				b = nb
			}
		}
		r, err := s.read(ctx, b, self, req)
		if err != nil {
			if !first && rallye.ErrorCode(err) == rallye.CodeUnavailable {
				continue // rebuilding: the next announcement or refresh retries
			}
			return err
		}
		if first || !reflect.DeepEqual(r, last) {
			if err := send(r); err != nil {
				return err
			}
			last, sentAt = r, time.Now()
		}
	}
}

// hub shares one subscription per board among the instance's watchers.
//
// Locks: mu guards the map of feeds and is never held across a Redis round
// trip; each feed's own lock guards its watchers, so that fan-out on one
// board neither waits for a subscription being made on another nor for the
// hub. Order: mu, then a feed's lock.
type hub struct {
	rdb  redis.UniversalClient
	keys redisdb.Keyspace
	log  *slog.Logger
	// timeout bounds the making of a subscription (subscribeTimeout).
	timeout time.Duration
	mu      sync.Mutex
	feeds   map[uuid.UUID]*feed
	closed  bool
}

// feed is one board's subscription and its watchers.
type feed struct {
	// ready is closed once the subscription is active (ps set) or failed
	// (err set); ps and err do not change after.
	ready chan struct{}
	ps    *redis.PubSub
	err   error

	mu       sync.Mutex
	watchers map[chan struct{}]struct{}
}

// subscribeTimeout bounds the making of a board's subscription.
const subscribeTimeout = 10 * time.Second

func newHub(rdb redis.UniversalClient, keys redisdb.Keyspace, log *slog.Logger) *hub {
	return &hub{rdb: rdb, keys: keys, log: log, timeout: subscribeTimeout, feeds: map[uuid.UUID]*feed{}}
}

// subscribe returns a channel that receives a value (coalesced) after each
// announcement on the board, and a function to stop. When it returns, the
// subscription is active: no later change is missed. The first watcher of a
// board makes the subscription, outside the hub's lock; watchers arriving
// meanwhile join it and wait for it.
func (h *hub) subscribe(ctx context.Context, board uuid.UUID) (<-chan struct{}, func(), error) {
	wake := make(chan struct{}, 1)
	h.mu.Lock()
	if h.closed { // shutting down: the stream ends on its own
		h.mu.Unlock()
		return wake, func() {}, nil
	}
	f := h.feeds[board]
	first := f == nil
	if first {
		f = &feed{ready: make(chan struct{}), watchers: map[chan struct{}]struct{}{}}
		h.feeds[board] = f
	}
	f.mu.Lock()
	f.watchers[wake] = struct{}{}
	f.mu.Unlock()
	h.mu.Unlock()
	stop := func() { h.leave(board, f, wake) }
	if first {
		// The subscription is shared: it does not depend on the request
		// that happened to open it.
		go h.open(board, f)
	}
	select {
	case <-f.ready:
	case <-ctx.Done():
		stop()
		return nil, nil, ctx.Err()
	}
	if f.err != nil {
		stop()
		return nil, nil, &rallye.Error{Code: rallye.CodeUnavailable, Reason: "LIVE_UNAVAILABLE",
			Message: "live updates are unavailable for now; retry in a few seconds", Cause: f.err}
	}
	return wake, stop, nil
}

// open makes a feed's subscription and starts its fan-out, unless every
// watcher left (or the hub closed) meanwhile.
func (h *hub) open(board uuid.UUID, f *feed) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	ps := h.rdb.SSubscribe(context.Background(), keysOf(h.keys, board).live)
	_, err := ps.Receive(ctx) // the subscription's confirmation
	h.mu.Lock()
	f.mu.Lock()
	unwatched := len(f.watchers) == 0
	f.mu.Unlock()
	if err != nil || unwatched || h.closed {
		if h.feeds[board] == f {
			delete(h.feeds, board) // the next watcher subscribes again
		}
		if err == nil {
			err = errors.New("leaderboard: subscription no longer wanted")
		}
		f.err = err
	} else {
		f.ps = ps
		go h.fanOut(f)
	}
	close(f.ready)
	h.mu.Unlock()
	if f.ps == nil {
		_ = ps.Close()
		if !unwatched && !errors.Is(err, context.Canceled) {
			h.log.Warn("leaderboard: live subscription failed", "board_id", board, "error", err)
		}
	}
}

// leave removes a watcher; the last one of a board ends its subscription
// (or, while it is being made, lets open end it).
func (h *hub) leave(board uuid.UUID, f *feed, wake chan struct{}) {
	var ps *redis.PubSub
	h.mu.Lock()
	f.mu.Lock()
	delete(f.watchers, wake)
	last := len(f.watchers) == 0
	f.mu.Unlock()
	if last && h.feeds[board] == f {
		select {
		case <-f.ready:
			delete(h.feeds, board)
			ps = f.ps
		default: // open sees no watcher and ends it
		}
	}
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
}

// fanOut wakes the feed's watchers on each announcement, until the
// subscription is closed.
func (h *hub) fanOut(f *feed) {
	for range f.ps.Channel() {
		f.mu.Lock()
		for w := range f.watchers {
			select {
			case w <- struct{}{}:
			default: // already woken: coalesced
			}
		}
		f.mu.Unlock()
	}
}

// close ends every subscription.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	feeds := h.feeds
	h.feeds = map[uuid.UUID]*feed{}
	h.mu.Unlock()
	for _, f := range feeds {
		select {
		case <-f.ready:
			if f.ps != nil {
				_ = f.ps.Close()
			}
		default: // being made: open sees the hub closed and ends it
		}
	}
}
