package kpi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// builder makes hand-written events for one rep.
type builder struct {
	b   *bundle
	rep string
	n   int
}

func (x *builder) id(prefix string) string {
	x.n++
	return fmt.Sprintf("%s-%d", prefix, x.n)
}

func (x *builder) won(at time.Time, cycle time.Duration, amount int64) event.Row {
	return event.Row{HasAmount: true, Event: event.Event{Source: "crm", ExternalID: x.id("won"), Type: event.DealWon, OccurredAt: at,
		RepExternalID: x.rep, OpportunityID: x.id("opp"), Amount: amount, Currency: "EUR", DealKind: "new",
		OpportunityCreatedAt: at.Add(-cycle), Segment: "smb"}}
}

func (x *builder) call(at time.Time) event.Row {
	return event.Row{Event: event.Event{Source: "crm", ExternalID: x.id("call"), Type: event.CallLogged, OccurredAt: at, RepExternalID: x.rep}}
}

func (x *builder) send(t *testing.T, rows ...event.Row) {
	t.Helper()
	res, err := x.b.events.Ingest(context.Background(), x.b.op, rows)
	if err != nil || len(res.Rejected) > 0 {
		t.Fatalf("ingest: %v %+v", err, res.Rejected)
	}
	x.b.drain(t)
}

func (b *bundle) value(t *testing.T, key string, s kpi.ScopeRef, p period.Period) *float64 {
	t.Helper()
	vals, err := b.svc.Values(context.Background(), b.op.TenantID, kpi.ValuesRequest{Keys: []string{key}, Scope: s, Periods: []period.Period{p}})
	if err != nil {
		t.Fatal(err)
	}
	if vals[0][key].Computing {
		t.Fatalf("%s is still computing", key)
	}
	return vals[0][key].Value
}

func want(t *testing.T, what string, got *float64, w *float64) {
	t.Helper()
	if !same(got, w) {
		t.Fatalf("%s = %s, want %s", what, show(got), show(w))
	}
}

func ready(t *testing.T, nReps int) (*bundle, *builder) {
	b := setup(t, nReps)
	b.install(t)
	b.backfill(t)
	return b, &builder{b: b, rep: "crm-rep-0"}
}

func TestMedianWithAnEvenCount(t *testing.T) {
	b, x := ready(t, 1)
	day := 24 * time.Hour
	at := time.Date(2026, 3, 10, 10, 0, 0, 0, paris)
	x.send(t, x.won(at, 2*day, 1000), x.won(at, 4*day, 1000), x.won(at, 10*day, 1000), x.won(at, 30*day, 1000))
	month := period.Of(period.Month, at, paris)
	want(t, "median of 2, 4, 10, 30 days", b.value(t, "median_closing_days", kpi.Company, month), ptr(7))
	x.send(t, x.won(at, 1*day, 1000))
	want(t, "median of 1, 2, 4, 10, 30 days", b.value(t, "median_closing_days", kpi.Company, month), ptr(4))
}

