package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/redisdb"
)

// Hub fans roll-up changes out to the Watch streams of every server
// instance. The instance whose feed consumer committed a batch publishes the
// changed measures on the company's sharded channel (SPUBLISH): its hash tag
// is the company, so on Redis Cluster a company's messages stay on the shard
// that owns its slot instead of being broadcast to every node, as classic
// (and pattern) pub/sub is. Each instance subscribes (SSUBSCRIBE) to the
// channels of the companies it has watchers for, one subscription per
// company shared by its watchers, opened by the first and closed with the
// last.
type Hub struct {
	rdb       redis.UniversalClient
	keys      redisdb.Keyspace
	log       *slog.Logger
	mu        sync.Mutex
	companies map[uuid.UUID]*companyFeed
	ready     chan struct{}
	readyMu   sync.Once
}

// companyFeed is one company's subscription and the local watchers it wakes.
type companyFeed struct {
	ps     *redis.PubSub
	subs   map[*subscription]struct{}
	closed bool
}

// NewHub returns a hub publishing and subscribing under keys.
func NewHub(rdb redis.UniversalClient, keys redisdb.Keyspace, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, keys: keys, log: log, companies: map[uuid.UUID]*companyFeed{}, ready: make(chan struct{})}
}

// Channel is the sharded pub/sub channel of a company's KPI changes.
func (h *Hub) Channel(tenantID uuid.UUID) string {
	return h.keys.Tagged("t:"+tenantID.String(), "kpi", "changed")
}

type changeMessage struct {
	Measures []uuid.UUID `json:"m"`
}

// Publish announces that measures of a company changed. Losing a message
// only delays a watcher until its periodic refresh.
func (h *Hub) Publish(ctx context.Context, tenantID uuid.UUID, measures []uuid.UUID) {
	b, _ := json.Marshal(changeMessage{Measures: measures})
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := h.rdb.SPublish(ctx, h.Channel(tenantID), b).Err(); err != nil {
		h.log.Warn("publish kpi changes failed", "tenant_id", tenantID, "error", err)
	}
}

// Ready is closed once Run started. Watch subscribes before it reads, so no
// later change is missed whether Run runs or not.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run keeps the hub until ctx ends, then closes its subscriptions (their
// watchers fall back to their periodic refresh until they stop).
func (h *Hub) Run(ctx context.Context) {
	h.readyMu.Do(func() { close(h.ready) })
	<-ctx.Done()
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, f := range h.companies {
		f.closed = true
		_ = f.ps.Close()
		delete(h.companies, id)
	}
}

// open subscribes to a company's channel and waits for the confirmation.
func (h *Hub) open(ctx context.Context, tenantID uuid.UUID) (*redis.PubSub, error) {
	// The subscription outlives the request that opened it (it is shared).
	ps := h.rdb.SSubscribe(context.WithoutCancel(ctx), h.Channel(tenantID))
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, &rallye.Error{Code: rallye.CodeUnavailable, Message: "Live updates are unavailable for a moment; try again.",
			Cause: fmt.Errorf("subscribe to kpi changes: %w", err)}
	}
	return ps, nil
}

