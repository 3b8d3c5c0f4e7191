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
// instance: the instance whose feed consumer committed a batch publishes
// the changed measures on the company's Redis channel; each instance holds
// one pattern subscription and hands the messages to its local watchers.
type Hub struct {
	rdb     redis.UniversalClient
	prefix  string
	log     *slog.Logger
	mu      sync.Mutex
	subs    map[uuid.UUID]map[*subscription]struct{}
	ready   chan struct{}
	readyMu sync.Once
}

// NewHub returns a hub publishing and subscribing under keys.
func NewHub(rdb redis.UniversalClient, keys redisdb.Keyspace, log *slog.Logger) *Hub {
	return &Hub{rdb: rdb, prefix: keys.Key("kpi", "changed", ""), log: log,
		subs: map[uuid.UUID]map[*subscription]struct{}{}, ready: make(chan struct{})}
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
	if err := h.rdb.Publish(ctx, h.prefix+tenantID.String(), b).Err(); err != nil {
		h.log.Warn("publish kpi changes failed", "tenant_id", tenantID, "error", err)
	}
}

// Ready is closed once the hub's subscription is active.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run subscribes and dispatches until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := h.runOnce(ctx); err != nil && ctx.Err() == nil {
			h.log.Warn("kpi change subscription interrupted; resubscribing", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (h *Hub) runOnce(ctx context.Context) error {
	ps := h.rdb.PSubscribe(ctx, h.prefix+"*")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		return err
	}
	h.readyMu.Do(func() { close(h.ready) })
	h.dispatchAll() // what changed while we were not subscribed
	ch := ps.Channel(redis.WithChannelSize(1000))
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return fmt.Errorf("subscription closed")
			}
			id, err := uuid.Parse(strings.TrimPrefix(msg.Channel, h.prefix))
			if err != nil {
				continue
			}
			var m changeMessage
			if json.Unmarshal([]byte(msg.Payload), &m) != nil {
				continue
			}
			h.dispatch(id, m.Measures, false)
		}
	}
}

func (h *Hub) dispatch(tenantID uuid.UUID, measures []uuid.UUID, all bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs[tenantID] {
		s.add(measures, all)
	}
}

func (h *Hub) dispatchAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, subs := range h.subs {
		for s := range subs {
			s.add(nil, true)
		}
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

func (h *Hub) subscribe(tenantID uuid.UUID) (*subscription, func()) {
	s := &subscription{pending: map[uuid.UUID]bool{}, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.subs[tenantID] == nil {
		h.subs[tenantID] = map[*subscription]struct{}{}
	}
	h.subs[tenantID][s] = struct{}{}
	h.mu.Unlock()
	return s, func() {
		h.mu.Lock()
		delete(h.subs[tenantID], s)
		if len(h.subs[tenantID]) == 0 {
			delete(h.subs, tenantID)
		}
		h.mu.Unlock()
	}
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
	sub, cancel := s.hub.subscribe(p.TenantID)
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
	fmt.Fprintf(&b, "%s|%d|%s|%s|%s|%d|%s|%v|", c.Period.Key(), c.Version, fp(c.Value.Value), fp(c.Previous),
		fp(c.Projection.Value), c.Status, fp(c.Projection.Trend), c.Value.Computing)
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