func TestNoValueForEmptyPeriodsAndZeroDenominators(t *testing.T) {
	b, x := ready(t, 1)
	at := time.Date(2026, 3, 10, 10, 0, 0, 0, paris)
	x.send(t, x.call(at))
	empty := period.Of(period.Month, time.Date(2025, 1, 15, 0, 0, 0, 0, paris), paris)
	month := period.Of(period.Month, at, paris)
	t.Run("EmptyPeriod", func(t *testing.T) {
		vals := b.read(t, kpi.Company, []period.Period{empty})
		for _, k := range modelKeys() {
			if v := vals[0][k].Value; v != nil {
				t.Errorf("%s has %v in a period without events", k, *v)
			}
		}
	})
	tests := []struct{ name, key string }{
		{"RatioWithoutDenominator", "conversion_rate"},
		{"AverageWithoutEvents", "average_basket"},
		{"MedianWithoutEvents", "median_closing_days"},
		{"CompositeOfMissingValues", "pipeline_velocity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, tt.key, b.value(t, tt.key, kpi.Company, month), nil)
		})
	}
	t.Run("CompositeDividingByZero", func(t *testing.T) {
		// Renewals without churn: a churn rate of 0, so the lifetime value
		// divides by zero.
		x.send(t, event.Row{HasAmount: true, Event: event.Event{Source: "crm", ExternalID: "renew-1", Type: event.CustomerRenewed,
			OccurredAt: at, RepExternalID: "crm-rep-0", AccountID: "acct-1", Amount: 50000, GrossMargin: 20000, Currency: "EUR"}})
		want(t, "churn_rate", b.value(t, "churn_rate", kpi.Company, month), ptr(0))
		want(t, "customer_lifetime_value", b.value(t, "customer_lifetime_value", kpi.Company, month), nil)
	})
	t.Run("NumeratorWithoutEvents", func(t *testing.T) {
		// Calls but no content: adoption is 0, not absent.
		want(t, "content_adoption", b.value(t, "content_adoption", kpi.Company, month), ptr(0))
	})
}

// TestEmptyCountsAndSumsAreZeroWhereTheScopeExisted: a rep without a win
// this month reads 0 deals won and 0 revenue (as every sales tool shows),
// and 0 open opportunities, once the scope exists (its creation or its first
// event, whichever is earlier); before that and in periods not begun yet,
// there is no value.
func TestEmptyCountsAndSumsAreZeroWhereTheScopeExisted(t *testing.T) {
	b, x := ready(t, 2)
	first := time.Date(2026, 3, 10, 10, 0, 0, 0, paris)
	x.send(t, x.call(first))
	other := &builder{b: b, rep: "crm-rep-1", n: 100}
	other.send(t, other.call(time.Date(2026, 5, 4, 10, 0, 0, 0, paris)))
	rep := kpi.ScopeRef{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-0"]}
	late := kpi.ScopeRef{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-1"]}
	teamA := kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: b.teams["A"]}
	march := period.Of(period.Month, first, paris)
	june := period.Of(period.Month, time.Date(2026, 6, 15, 0, 0, 0, 0, paris), paris) // before Now (July 1)
	before := period.Of(period.Month, time.Date(2026, 2, 15, 0, 0, 0, 0, paris), paris)
	future := period.Of(period.Month, time.Date(2026, 9, 15, 0, 0, 0, 0, paris), paris)
	zero := ptr(0)
	for _, tt := range []struct {
		name  string
		key   string
		scope kpi.ScopeRef
		p     period.Period
		want  *float64
	}{
		{"CountInTheFirstMonth", "deals_won", rep, march, zero},
		{"SumInTheFirstMonth", "won_revenue", rep, march, zero},
		{"SignedSumInTheFirstMonth", "net_revenue", kpi.Company, march, zero},
		{"CountOfTheTeamLater", "deals_won", teamA, june, zero},
		{"CountOfTheCompanyLater", "trainings_completed", kpi.Company, june, zero},
		{"StockOnceTheScopeExists", "open_opportunities", rep, june, zero},
		{"StockAtRiskOnceTheScopeExists", "deals_at_risk", kpi.Company, march, zero},
		{"ActivityCountsWhatHappened", "prospecting_activity", rep, march, ptr(1)},
		{"CountBeforeTheScopeExisted", "deals_won", rep, before, nil},
		{"StockBeforeTheScopeExisted", "open_opportunities", kpi.Company, before, nil},
		{"CountOfAPeriodNotBegun", "deals_won", rep, future, nil},
		{"CountOfARepBeforeTheirFirstEvent", "deals_won", late, march, nil},
		{"CountOfARepFromTheirFirstEvent", "deals_won", late, june, zero},
		{"RatioWithAnEmptyDenominatorStaysEmpty", "conversion_rate", rep, june, nil},
		{"AverageOfNothingStaysEmpty", "average_basket", rep, june, nil},
		{"MedianOfNothingStaysEmpty", "median_closing_days", kpi.Company, june, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want(t, tt.key, b.value(t, tt.key, tt.scope, tt.p), tt.want)
		})
	}
}