// fanOut hands a company's messages to its watchers until the subscription
// closes. A resubscription (go-redis reconnected) may have missed changes,
// so every watcher recomputes; a subscription the server ended (its slot
// moved to another node) is opened again where the slot now lives.
func (h *Hub) fanOut(tenantID uuid.UUID, f *companyFeed) {
	ps := f.ps
	for {
		for msg := range ps.ChannelWithSubscriptions(redis.WithChannelSize(1000)) {
			switch m := msg.(type) {
			case *redis.Message:
				var c changeMessage
				if json.Unmarshal([]byte(m.Payload), &c) == nil {
					h.dispatch(f, c.Measures, false)
				}
			case *redis.Subscription:
				switch m.Kind {
				case "ssubscribe":
					h.dispatch(f, nil, true)
				case "sunsubscribe":
					_ = ps.Close() // ends this loop; reopened below unless closing
				}
			}
		}
		var err error
		for {
			h.mu.Lock()
			closed := f.closed
			h.mu.Unlock()
			if closed {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ps, err = h.open(ctx, tenantID)
			cancel()
			if err == nil {
				break
			}
			h.log.Warn("kpi change subscription interrupted; resubscribing", "tenant_id", tenantID, "error", err)
			time.Sleep(time.Second)
		}
		h.mu.Lock()
		if f.closed {
			h.mu.Unlock()
			_ = ps.Close()
			return
		}
		f.ps = ps
		h.mu.Unlock()
		h.dispatch(f, nil, true)
	}
}

func (h *Hub) dispatch(f *companyFeed, measures []uuid.UUID, all bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range f.subs {
		s.add(measures, all)
	}
}

// subscription collects the measures changed since its watcher last looked.
type subscription struct {
	mu      sync.Mutex
	pending map[uuid.UUID]bool
	all     bool
	notify  chan struct{}
}

func (s *subscription) add(measures []uuid.UUID, all bool) {
	s.mu.Lock()
	for _, m := range measures {
		s.pending[m] = true
	}
	s.all = s.all || all
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *subscription) take() (map[uuid.UUID]bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, all := s.pending, s.all
	s.pending, s.all = map[uuid.UUID]bool{}, false
	return p, all
}

// subscribe registers a watcher of a company. When it returns, the
// company's subscription is active: no later change is missed.
func (h *Hub) subscribe(ctx context.Context, tenantID uuid.UUID) (*subscription, func(), error) {
	s := &subscription{pending: map[uuid.UUID]bool{}, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.companies[tenantID]
	if f == nil {
		ps, err := h.open(ctx, tenantID)
		if err != nil {
			return nil, nil, err
		}
		f = &companyFeed{ps: ps, subs: map[*subscription]struct{}{}}
		h.companies[tenantID] = f
		go h.fanOut(tenantID, f)
	}
	f.subs[s] = struct{}{}
	return s, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(f.subs, s)
		if len(f.subs) == 0 && h.companies[tenantID] == f {
			delete(h.companies, tenantID)
			f.closed = true
			_ = f.ps.Close()
		}
	}, nil
}

// Update is what Watch sends: the board at first, then changed cards.
type Update struct {
	Board    Board
	Snapshot bool
	At       time.Time
}

// Watch sends the board of a level, then the cards whose values changed:
// on each roll-up change of a measure they read (recomputing only those
// KPIs, from roll-ups, at most every Coalesce), and on a periodic refresh.
// It returns when ctx ends or send fails.
func (s *Service) Watch(ctx context.Context, p rallye.Principal, level int, req Request, send func(Update) error) error {
	pl, err := s.resolve(ctx, p, level, req)
	if err != nil {
		return err
	}
	pl.roster = uuid.Nil // Watch streams the cards of one scope
	if level == 3 && req.TeamID != uuid.Nil {
		return rallye.Invalid("team_id", "watch one person at level 3")
	}
	sub, cancel, err := s.hub.subscribe(ctx, p.TenantID)
	if err != nil {
		return err
	}
	defer cancel()
	board, err := s.read(ctx, p, pl, req, pl.keys)
	if err != nil {
		return err
	}
	last := map[string]string{}
	for _, c := range board.Cards {
		last[c.KPI.Key] = fingerprint(c)
	}
	if err := send(Update{Board: board, Snapshot: true, At: time.Now()}); err != nil {
		return err
	}
	deps, err := s.kpi.Dependencies(ctx, p.TenantID, pl.keys)
	if err != nil {
		return err
	}
	refresh := time.NewTicker(s.Refresh)
	defer refresh.Stop()
	for {
		var keys []string
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return nil
		case <-refresh.C:
			if pl.keys, err = s.kpi.KeysOfLevel(ctx, p.TenantID, level); err != nil {
				return err
			}
			if deps, err = s.kpi.Dependencies(ctx, p.TenantID, pl.keys); err != nil {
				return err
			}
			keys = pl.keys
		case <-sub.notify:
			// Gather what else arrives shortly, so that a burst of
			// batches costs one recomputation.
			select {
			case <-ctx.Done():
				return nil
			case <-s.stopping:
				return nil
			case <-time.After(s.Coalesce):
			}
			changed, all := sub.take()
			if all {
				keys = pl.keys
				break
			}
			seen := map[string]bool{}
			for m := range changed {
				for _, k := range deps[m] {
					if !seen[k] {
						seen[k] = true
						keys = append(keys, k)
					}
				}
			}
		}
		if len(keys) == 0 {
			continue
		}
		b, err := s.read(ctx, p, pl, req, keys)
		if err != nil {
			return err
		}
		var changedCards []kpi.Card
		for _, c := range b.Cards {
			if f := fingerprint(c); f != last[c.KPI.Key] {
				last[c.KPI.Key] = f
				changedCards = append(changedCards, c)
			}
		}
		if len(changedCards) == 0 {
			continue
		}
		b.Cards = changedCards
		if err := send(Update{Board: b, At: time.Now()}); err != nil {
			return err
		}
	}
}

func fp(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.9g", *v)
}

// fingerprint tells whether a card changed for its watcher.
func fingerprint(c kpi.Card) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|%s|%s|%s|%d|%s|%v|%v|%v|", c.Period.Key(), c.Version, fp(c.Value.Value), fp(c.Previous),
		fp(c.Projection.Value), c.Status, fp(c.Projection.Trend), c.Value.Computing, c.Value.NotApplicable, c.Unavailable)
	if c.Target != nil {
		fmt.Fprintf(&b, "%g/%g/%g|", c.Target.Target, c.Target.AtRisk, c.Target.OffTrack)
	}
	for _, d := range c.Value.Breakdown {
		fmt.Fprintf(&b, "%s=%s,", d.Dim, fp(d.Value))
	}
	for _, pt := range c.Series {
		b.WriteString(fp(pt.Value) + ",")
	}
	return b.String()
}
