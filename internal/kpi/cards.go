package kpi

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Card is what a dashboard shows of a KPI for a scope: the value of the
// period, the previous period's, the target with its status, the
// projection and a series for charts.
type Card struct {
	KPI KPI
	// Period is the period read: of the requested kind (or of the KPI's
	// default kind when none was requested), never another.
	Period period.Period
	// Unavailable: the KPI is not read over the requested period kind (its
	// definition does not offer it), so the card has no value and no
	// series; Period is still the requested one.
	Unavailable bool
	// Version is the definition version the period was read with.
	Version  int
	Value    Value
	Previous *float64
	// Target is nil when none is set for this KPI, period kind and scope.
	Target     *Target
	Status     Status
	Projection Projection
	// WillMeetTarget compares the projection with the target.
	WillMeetTarget *bool
	// Series ends with Period, oldest first.
	Series []Point
}

// Point is one period of a series.
type Point struct {
	Period period.Period
	Value  *float64
}

// CardsRequest asks for cards.
type CardsRequest struct {
	// Keys are the KPIs, in the order wanted.
	Keys []string
	// Scopes are read alike (all of one kind); the result has one row per
	// scope.
	Scopes []ScopeRef
	// Kind is the period kind wanted; a KPI not read over it gives an
	// Unavailable card (never another kind). "" uses every KPI's default.
	Kind period.Kind
	// At picks the period (the one containing it); zero is now.
	At time.Time
	// SeriesLength is the number of periods in each series, the current one
	// included (0: a default per kind; at least 2).
	SeriesLength int
}

// DefaultSeriesLength is how many periods a series shows by default.
func DefaultSeriesLength(k period.Kind) int {
	switch k {
	case period.Day:
		return 14
	case period.Week, period.Month:
		return 12
	case period.Quarter:
		return 8
	}
	return 5
}

// Cards returns out[scope][key] for the requested keys (archived and
// unknown keys are left out).
func (s *Service) Cards(ctx context.Context, tenantID uuid.UUID, req CardsRequest) ([][]Card, error) {
	var out [][]Card
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		r, err := s.newReader(ctx, tx, tenantID, s.Now())
		if err != nil {
			return err
		}
		targets, err := loadTargets(ctx, tx, tenantID, "")
		if err != nil {
			return err
		}
		out, err = r.cards(ctx, targets, req)
		return err
	})
	return out, err
}

type targetKey struct {
	kpi   uuid.UUID
	kind  period.Kind
	scope ScopeRef
}

func (r *reader) cards(ctx context.Context, targets []Target, req CardsRequest) ([][]Card, error) {
	at := req.At
	if at.IsZero() {
		at = r.now
	}
	byTarget := map[targetKey]*Target{}
	for i := range targets {
		t := &targets[i]
		byTarget[targetKey{t.KPIID, t.PeriodKind, t.Scope}] = t
	}
	var keys, unavailable []string
	byKind := map[period.Kind][]string{}
	for _, k := range req.Keys {
		kp, ok := r.kpis[k]
		if !ok || slices.Contains(keys, k) {
			continue
		}
		keys = append(keys, k)
		periods := kp.Current().Definition.Periods
		kind := req.Kind
		switch {
		case kind == "":
			kind = periods[0]
		case !slices.Contains(periods, kind):
			unavailable = append(unavailable, k)
			continue
		}
		byKind[kind] = append(byKind[kind], k)
	}
	cards := make([][]Card, len(req.Scopes))
	for i := range cards {
		cards[i] = make([]Card, len(keys))
	}
	if len(unavailable) > 0 {
		p := period.Of(req.Kind, at, r.loc)
		for si := range req.Scopes {
			for _, k := range unavailable {
				kp := r.kpis[k]
				cards[si][slices.Index(keys, k)] = Card{KPI: kp, Period: p, Version: kp.VersionFor(p.End).Number, Unavailable: true}
			}
		}
	}
	for kind, ks := range byKind {
		n := req.SeriesLength
		if n <= 0 {
			n = DefaultSeriesLength(kind)
		}
		n = max(n, 2)
		periods := Series(kind, at, r.loc, n)
		vals, err := r.values(ctx, ks, req.Scopes, periods)
		if err != nil {
			return nil, err
		}
		cur, prev := len(periods)-1, len(periods)-2
		for si, scope := range req.Scopes {
			for _, k := range ks {
				kp := r.kpis[k]
				def := kp.Current().Definition
				c := Card{KPI: kp, Period: periods[cur], Version: kp.VersionFor(periods[cur].End).Number,
					Value: vals[si][cur][k], Previous: vals[si][prev][k].Value}
				for pi, p := range periods {
					c.Series = append(c.Series, Point{Period: p, Value: vals[si][pi][k].Value})
				}
				c.Projection = project(def.Formula.Aggregation, c.Period, r.now, c.Value.Value, c.Previous)
				if t := byTarget[targetKey{kp.ID, kind, scope}]; t != nil {
					c.Target = t
					judged := c.Projection.Value
					c.Status = statusOf(def.Direction, *t, judged)
					c.WillMeetTarget = meets(def.Direction, t.Target, judged)
				}
				cards[si][slices.Index(keys, k)] = c
			}
		}
	}
	return cards, nil
}

// KeysOfLevel returns the keys of the company's active KPIs of a level, in
// dashboard order.
func (s *Service) KeysOfLevel(ctx context.Context, tenantID uuid.UUID, level int) ([]string, error) {
	ks, err := s.List(ctx, rallye.Principal{TenantID: tenantID}, ListRequest{Level: level})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Key
	}
	return out, nil
}

// Dependencies returns the measures a set of KPIs reads, through
// composites and across versions: a change to any of them may change the
// KPIs' values.
func (s *Service) Dependencies(ctx context.Context, tenantID uuid.UUID, keys []string) (map[uuid.UUID][]string, error) {
	out := map[uuid.UUID][]string{}
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		all, err := loadKPIs(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		for _, key := range keys {
			seen := map[string]bool{}
			var visit func(k string) error
			visit = func(k string) error {
				kp, ok := all[k]
				if !ok || seen[k] {
					return nil
				}
				seen[k] = true
				for _, v := range kp.Versions {
					pl, err := s.compiler.plan(v.Definition)
					if err != nil {
						return err
					}
					for _, m := range pl.measures() {
						if !slices.Contains(out[m.ID()], key) {
							out[m.ID()] = append(out[m.ID()], key)
						}
					}
					for _, ref := range pl.refs {
						if err := visit(ref); err != nil {
							return err
						}
					}
				}
				return nil
			}
			if err := visit(key); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}
