package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/event/eventgen"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Activity is what the demo's KPIs need.
type Activity struct {
	KPI    *kpi.Service
	Events *event.Store
	// Drain applies the change feed and computes new KPIs' history, when no
	// server does it (rallye demo); nil when a server runs.
	Drain func(ctx context.Context, tenantID uuid.UUID) error
	// Now is the end of the generated history.
	Now time.Time
}

// HistoryDays is how much generated history the demo company gets.
const HistoryDays = 42

// SeedKPIs installs the seed model in the demo company, sets targets, and
// ingests HistoryDays of generated activity of its reps. Idempotent: the
// model keeps existing KPIs, targets are set to the same values, and the
// history is sent only to a company without events.
func SeedKPIs(ctx context.Context, res Result, a Activity) error {
	op := rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	if _, err := a.KPI.InstallModel(ctx, op, uuid.Nil); err != nil {
		return fmt.Errorf("demo model: %w", err)
	}
	targets := []kpi.SetTargetRequest{
		{KPIKey: "net_revenue", PeriodKind: period.Month, Scope: kpi.Company, Target: 60000},
		{KPIKey: "conversion_rate", PeriodKind: period.Month, Scope: kpi.Company, Target: 0.3},
		{KPIKey: "renewal_rate", PeriodKind: period.Month, Scope: kpi.Company, Target: 0.85},
		{KPIKey: "nps", PeriodKind: period.Month, Scope: kpi.Company, Target: 30},
		{KPIKey: "win_rate", PeriodKind: period.Month, Scope: kpi.Company, Target: 0.4},
		{KPIKey: "deals_at_risk", PeriodKind: period.Month, Scope: kpi.Company, Target: 10},
	}
	var reps []eventgen.Rep
	for _, p := range res.People {
		if slices.Contains(p.Roles, rallye.RoleRep) {
			reps = append(reps, eventgen.Rep{ExternalID: p.ExternalID, Skill: 0.8 + 0.1*float64(len(reps)%4)})
			targets = append(targets, kpi.SetTargetRequest{KPIKey: "prospecting_activity", PeriodKind: period.Week,
				Scope: kpi.ScopeRef{Kind: kpi.ScopePerson, ID: p.ID}, Target: 40})
		}
	}
	for _, t := range res.Teams {
		targets = append(targets, kpi.SetTargetRequest{KPIKey: "deals_won", PeriodKind: period.Month,
			Scope: kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: t.ID}, Target: 6})
	}
	for _, t := range targets {
		if _, err := a.KPI.SetTarget(ctx, op, t); err != nil {
			return fmt.Errorf("demo target %s: %w", t.KPIKey, err)
		}
	}
	marks, err := a.Events.Watermarks(ctx, res.Tenant.ID)
	if err != nil {
		return err
	}
	if len(marks) == 0 {
		loc := res.Tenant.Location()
		cfg := eventgen.Default(2026, reps, a.Now.AddDate(0, 0, -HistoryDays), a.Now, loc)
		var rows []event.Row
		flush := func() error {
			if len(rows) == 0 {
				return nil
			}
			out, err := ingest(ctx, a.Events, op, rows)
			if err != nil {
				return err
			}
			if len(out.Rejected) > 0 {
				return fmt.Errorf("demo event rejected: %+v", out.Rejected[0])
			}
			rows = rows[:0]
			return nil
		}
		err := eventgen.Generate(cfg, func(d eventgen.Delivery) error {
			rows = append(rows, event.Row{Event: d.Event, HasAmount: d.HasAmount})
			if len(rows) == event.MaxBatch {
				return flush()
			}
			return nil
		}, nil)
		if err == nil {
			err = flush()
		}
		if err != nil {
			return fmt.Errorf("demo history: %w", err)
		}
	}
	if a.Drain != nil {
		return a.Drain(ctx, res.Tenant.ID)
	}
	return nil
}

// Stream sends a little live activity every interval until ctx ends (rallye
// serve --demo), so that dashboards move: calls, meetings, content, and now
// and then an opportunity won or lost, for the reps outside Région Sud.
func Stream(ctx context.Context, store *event.Store, res Result, interval time.Duration) {
	// Région Sud's reps are left quiet: the README's challenge walkthrough
	// runs there against `make run` and quotes exact points.
	quiet := map[string]bool{}
	for _, p := range people {
		if slices.Contains(p.teams, "south") {
			quiet[p.ext] = true
		}
	}
	var reps []string
	for _, p := range res.People {
		if slices.Contains(p.Roles, rallye.RoleRep) && !quiet[p.ExternalID] {
			reps = append(reps, p.ExternalID)
		}
	}
	if len(reps) == 0 {
		return
	}
	op := rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t := time.NewTicker(interval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().Truncate(time.Second)
		var rows []event.Row
		mk := func(typ event.Type, rep string) event.Event {
			n++
			return event.Event{Source: "demo-live", ExternalID: fmt.Sprintf("live-%d-%d", now.Unix(), n), Type: typ,
				OccurredAt: now, RepExternalID: rep}
		}
		for range 1 + rng.IntN(3) {
			rep := reps[rng.IntN(len(reps))]
			switch r := rng.Float64(); {
			case r < 0.5:
				rows = append(rows, event.Row{Event: mk(event.CallLogged, rep)})
			case r < 0.65:
				e := mk(event.MeetingHeld, rep)
				e.DiscoveryCompleted = rng.Float64() < 0.7
				rows = append(rows, event.Row{Event: e})
			case r < 0.8:
				e := mk(event.ContentUsed, rep)
				e.ContentID = "deck-2026"
				rows = append(rows, event.Row{Event: e})
			case r < 0.9:
				e := mk(event.OpportunityCreated, rep)
				e.OpportunityID, e.Segment = "live-opp-"+e.ExternalID, []string{"smb", "mid-market", "enterprise"}[rng.IntN(3)]
				rows = append(rows, event.Row{Event: e})
			default:
				typ := event.DealLost
				if rng.Float64() < 0.45 {
					typ = event.DealWon
				}
				e := mk(typ, rep)
				e.OpportunityID, e.Segment = "live-deal-"+e.ExternalID, "smb"
				e.OpportunityCreatedAt = now.Add(-time.Duration(5+rng.IntN(30)) * 24 * time.Hour)
				row := event.Row{Event: e}
				if typ == event.DealWon {
					e.Amount, e.GrossMargin, e.Currency, e.DealKind = int64(500+rng.IntN(3000))*100, 40000, res.Tenant.Currency, event.KindNew
					row = event.Row{Event: e, HasAmount: true}
				}
				rows = append(rows, row)
			}
		}
		if _, err := store.Ingest(ctx, op, rows); err != nil && ctx.Err() == nil {
			rallye.Logger(ctx).Warn("demo live events", "error", err)
		}
	}
}
