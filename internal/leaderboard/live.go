package leaderboard

import (
	"context"
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
// one lost while Redis reconnected delays an update rather than loses it.
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
	refresh := time.NewTicker(watchRefresh)
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
type hub struct {
	rdb   redis.UniversalClient
	keys  redisdb.Keyspace
	log   *slog.Logger
	mu    sync.Mutex
	feeds map[uuid.UUID]*feed
}

type feed struct {
	ps       *redis.PubSub
	watchers map[chan struct{}]struct{}
}

func newHub(rdb redis.UniversalClient, keys redisdb.Keyspace, log *slog.Logger) *hub {
	return &hub{rdb: rdb, keys: keys, log: log, feeds: map[uuid.UUID]*feed{}}
}

// subscribe returns a channel that receives a value (coalesced) after each
// announcement on the board, and a function to stop. When it returns, the
// subscription is active: no later change is missed.
func (h *hub) subscribe(ctx context.Context, board uuid.UUID) (<-chan struct{}, func(), error) {
	wake := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.feeds[board]
	if f == nil {
		// The subscription outlives the request that opened it (it is shared).
		ps := h.rdb.SSubscribe(context.WithoutCancel(ctx), keysOf(h.keys, board).live)
		if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
			_ = ps.Close()
			return nil, nil, err
		}
		f = &feed{ps: ps, watchers: map[chan struct{}]struct{}{}}
		h.feeds[board] = f
		go h.fanOut(f)
	}
	f.watchers[wake] = struct{}{}
	stop := func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(f.watchers, wake)
		if len(f.watchers) == 0 && h.feeds[board] == f {
			delete(h.feeds, board)
			_ = f.ps.Close()
		}
	}
	return wake, stop, nil
}

func (h *hub) fanOut(f *feed) {
	for range f.ps.Channel() {
		h.mu.Lock()
		for w := range f.watchers {
			select {
			case w <- struct{}{}:
			default: // already woken: coalesced
			}
		}
		h.mu.Unlock()
	}
}

// close ends every subscription.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, f := range h.feeds {
		_ = f.ps.Close()
		delete(h.feeds, id)
	}
}