func TestCorrectionsMoveTheNumbers(t *testing.T) {
	b, x := ready(t, 1)
	at := time.Date(2026, 3, 10, 10, 0, 0, 0, paris)
	month := period.Of(period.Month, at, paris)
	w := x.won(at, 5*24*time.Hour, 120000)
	x.send(t, w)
	want(t, "net_revenue", b.value(t, "net_revenue", kpi.Company, month), ptr(1200))

	fixed := w
	fixed.Event.Revision, fixed.Event.Amount = 1, 150000
	x.send(t, fixed)
	want(t, "net_revenue after the amount's correction", b.value(t, "net_revenue", kpi.Company, month), ptr(1500))

	moved := fixed
	moved.Event.Revision, moved.Event.OccurredAt = 2, time.Date(2026, 4, 2, 10, 0, 0, 0, paris)
	x.send(t, moved)
	want(t, "March after the date moved to April", b.value(t, "net_revenue", kpi.Company, month), ptr(0))
	want(t, "April", b.value(t, "net_revenue", kpi.Company, month.Next()), ptr(1500))

	gone := moved
	gone.Event.Revision, gone.Event.Retracted = 3, true
	x.send(t, gone)
	want(t, "April after the retraction", b.value(t, "net_revenue", kpi.Company, month.Next()), ptr(0))

	// A reopened deal stops counting; winning it again counts again.
	w2 := x.won(at, 5*24*time.Hour, 80000)
	x.send(t, w2)
	x.send(t, event.Row{Event: event.Event{Source: "crm", ExternalID: "reopen-1", Type: event.DealReopened,
		OccurredAt: at.Add(time.Hour), OpportunityID: w2.Event.OpportunityID}})
	want(t, "deals_won after the reopening", b.value(t, "deals_won", kpi.Company, month), ptr(0))
}

// TestPeriodBoundaries checks that events fall in the company's local day:
// at midnight in Europe/Paris, and on the days clocks change.
func TestPeriodBoundaries(t *testing.T) {
	b, x := ready(t, 1)
	rep := kpi.ScopeRef{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-0"]}
	tests := []struct {
		name   string
		before time.Time // last second of day
		after  time.Time // first second of the next day
		hours  float64   // length of day
	}{
		{"Midnight", time.Date(2026, 3, 11, 23, 59, 59, 0, paris), time.Date(2026, 3, 12, 0, 0, 0, 0, paris), 24},
		{"SpringForward", time.Date(2026, 3, 29, 23, 59, 59, 0, paris), time.Date(2026, 3, 30, 0, 0, 0, 0, paris), 23},
		{"FallBack", time.Date(2026, 10, 25, 23, 59, 59, 0, paris), time.Date(2026, 10, 26, 0, 0, 0, 0, paris), 25},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			day := period.Of(period.Day, tt.before, paris)
			if got := day.End.Sub(day.Start).Hours(); got != tt.hours {
				t.Fatalf("the day lasts %v hours, want %v", got, tt.hours)
			}
			start := day.Start // local midnight, whatever the offset
			x.send(t, x.won(start, 48*time.Hour, 10000), x.won(tt.before, 48*time.Hour, 20000), x.won(tt.after, 48*time.Hour, 40000))
			for _, s := range []kpi.ScopeRef{kpi.Company, rep} {
				want(t, "deals won that day", b.value(t, "deals_won", s, day), ptr(2))
				want(t, "revenue won that day", b.value(t, "won_revenue", s, day), ptr(300))
				want(t, "revenue won the next day", b.value(t, "won_revenue", s, day.Next()), ptr(400))
			}
			week := period.Of(period.Week, tt.before, paris)
			got := b.value(t, "won_revenue", kpi.Company, week)
			if week.Contains(tt.after) {
				want(t, "the week", got, ptr(700))
			} else {
				want(t, "the week", got, ptr(300))
			}
		})
	}
}

