// Package eventgen generates realistic sales activity with known ground
// truth, for tests and for the load command.
//
// It simulates reps day by day (calls, meetings, leads, opportunities moving
// through stages, deals won and lost, quotes, tickets, satisfaction
// answers, renewals and churn, training, content, marketing spend) and then
// delivers the events the way CRMs do: duplicated, corrected with a higher
// revision, retracted, reopened and won again, late and out of order.
//
// The ground truth is decided by construction, not by applying Rallye's
// rules: every scenario states which of its versions finally count (Truth),
// so tests compare Rallye's numbers with a straightforward computation on
// Truth.
package eventgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/rallyehq/rallye/internal/event"
)

// Rep is a simulated sales rep.
type Rep struct {
	ExternalID string
	// Skill scales the rep's activity and win rate (1 is average).
	Skill float64
}

// Config shapes a dataset.
type Config struct {
	Seed     uint64
	Source   string
	Currency string
	// Events occur in [Start, End), cut into days in Location.
	Start, End time.Time
	Location   *time.Location
	Reps       []Rep
	// Activity scales every rate (1: a typical rep's day, about 15 events).
	Activity float64
	// Noise rates, each a probability per eligible event.
	DuplicateRate  float64 // re-sent identically
	CorrectionRate float64 // first sent wrong, then corrected by a higher revision
	RetractionRate float64 // sent, then retracted
	ReopenRate     float64 // a closed deal reopened (and half the time won again)
	StaleRate      float64 // an older revision arriving after the newer one
	// LateRate is the share of deliveries postponed by up to LateDays days.
	LateRate float64
	LateDays int
}

// Default returns a realistic configuration for reps over [start, end).
func Default(seed uint64, reps []Rep, start, end time.Time, loc *time.Location) Config {
	return Config{
		Seed: seed, Source: "crm", Currency: "EUR", Start: start, End: end, Location: loc, Reps: reps,
		Activity: 1, DuplicateRate: 0.03, CorrectionRate: 0.03, RetractionRate: 0.01, ReopenRate: 0.08,
		StaleRate: 0.01, LateRate: 0.05, LateDays: 3,
	}
}

// Delivery is one event as a source sends it.
type Delivery struct {
	Event     event.Event
	HasAmount bool
}

// Generate simulates Config and calls deliver for every delivery, in
// delivery order, and truth for every event version that finally counts.
// Either callback may be nil.
func Generate(cfg Config, deliver func(Delivery) error, truth func(event.Event)) error {
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Activity == 0 {
		cfg.Activity = 1
	}
	g := &generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), truth: truth}
	if g.truth == nil {
		g.truth = func(event.Event) {}
	}
	start := startOfDay(cfg.Start.In(cfg.Location))
	for day := start; day.Before(cfg.End); day = day.AddDate(0, 0, 1) {
		g.simulateDay(day)
		if err := g.flush(day.AddDate(0, 0, 1), deliver); err != nil {
			return err
		}
	}
	return g.flush(time.Time{}, deliver)
}

func startOfDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

type pending struct {
	at time.Time // delivery time
	d  Delivery
}

type generator struct {
	cfg   Config
	rng   *rand.Rand
	truth func(event.Event)
	seq   int
	queue []pending
}

var (
	segments = []string{"smb", "mid-market", "enterprise"}
	products = []string{"platform", "analytics", "support-plus"}
	channels = []string{"ads", "events", "content"}
	stages   = []string{"qualification", "discovery", "proposal", "negotiation"}
)

func (g *generator) id(prefix string) string {
	g.seq++
	return fmt.Sprintf("%s-%d-%d", prefix, g.cfg.Seed, g.seq)
}