func TestNewVersionDoesNotRewriteThePast(t *testing.T) {
	b, x := ready(t, 1)
	ctx := context.Background()
	march := period.Of(period.Month, time.Date(2026, 3, 10, 0, 0, 0, 0, paris), paris)
	april := march.Next()
	x.send(t, x.won(time.Date(2026, 3, 10, 10, 0, 0, 0, paris), 48*time.Hour, 100000),
		x.won(time.Date(2026, 4, 10, 10, 0, 0, 0, paris), 48*time.Hour, 200000),
		x.won(time.Date(2026, 4, 12, 10, 0, 0, 0, paris), 48*time.Hour, 30000))
	k, err := b.svc.Get(ctx, b.op, "net_revenue")
	if err != nil {
		t.Fatal(err)
	}
	// From April on, only deals of 1,000 EUR or more count.
	d := k.Current().Definition
	d.Formula.Events.Filter = "amount >= 1000.0"
	k, err = b.svc.Update(ctx, b.op, kpi.UpdateRequest{Key: "net_revenue", Definition: d, EffectiveFrom: april.Start})
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Versions) != 2 {
		t.Fatalf("%d versions", len(k.Versions))
	}
	vals, err := b.svc.Values(ctx, b.op.TenantID, kpi.ValuesRequest{Keys: []string{"net_revenue"}, Scope: kpi.Company,
		Periods: []period.Period{march, april}})
	if err != nil {
		t.Fatal(err)
	}
	if !vals[1]["net_revenue"].Computing {
		t.Fatal("the new version's measure should be computing until its backfill ran")
	}
	b.backfill(t)
	want(t, "March, read with version 1", b.value(t, "net_revenue", kpi.Company, march), ptr(1000))
	want(t, "April, read with version 2", b.value(t, "net_revenue", kpi.Company, april), ptr(2000))

	t.Run("ErrEffectiveBeforeCurrent", func(t *testing.T) {
		_, err := b.svc.Update(ctx, b.op, kpi.UpdateRequest{Key: "net_revenue", Definition: d, EffectiveFrom: march.Start})
		wantCode(t, err, rallye.CodeInvalid)
	})
}

func wantCode(t *testing.T, err error, code rallye.Code) {
	t.Helper()
	if rallye.ErrorCode(err) != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

func TestDefinitionRules(t *testing.T) {
	b, _ := ready(t, 1)
	ctx := context.Background()
	base := func() kpi.Definition {
		return kpi.Definition{Key: "upsell_revenue", Name: kpi.Text{FR: "CA upsell", EN: "Upsell revenue"}, Unit: kpi.UnitMoney, Level: 2,
			Direction: kpi.HigherIsBetter, Periods: []period.Kind{period.Month},
			Formula: kpi.Formula{Aggregation: kpi.Sum, Events: kpi.Selection{Types: []event.Type{event.DealWon}, Value: "amount",
				Filter: `deal_kind == "upsell"`}}}
	}
	tests := []struct {
		name  string
		mut   func(d *kpi.Definition)
		code  rallye.Code
		field string
	}{
		{"BadFilter", func(d *kpi.Definition) { d.Formula.Events.Filter = "amount >" }, rallye.CodeInvalid, "kpi.formula.events.filter"},
		{"FilterNotBoolean", func(d *kpi.Definition) { d.Formula.Events.Filter = "amount" }, rallye.CodeInvalid, "kpi.formula.events.filter"},
		{"UnknownType", func(d *kpi.Definition) { d.Formula.Events.Types = []event.Type{"deal.signed"} }, rallye.CodeInvalid, "kpi.formula.events.types[0]"},
		{"RatioWithoutDenominator", func(d *kpi.Definition) { d.Formula.Aggregation = kpi.Ratio }, rallye.CodeInvalid, "kpi.formula.denominator"},
		{"CompositeOfUnknownKPI", func(d *kpi.Definition) {
			d.Formula = kpi.Formula{Aggregation: kpi.Composite, Expression: "net_revenue / nope"}
		}, rallye.CodeNotFound, "kpi.formula.expression"},
		{"CompositeReadingItself", func(d *kpi.Definition) {
			d.Formula = kpi.Formula{Aggregation: kpi.Composite, Expression: "upsell_revenue * 2.0"}
		}, rallye.CodeInvalid, "kpi.formula.expression"},
		{"UnknownOwner", func(d *kpi.Definition) { d.OwnerID = uuid.New() }, rallye.CodeNotFound, "kpi.owner_id"},
		{"KeyTaken", func(d *kpi.Definition) { d.Key = "net_revenue" }, rallye.CodeAlreadyExists, "kpi.key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := base()
			tt.mut(&d)
			_, err := b.svc.Create(ctx, b.op, kpi.CreateRequest{Definition: d})
			wantCode(t, err, tt.code)
			if e, _ := rallye.AsError(err); e.Field != tt.field {
				t.Fatalf("field %q, want %q (%v)", e.Field, tt.field, err)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		k, err := b.svc.Create(ctx, b.op, kpi.CreateRequest{Definition: base(), RequestID: "r1"})
		if err != nil {
			t.Fatal(err)
		}
		again, err := b.svc.Create(ctx, b.op, kpi.CreateRequest{Definition: base(), RequestID: "r1"})
		if err != nil || again.ID != k.ID {
			t.Fatalf("replay: %v %v", again.ID, err)
		}
		if k.Current().Definition.OwnerID != b.op.UserID {
			t.Fatal("the caller should own the KPI")
		}
	})
	t.Run("InstallAgainKeepsEverything", func(t *testing.T) {
		res, err := b.svc.InstallModel(ctx, b.op, uuid.Nil)
		if err != nil || len(res.Created) != 0 || len(res.Kept) != len(kpi.Model()) {
			t.Fatalf("second install: %+v %v", res, err)
		}
	})
}

func TestAlertsFireOncePerCrossing(t *testing.T) {
	b, x := ready(t, 1)
	ctx := context.Background()
	now := time.Date(2026, 3, 16, 0, 0, 0, 0, paris) // about half of March gone
	b.svc.Now = func() time.Time { return now }
	// 20 deals a month; at risk below 18, off track below 12 (projections).
	at, off := 18.0, 12.0
	if _, err := b.svc.SetTarget(ctx, b.op, kpi.SetTargetRequest{KPIKey: "deals_won", PeriodKind: period.Month, Scope: kpi.Company,
		Target: 20, AtRisk: &at, OffTrack: &off}); err != nil {
		t.Fatal(err)
	}
	evaluate := func(wantLevels ...kpi.Status) {
		t.Helper()
		raised, err := b.svc.EvaluateAlerts(ctx, b.op.TenantID)
		if err != nil {
			t.Fatal(err)
		}
		if len(raised) != len(wantLevels) {
			t.Fatalf("raised %d alerts, want %d", len(raised), len(wantLevels))
		}
		for i, a := range raised {
			if a.Level != wantLevels[i] || a.OwnerID != b.op.UserID || a.PeriodKey != "2026-03" {
				t.Fatalf("alert %+v, want level %s owned by the KPI's owner", a, wantLevels[i])
			}
		}
	}
	wins := func(n int) {
		rows := make([]event.Row, n)
		for i := range rows {
			rows[i] = x.won(time.Date(2026, 3, 2, 10, 0, 0, 0, paris), 48*time.Hour, 10000)
		}
		x.send(t, rows...)
	}
	wins(4) // pace ≈ 8 for the month: off track
	evaluate(kpi.StatusOffTrack)
	evaluate()
	wins(1) // still off track: no new alert
	evaluate()
	wins(6) // 11 so far, pace ≈ 21: on track
	evaluate()
	now = time.Date(2026, 3, 20, 0, 0, 0, 0, paris) // time passes without deals: pace ≈ 17, at risk
	evaluate(kpi.StatusAtRisk)
	evaluate()

	alerts, err := b.svc.ListAlerts(ctx, b.op, kpi.ListAlertsRequest{Size: 10})
	if err != nil || len(alerts) != 2 {
		t.Fatalf("list: %d alerts, %v", len(alerts), err)
	}
	if _, err := b.svc.AcknowledgeAlert(ctx, b.op, alerts[0].ID); err != nil {
		t.Fatal(err)
	}
	open, err := b.svc.ListAlerts(ctx, b.op, kpi.ListAlertsRequest{Size: 10, Open: true})
	if err != nil || len(open) != 1 || open[0].ID != alerts[1].ID {
		t.Fatalf("open alerts: %+v, %v", open, err)
	}
	t.Run("RepSeesNone", func(t *testing.T) {
		rep := rallye.Principal{TenantID: b.op.TenantID, UserID: b.userOf["crm-rep-0"], Roles: []rallye.Role{rallye.RoleRep}}
		got, err := b.svc.ListAlerts(ctx, rep, kpi.ListAlertsRequest{Size: 10})
		if err != nil || len(got) != 0 {
			t.Fatalf("a rep sees %d company alerts (%v)", len(got), err)
		}
		_, err = b.svc.AcknowledgeAlert(ctx, rep, alerts[1].ID)
		wantCode(t, err, rallye.CodeNotFound)
	})
}

func TestActionPlanIsEvaluatedAtItsDeadline(t *testing.T) {
	b, x := ready(t, 1)
	ctx := context.Background()
	now := time.Date(2026, 3, 5, 9, 0, 0, 0, paris)
	b.svc.Now = func() time.Time { return now }
	deadline := time.Date(2026, 3, 20, 18, 0, 0, 0, paris)
	team := kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: b.teams["A"]}
	plan, err := b.svc.CreatePlan(ctx, b.op, kpi.CreatePlanRequest{
		KPIKey: "deals_won", Question: "Faut-il relancer les deals PME ?", Action: "Relancer chaque deal PME ouvert",
		OwnerID: b.op.UserID, Deadline: deadline,
		Criterion: kpi.Criterion{Scope: team, Operator: ">=", Threshold: 3, PeriodKind: period.Month},
	})
	if err != nil {
		t.Fatal(err)
	}
	x.send(t, x.won(time.Date(2026, 3, 6, 10, 0, 0, 0, paris), 48*time.Hour, 10000),
		x.won(time.Date(2026, 3, 9, 10, 0, 0, 0, paris), 48*time.Hour, 10000))

	_, err = b.svc.EvaluatePlan(ctx, b.op.TenantID, plan.ID)
	if !errors.Is(err, kpi.ErrTooEarly) {
		t.Fatalf("before the deadline: %v, want a too-early error", err)
	}
	now = deadline.Add(time.Second)
	// A deal after the deadline does not count (read as of the deadline
	// for stocks; flows count the period's events).
	got, err := b.svc.EvaluatePlan(ctx, b.op.TenantID, plan.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != kpi.PlanFailed || got.MeasuredValue == nil || *got.MeasuredValue != 2 {
		t.Fatalf("evaluated plan: %s %s", got.Status, show(got.MeasuredValue))
	}
	x.send(t, x.won(time.Date(2026, 3, 10, 10, 0, 0, 0, paris), 48*time.Hour, 10000))
	again, err := b.svc.EvaluatePlan(ctx, b.op.TenantID, plan.ID)
	if err != nil || again.Status != kpi.PlanFailed || !again.EvaluatedAt.Equal(got.EvaluatedAt) {
		t.Fatalf("evaluating again changed the plan: %+v %v", again, err)
	}
	t.Run("ErrDeadlinePassed", func(t *testing.T) {
		_, err := b.svc.CreatePlan(ctx, b.op, kpi.CreatePlanRequest{KPIKey: "deals_won", Question: "q", Action: "a",
			OwnerID: b.op.UserID, Deadline: now.Add(-time.Hour), Criterion: plan.Criterion})
		wantCode(t, err, rallye.CodeInvalid)
	})
}

// TestCostPerLeadIsNotApplicableBelowTheCompany: marketing spend is the
// company's, so cost per lead (and a composite reading it) has no value for
// a team or a person, marked not applicable, where it used to read 0 (or
// the spend of a rep it named); other KPIs are applicable everywhere.
func TestCostPerLeadIsNotApplicableBelowTheCompany(t *testing.T) {
	b, x := ready(t, 1)
	at := time.Date(2026, 3, 10, 10, 0, 0, 0, paris)
	month := period.Of(period.Month, at, paris)
	x.send(t,
		event.Row{Event: event.Event{Source: "crm", ExternalID: "lead-1", Type: event.LeadCreated, OccurredAt: at,
			RepExternalID: "crm-rep-0", LeadID: "lead-1"}},
		event.Row{Event: event.Event{Source: "crm", ExternalID: "lead-2", Type: event.LeadCreated, OccurredAt: at,
			RepExternalID: "crm-rep-0", LeadID: "lead-2"}},
		event.Row{HasAmount: true, Event: event.Event{Source: "ads", ExternalID: "spend-1", Type: event.MarketingSpend, OccurredAt: at,
			Amount: 60000, Currency: "EUR", Channel: "ads"}},
		// A spend naming a rep is still the company's.
		event.Row{HasAmount: true, Event: event.Event{Source: "ads", ExternalID: "spend-2", Type: event.MarketingSpend, OccurredAt: at,
			RepExternalID: "crm-rep-0", Amount: 40000, Currency: "EUR", Channel: "events"}},
		x.won(at, 24*time.Hour, 100000),
	)
	_, err := b.svc.Create(context.Background(), b.op, kpi.CreateRequest{Definition: kpi.Definition{Key: "spend_per_deal", Level: 2,
		Name: kpi.Text{FR: "Dépense par affaire", EN: "Spend per deal"}, Unit: kpi.UnitMoney, Direction: kpi.LowerIsBetter,
		Periods: []period.Kind{period.Month}, Formula: kpi.Formula{Aggregation: kpi.Composite, Expression: "cost_per_lead * 2.0"}}})
	if err != nil {
		t.Fatal(err)
	}
	b.backfill(t)
	read := func(s kpi.ScopeRef) map[string]kpi.Value {
		vals, err := b.svc.Values(context.Background(), b.op.TenantID, kpi.ValuesRequest{
			Keys: []string{"cost_per_lead", "cost_per_opportunity", "spend_per_deal", "deals_won", "mql_to_sql_rate"}, Scope: s,
			Periods: []period.Period{month}})
		if err != nil {
			t.Fatal(err)
		}
		return vals[0]
	}
	company := read(kpi.Company)
	want(t, "company cost per lead (1,000 EUR / 2 leads)", company["cost_per_lead"].Value, ptr(500))
	want(t, "company composite", company["spend_per_deal"].Value, ptr(1000))
	if company["cost_per_lead"].NotApplicable || company["spend_per_deal"].NotApplicable {
		t.Error("cost per lead is applicable for the company")
	}
	for name, s := range map[string]kpi.ScopeRef{
		"Team":   {Kind: kpi.ScopeTeam, ID: b.teams["A"]},
		"Parent": {Kind: kpi.ScopeTeam, ID: b.teams["P"]},
		"Rep":    {Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-0"]},
	} {
		t.Run(name, func(t *testing.T) {
			v := read(s)
			for _, k := range []string{"cost_per_lead", "cost_per_opportunity", "spend_per_deal"} {
				if v[k].Value != nil || !v[k].NotApplicable {
					t.Errorf("%s: value %s, not applicable %v; want no value, not applicable", k, show(v[k].Value), v[k].NotApplicable)
				}
			}
			want(t, "deals won", v["deals_won"].Value, ptr(1))
			if v["deals_won"].NotApplicable || v["mql_to_sql_rate"].NotApplicable {
				t.Error("deals won and the MQL rate are applicable to a team and a person")
			}
		})
	}
}

// TestCardsSayTheirPeriodAndNeverSubstituteAKind: a card is read over the
// requested period kind or says it is unavailable over it; it used to fall
// back silently to the KPI's default kind, so a table could mix weeks and
// months.
func TestCardsSayTheirPeriodAndNeverSubstituteAKind(t *testing.T) {
	b, x := ready(t, 1)
	at := time.Date(2026, 3, 10, 10, 0, 0, 0, paris)
	x.send(t, x.won(at, 24*time.Hour, 100000))
	rep := kpi.ScopeRef{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-0"]}
	cards, err := b.svc.Cards(context.Background(), b.op.TenantID, kpi.CardsRequest{
		Keys: []string{"win_rate", "deals_won"}, Scopes: []kpi.ScopeRef{kpi.Company, rep}, Kind: period.Week, At: at})
	if err != nil {
		t.Fatal(err)
	}
	week := period.Of(period.Week, at, paris)
	for si, row := range cards {
		winRate, won := row[0], row[1]
		if !winRate.Unavailable || winRate.Value.Value != nil || len(winRate.Series) != 0 || !samePeriod(winRate.Period, week) {
			t.Errorf("scope %d: win rate (month and quarter only) over a week: unavailable %v, value %s, %d points, period %s",
				si, winRate.Unavailable, show(winRate.Value.Value), len(winRate.Series), winRate.Period.Key())
		}
		if won.Unavailable || !samePeriod(won.Period, week) || !same(won.Value.Value, ptr(1)) {
			t.Errorf("scope %d: deals won over the week: unavailable %v, period %s, value %s", si, won.Unavailable, won.Period.Key(), show(won.Value.Value))
		}
	}
	// Without a kind, each KPI is read over its own default (an explicit choice of the caller).
	cards, err = b.svc.Cards(context.Background(), b.op.TenantID, kpi.CardsRequest{Keys: []string{"win_rate"}, Scopes: []kpi.ScopeRef{kpi.Company}, At: at})
	if err != nil {
		t.Fatal(err)
	}
	if c := cards[0][0]; c.Unavailable || !samePeriod(c.Period, period.Of(period.Month, at, paris)) || !same(c.Value.Value, ptr(1)) {
		t.Errorf("win rate over its default kind: unavailable %v, period %s, value %s", c.Unavailable, c.Period.Key(), show(c.Value.Value))
	}
}

// TestFreshnessSaysHowFarTheRollupsHaveGot: behind while a change waits
// for the roll-ups (as of when it was accepted), caught up once applied.
func TestFreshnessSaysHowFarTheRollupsHaveGot(t *testing.T) {
	b, x := ready(t, 1)
	ctx := context.Background()
	f, err := b.svc.Freshness(ctx, b.op.TenantID)
	if err != nil || !f.CaughtUp {
		t.Fatalf("nothing sent: %+v %v", f, err)
	}
	before := time.Now().Add(-time.Second)
	res, err := b.events.Ingest(ctx, b.op, []event.Row{x.call(time.Date(2026, 3, 10, 10, 0, 0, 0, paris))})
	if err != nil || len(res.Rejected) > 0 {
		t.Fatalf("ingest: %v %+v", err, res.Rejected)
	}
	after := time.Now().Add(time.Second)
	f, err = b.svc.Freshness(ctx, b.op.TenantID)
	if err != nil || f.CaughtUp || f.AsOf.Before(before) || f.AsOf.After(after) {
		t.Fatalf("a change waiting: %+v %v, want behind, as of between %s and %s", f, err, before, after)
	}
	b.drain(t)
	f, err = b.svc.Freshness(ctx, b.op.TenantID)
	if err != nil || !f.CaughtUp || f.AsOf.Before(after.Add(-time.Second)) {
		t.Fatalf("applied: %+v %v, want caught up as of now", f, err)
	}
}

func samePeriod(a, b period.Period) bool {
	return a.Kind == b.Kind && a.Start.Equal(b.Start) && a.End.Equal(b.End)
}