func (g *generator) poisson(lambda float64) int {
	// Knuth's method; the lambdas here are small.
	l, k, p := math.Exp(-lambda*g.cfg.Activity), 0, 1.0
	for {
		p *= g.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// at returns a random instant of the working day (8:00-19:00 local).
func (g *generator) at(day time.Time) time.Time {
	return day.Add(8*time.Hour + time.Duration(g.rng.Int64N(int64(11*time.Hour))))
}

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p }

func (g *generator) pick(xs []string) string { return xs[g.rng.IntN(len(xs))] }

func (g *generator) money(median float64) int64 {
	v := median * math.Exp(g.rng.NormFloat64()*0.5)
	return int64(math.Round(v)) * 100 // whole euros, in cents
}

func (g *generator) base(t event.Type, at time.Time, rep string) event.Event {
	return event.Event{
		Source: g.cfg.Source, ExternalID: g.id(string(t)), Type: t, OccurredAt: at.UTC(), RepExternalID: rep,
		Currency: g.cfg.Currency,
	}
}

// truncate rounds every time of e down to the second, as CRMs send them.
func truncate(e *event.Event) {
	for _, t := range []*time.Time{&e.OccurredAt, &e.OpportunityCreatedAt, &e.StageEnteredAt, &e.LeadCreatedAt, &e.TicketOpenedAt} {
		*t = t.Truncate(time.Second)
	}
}

// earliest is the instant before which e cannot have occurred.
func earliest(e event.Event) time.Time {
	var t time.Time
	for _, c := range []time.Time{e.OpportunityCreatedAt, e.StageEnteredAt, e.LeadCreatedAt, e.TicketOpenedAt} {
		if c.After(t) {
			t = c
		}
	}
	return t
}

// emit sends e once (with the configured noise) and records it as truth.
func (g *generator) emit(e event.Event, hasAmount bool) {
	truncate(&e)
	if !e.OccurredAt.Before(g.cfg.End) || e.OccurredAt.Before(g.cfg.Start) {
		return
	}
	deliverAt := e.OccurredAt
	if g.chance(g.cfg.LateRate) && g.cfg.LateDays > 0 {
		deliverAt = deliverAt.Add(time.Duration(g.rng.Int64N(int64(g.cfg.LateDays) * int64(24*time.Hour))))
	}
	switch {
	case g.chance(g.cfg.RetractionRate):
		g.send(deliverAt, e, hasAmount)
		r := e
		r.Revision, r.Retracted = e.Revision+1, true
		g.send(deliverAt.Add(time.Hour), r, hasAmount)
		return // retracted: not in the truth
	case g.chance(g.cfg.CorrectionRate):
		wrong := e
		// Deals are corrected on their amount only: moving a close in time
		// could cross a reopening.
		if hasAmount && e.Amount > 0 || e.IsClosing() {
			wrong.Amount = e.Amount + g.money(300)
		} else {
			wrong.OccurredAt = e.OccurredAt.Add(-time.Duration(g.rng.Int64N(48)) * time.Hour)
			if wrong.OccurredAt.Before(g.cfg.Start) || wrong.OccurredAt.Before(earliest(e)) {
				wrong.OccurredAt = e.OccurredAt
			}
		}
		right := e
		right.Revision = e.Revision + 1
		g.send(deliverAt, wrong, hasAmount)
		g.send(deliverAt.Add(2*time.Hour), right, hasAmount)
		if g.chance(g.cfg.StaleRate / g.cfg.CorrectionRate) {
			g.send(deliverAt.Add(3*time.Hour), wrong, hasAmount) // the old revision arrives late
		}
		g.truth(right)
	default:
		g.send(deliverAt, e, hasAmount)
		g.truth(e)
	}
	if g.chance(g.cfg.DuplicateRate) {
		g.send(deliverAt.Add(time.Duration(g.rng.Int64N(int64(24*time.Hour)))), e, hasAmount)
	}
}

func (g *generator) send(at time.Time, e event.Event, hasAmount bool) {
	truncate(&e)
	g.queue = append(g.queue, pending{at: at, d: Delivery{Event: e, HasAmount: hasAmount}})
}

// flush delivers, in delivery-time order, what is due before until (all
// when until is zero).
func (g *generator) flush(until time.Time, deliver func(Delivery) error) error {
	slices.SortStableFunc(g.queue, func(a, b pending) int { return a.at.Compare(b.at) })
	n := 0
	for _, p := range g.queue {
		if !until.IsZero() && !p.at.Before(until) {
			break
		}
		n++
		if deliver != nil {
			if err := deliver(p.d); err != nil {
				return err
			}
		}
	}
	g.queue = append(g.queue[:0], g.queue[n:]...)
	return nil
}
