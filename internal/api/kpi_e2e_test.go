package api_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func kpiClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.KpiServiceClient {
	return rallyev1connect.NewKpiServiceClient(p.Client, srv.URL, append(p.Opts, testserver.Bearer(token), recordForeign(token))...)
}

func dashClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.DashboardServiceClient {
	return rallyev1connect.NewDashboardServiceClient(p.Client, srv.URL,
		append(p.Opts, testserver.Bearer(token), connect.WithInterceptors(streamBearer(token)), recordForeign(token))...)
}

// salesCompany is a company with a team tree (Sales > North, South), a
// manager of North, a rep in each team, HR and a CRM API key.
type salesCompany struct {
	testserver.Company
	sales, north, south org.Team
	manager, rep1, rep2 org.User
	hr                  org.User
	managerToken        string
	rep1Token           string
	rep2Token           string
	hrToken             string
	key                 string
}

func newSalesCompany(t *testing.T, srv *testserver.Server) salesCompany {
	t.Helper()
	ctx := context.Background()
	c := salesCompany{Company: testserver.NewCompany(t, srv.App.Org)}
	var err error
	mk := func(name string, parent uuid.UUID) org.Team {
		team, err := srv.App.Org.CreateTeam(ctx, c.Operator, org.CreateTeamRequest{Name: name, ParentID: parent})
		if err != nil {
			t.Fatal(err)
		}
		return team
	}
	c.sales = mk("Sales", uuid.Nil)
	c.north = mk("North", c.sales.ID)
	c.south = mk("South", c.sales.ID)
	c.manager, c.managerToken = testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleManager}, c.north)
	c.rep1, c.rep1Token = testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleRep}, c.north)
	c.rep2, c.rep2Token = testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleRep}, c.south)
	c.hr, c.hrToken = testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleHR})
	if _, c.key, err = srv.App.APIKeys.Create(ctx, c.Operator, auth.CreateAPIKeyRequest{Name: "crm"}); err != nil {
		t.Fatal(err)
	}
	return c
}

var dealSeq int

func won(rep org.User, at time.Time, euros int64) *rallyev1.SalesEvent {
	dealSeq++
	return &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("won-%d", dealSeq), Type: "deal.won",
		OccurredAt: timestamppb.New(at), RepExternalId: rep.ExternalID, OpportunityId: fmt.Sprintf("opp-%d", dealSeq),
		Amount: &rallyev1.Money{MinorUnits: euros * 100, Currency: "EUR"}, DealKind: "new", Segment: "smb",
		OpportunityCreatedAt: timestamppb.New(at.Add(-72 * time.Hour))}
}

// waitFor polls until ok returns true.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cardOf(cards []*rallyev1.KpiCard, key string) *rallyev1.KpiCard {
	for _, c := range cards {
		if c.Key == key {
			return c
		}
	}
	return nil
}

func near(v *float64, want float64) bool { return v != nil && math.Abs(*v-want) < 1e-6 }

func TestKpisAndDashboardsEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	c := newSalesCompany(t, srv)
	for i, proto := range testserver.Protocols()[:2] {
		t.Run(proto.Name, func(t *testing.T) {
			crm := kpiClient(srv, proto, c.key)
			res, err := crm.InstallModel(ctx, &rallyev1.InstallModelRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 && (len(res.Created) != len(kpi.Model()) || len(res.Kept) != 0) || i > 0 && len(res.Created) != 0 {
				t.Fatalf("install: %d created, %d kept", len(res.Created), len(res.Kept))
			}
		})
	}
	admin := kpiClient(srv, testserver.Protocols()[0], c.AdminToken)
	if _, err := admin.SetTarget(ctx, &rallyev1.SetTargetRequest{KpiKey: "deals_won", Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH,
		Scope: &rallyev1.Scope{Kind: rallyev1.ScopeKind_SCOPE_KIND_COMPANY}, Target: 20}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	at := now.Add(-time.Minute)
	if at.Month() != now.Month() {
		at = now
	}
	events := eventClient(srv, testserver.Protocols()[0], c.key)
	if _, err := events.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{
		won(c.rep1, at, 1200), won(c.rep1, at, 800), won(c.rep2, at, 500),
	}}); err != nil {
		t.Fatal(err)
	}

	for _, proto := range testserver.Protocols()[:2] {
		t.Run(proto.Name, func(t *testing.T) {
			var board *rallyev1.GetLevel1Response
			waitFor(t, "the level-1 dashboard to count the deals", func() bool {
				var err error
				board, err = dashClient(srv, proto, c.AdminToken).GetLevel1(ctx, &rallyev1.GetLevel1Request{})
				if err != nil {
					t.Fatal(err)
				}
				return near(cardOf(board.Kpis, "net_revenue").Value, 2500)
			})
			if len(board.Kpis) != 8 || board.Currency != "EUR" || board.TimeZone != "Europe/Paris" {
				t.Fatalf("level 1: %d cards, %s %s", len(board.Kpis), board.Currency, board.TimeZone)
			}
			if board.AsOfTime == nil {
				t.Fatal("level 1 says nothing of how far the roll-ups have got")
			}
			rev := cardOf(board.Kpis, "net_revenue")
			if rev.OwnerId != c.Admin.ID.String() || len(rev.Series) != 12 || rev.PeriodKey != period.Of(period.Month, now, c.Tenant.Location()).Key() ||
				rev.Name.Fr == "" || rev.Name.En == "" || rev.Unit != rallyev1.KpiUnit_KPI_UNIT_MONEY {
				t.Fatalf("net revenue card: %+v", rev)
			}

			t.Run("Level2", func(t *testing.T) {
				_, err := dashClient(srv, proto, c.managerToken).GetLevel2(ctx, &rallyev1.GetLevel2Request{})
				wantCode(t, err, connect.CodeInvalidArgument)
				_, err = dashClient(srv, proto, c.managerToken).GetLevel2(ctx, &rallyev1.GetLevel2Request{TeamId: c.south.ID.String()})
				wantCode(t, err, connect.CodePermissionDenied)
				mine, err := dashClient(srv, proto, c.managerToken).GetLevel2(ctx, &rallyev1.GetLevel2Request{TeamId: c.north.ID.String()})
				if err != nil {
					t.Fatal(err)
				}
				if wr := cardOf(mine.Kpis, "win_rate"); !near(wr.Value, 1) || len(wr.Breakdown) != 1 || wr.Breakdown[0].ValueKey != "smb" {
					t.Fatalf("North's win rate: %+v", wr)
				}
				all, err := dashClient(srv, proto, c.hrToken).GetLevel2(ctx, &rallyev1.GetLevel2Request{})
				if err != nil {
					t.Fatal(err)
				}
				if len(all.Teams) != 1 || all.Teams[0].Name != "Sales" {
					t.Fatalf("top-level team rows: %+v", all.Teams)
				}
				sub, err := dashClient(srv, proto, c.AdminToken).GetLevel2(ctx, &rallyev1.GetLevel2Request{TeamId: c.sales.ID.String()})
				if err != nil || len(sub.Teams) != 2 {
					t.Fatalf("Sales' sub-team rows: %+v %v", sub.GetTeams(), err)
				}
				// Marketing spend is the company's: cost per lead is not
				// applicable to a team, on the card and in the rows.
				if cpl := cardOf(mine.Kpis, "cost_per_lead"); cpl.Value != nil || !cpl.NotApplicable {
					t.Fatalf("North's cost per lead: %+v", cpl)
				}
				month := period.Of(period.Month, now, c.Tenant.Location())
				for _, v := range sub.Teams[0].Values {
					if v.Key == "cost_per_lead" && !v.NotApplicable || v.Key == "deals_won" && v.NotApplicable {
						t.Fatalf("row value %s: not applicable %v", v.Key, v.NotApplicable)
					}
					if v.Period != rallyev1.PeriodKind_PERIOD_KIND_MONTH || v.PeriodKey != month.Key() ||
						!v.PeriodStartTime.AsTime().Equal(month.Start) || !v.PeriodEndTime.AsTime().Equal(month.End) {
						t.Fatalf("row value %s does not say its month: %s %s %v %v", v.Key, v.Period, v.PeriodKey, v.PeriodStartTime, v.PeriodEndTime)
					}
				}
				if !all.CaughtUp || all.AsOfTime == nil {
					t.Fatalf("level 2 after the roll-ups: caught up %v, as of %v", all.CaughtUp, all.AsOfTime)
				}
				// Level 2 offers months and quarters: over a week every card
				// says so, none falls back to a month.
				weekly, err := dashClient(srv, proto, c.hrToken).GetLevel2(ctx, &rallyev1.GetLevel2Request{Period: rallyev1.PeriodKind_PERIOD_KIND_WEEK})
				if err != nil {
					t.Fatal(err)
				}
				week := period.Of(period.Week, now, c.Tenant.Location())
				for _, k := range weekly.Kpis {
					if !k.UnavailableForPeriod || k.Value != nil || k.Period != rallyev1.PeriodKind_PERIOD_KIND_WEEK || k.PeriodKey != week.Key() {
						t.Fatalf("level-2 card %s over a week: unavailable %v, value %v, period %s %s", k.Key, k.UnavailableForPeriod, k.GetValue(), k.Period, k.PeriodKey)
					}
				}
				for _, v := range weekly.Teams[0].Values {
					if !v.UnavailableForPeriod || v.PeriodKey != week.Key() {
						t.Fatalf("level-2 row value %s over a week: %+v", v.Key, v)
					}
				}
			})
			t.Run("Level3", func(t *testing.T) {
				own, err := dashClient(srv, proto, c.rep1Token).GetLevel3(ctx, &rallyev1.GetLevel3Request{})
				if err != nil {
					t.Fatal(err)
				}
				if own.UserId != c.rep1.ID.String() || !near(cardOf(own.Kpis, "won_revenue").Value, 2000) {
					t.Fatalf("rep 1's board: %s %+v", own.UserId, cardOf(own.Kpis, "won_revenue"))
				}
				_, err = dashClient(srv, proto, c.rep1Token).GetLevel3(ctx, &rallyev1.GetLevel3Request{UserId: c.rep2.ID.String()})
				wantCode(t, err, connect.CodePermissionDenied)
				_, err = dashClient(srv, proto, c.managerToken).GetLevel3(ctx, &rallyev1.GetLevel3Request{UserId: c.rep2.ID.String()})
				wantCode(t, err, connect.CodePermissionDenied)
				roster, err := dashClient(srv, proto, c.managerToken).GetLevel3(ctx, &rallyev1.GetLevel3Request{TeamId: c.north.ID.String()})
				if err != nil {
					t.Fatal(err)
				}
				if len(roster.People) != 2 { // the manager and rep 1
					t.Fatalf("North's roster: %+v", roster.People)
				}
			})
		})
	}

	t.Run("Definitions", func(t *testing.T) {
		def := &rallyev1.KpiDefinition{Key: "upsell_revenue", Name: &rallyev1.LocalizedText{Fr: "CA upsell", En: "Upsell revenue"},
			Unit: rallyev1.KpiUnit_KPI_UNIT_MONEY, Level: 2, Direction: rallyev1.KpiDirection_KPI_DIRECTION_HIGHER_IS_BETTER,
			Periods: []rallyev1.PeriodKind{rallyev1.PeriodKind_PERIOD_KIND_MONTH},
			Formula: &rallyev1.Formula{Aggregation: rallyev1.Aggregation_AGGREGATION_SUM,
				Events: &rallyev1.EventSelection{EventTypes: []string{"deal.won"}, Value: "amount", Filter: `deal_kind == "upsell`}}}
		_, err := admin.CreateKpi(ctx, &rallyev1.CreateKpiRequest{Kpi: def})
		wantCode(t, err, connect.CodeInvalidArgument)
		if !containsField(err, "kpi.formula.events.filter") {
			t.Fatalf("the error does not name the filter: %v", err)
		}
		def.Formula.Events.Filter = `deal_kind == "upsell"`
		created, err := admin.CreateKpi(ctx, &rallyev1.CreateKpiRequest{Kpi: def})
		if err != nil {
			t.Fatal(err)
		}
		// A definition without a key is refused by CreateKpi, naming kpi.key;
		// UpdateKpi takes the request's key for it (as its proto says), and
		// refuses another key.
		keyless := proto.CloneOf(def)
		keyless.Key = ""
		_, err = admin.CreateKpi(ctx, &rallyev1.CreateKpiRequest{Kpi: keyless})
		wantCode(t, err, connect.CodeInvalidArgument)
		if !containsField(err, "kpi.key") {
			t.Fatalf("CreateKpi without a key: the error does not name kpi.key: %v", err)
		}
		renamed := proto.CloneOf(def)
		renamed.Key = "other_revenue"
		_, err = admin.UpdateKpi(ctx, &rallyev1.UpdateKpiRequest{Key: "upsell_revenue", Kpi: renamed})
		wantCode(t, err, connect.CodeInvalidArgument)
		if !containsField(err, "kpi.key") {
			t.Fatalf("UpdateKpi to another key: the error does not name kpi.key: %v", err)
		}
		keyless.Formula.Events.Filter = `deal_kind in ["upsell", "renewal"]`
		updated, err := admin.UpdateKpi(ctx, &rallyev1.UpdateKpiRequest{Key: "upsell_revenue", Kpi: keyless})
		if err != nil {
			t.Fatalf("UpdateKpi with an empty kpi.key: %v", err)
		}
		if updated.Kpi.Key != "upsell_revenue" || updated.Kpi.Definition.GetKey() != "upsell_revenue" {
			t.Fatalf("UpdateKpi with an empty kpi.key: key %q, definition's %q", updated.Kpi.Key, updated.Kpi.Definition.GetKey())
		}
		if created.Kpi.Version != 1 || updated.Kpi.Version != 2 || len(updated.Kpi.Versions) != 2 {
			t.Fatalf("versions: %d then %d", created.Kpi.Version, updated.Kpi.Version)
		}
		l1, err := kpiClient(srv, testserver.Protocols()[0], c.rep1Token).ListKpis(ctx, &rallyev1.ListKpisRequest{Level: 1})
		if err != nil || len(l1.Kpis) != 8 || l1.Kpis[0].Key != "net_revenue" {
			t.Fatalf("level-1 KPIs: %v %v", l1.GetKpis(), err)
		}
		_, err = kpiClient(srv, testserver.Protocols()[0], c.rep1Token).CreateKpi(ctx, &rallyev1.CreateKpiRequest{Kpi: def})
		wantCode(t, err, connect.CodePermissionDenied)
	})

	t.Run("ActionPlanEvaluatedByTheJobQueue", func(t *testing.T) {
		mgr := kpiClient(srv, testserver.Protocols()[0], c.managerToken)
		res, err := mgr.CreateActionPlan(ctx, &rallyev1.CreateActionPlanRequest{
			KpiKey: "deals_won", Question: "Relancer les deals PME ?", Action: "Appeler chaque deal PME ouvert",
			Deadline: timestamppb.New(time.Now().Add(1500 * time.Millisecond)),
			Criterion: &rallyev1.SuccessCriterion{Scope: &rallyev1.Scope{Kind: rallyev1.ScopeKind_SCOPE_KIND_TEAM, Id: c.north.ID.String()},
				Comparison: rallyev1.CriterionComparison_CRITERION_COMPARISON_GREATER_OR_EQUAL, Threshold: 2, Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = mgr.CreateActionPlan(ctx, &rallyev1.CreateActionPlanRequest{
			KpiKey: "deals_won", Question: "q", Action: "a", Deadline: timestamppb.New(time.Now().Add(time.Hour)),
			Criterion: &rallyev1.SuccessCriterion{Scope: &rallyev1.Scope{Kind: rallyev1.ScopeKind_SCOPE_KIND_TEAM, Id: c.south.ID.String()},
				Comparison: rallyev1.CriterionComparison_CRITERION_COMPARISON_GREATER_OR_EQUAL, Threshold: 2, Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH},
		})
		wantCode(t, err, connect.CodePermissionDenied)
		var plan *rallyev1.ActionPlan
		waitFor(t, "the plan's evaluation at its deadline", func() bool {
			got, err := mgr.GetActionPlan(ctx, &rallyev1.GetActionPlanRequest{Id: res.Plan.Id})
			if err != nil {
				t.Fatal(err)
			}
			plan = got.Plan
			return plan.Status != rallyev1.ActionPlanStatus_ACTION_PLAN_STATUS_OPEN
		})
		if plan.Status != rallyev1.ActionPlanStatus_ACTION_PLAN_STATUS_SUCCEEDED || !near(plan.MeasuredValue, 2) {
			t.Fatalf("plan: %s %v", plan.Status, plan.MeasuredValue)
		}
		_, err = kpiClient(srv, testserver.Protocols()[0], c.rep2Token).GetActionPlan(ctx, &rallyev1.GetActionPlanRequest{Id: res.Plan.Id})
		wantCode(t, err, connect.CodeNotFound)
	})
}

func containsField(err error, field string) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr == nil && strings.Contains(fmt.Sprint(v), field) {
			return true
		}
	}
	return false
}

// TestOtherCompanysObjectsAreNotFound calls every KPI and dashboard RPC
// that names an object with another company's ids.
func TestOtherCompanysObjectsAreNotFound(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := newSalesCompany(t, srv)
	globex := testserver.NewCompany(t, srv.App.Org)
	for _, co := range []testserver.Company{acme.Company, globex} {
		if _, err := srv.App.KPI.InstallModel(ctx, co.Operator, uuid.Nil); err != nil {
			t.Fatal(err)
		}
	}
	def := kpi.Model()[0]
	def.Key = "acme_only"
	if _, err := srv.App.KPI.Create(ctx, acme.Operator, kpi.CreateRequest{Definition: def}); err != nil {
		t.Fatal(err)
	}
	huge := 1e12
	target, err := srv.App.KPI.SetTarget(ctx, acme.Operator, kpi.SetTargetRequest{KPIKey: "net_revenue", PeriodKind: period.Month,
		Scope: kpi.Company, Target: huge})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.App.KPI.EvaluateAlerts(ctx, acme.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	alerts, err := srv.App.KPI.ListAlerts(ctx, acme.Operator, kpi.ListAlertsRequest{Size: 10})
	if err != nil || len(alerts) == 0 {
		t.Fatalf("acme has no alert to steal: %v", err)
	}
	plan, err := srv.App.KPI.CreatePlan(ctx, acme.Operator, kpi.CreatePlanRequest{KPIKey: "deals_won", Question: "q", Action: "a",
		OwnerID: acme.Admin.ID, Deadline: time.Now().Add(time.Hour),
		Criterion: kpi.Criterion{Scope: kpi.Company, Operator: ">=", Threshold: 1, PeriodKind: period.Month}})
	if err != nil {
		t.Fatal(err)
	}

	proto := testserver.Protocols()[0]
	k := kpiClient(srv, proto, foreign(globex.AdminToken))
	d := dashClient(srv, proto, foreign(globex.AdminToken))
	acmeTeam := &rallyev1.Scope{Kind: rallyev1.ScopeKind_SCOPE_KIND_TEAM, Id: acme.north.ID.String()}
	month := rallyev1.PeriodKind_PERIOD_KIND_MONTH
	tests := []struct {
		name string
		call func() error
	}{
		{"GetKpi", func() error { _, err := k.GetKpi(ctx, &rallyev1.GetKpiRequest{Key: "acme_only"}); return err }},
		{"UpdateKpi", func() error {
			_, err := k.UpdateKpi(ctx, &rallyev1.UpdateKpiRequest{Key: "acme_only", Kpi: &rallyev1.KpiDefinition{Key: "acme_only",
				Name: &rallyev1.LocalizedText{Fr: "x", En: "x"}, Unit: rallyev1.KpiUnit_KPI_UNIT_COUNT, Level: 1,
				Direction: rallyev1.KpiDirection_KPI_DIRECTION_HIGHER_IS_BETTER, Periods: []rallyev1.PeriodKind{month},
				Formula: &rallyev1.Formula{Aggregation: rallyev1.Aggregation_AGGREGATION_COUNT,
					Events: &rallyev1.EventSelection{EventTypes: []string{"deal.won"}}}}})
			return err
		}},
		{"ArchiveKpi", func() error { _, err := k.ArchiveKpi(ctx, &rallyev1.ArchiveKpiRequest{Key: "acme_only"}); return err }},
		{"InstallModelForAnotherCompanysOwner", func() error {
			_, err := k.InstallModel(ctx, &rallyev1.InstallModelRequest{OwnerId: acme.Admin.ID.String()})
			return err
		}},
		{"CreateKpiOwnedByAnotherCompany", func() error {
			_, err := k.CreateKpi(ctx, &rallyev1.CreateKpiRequest{Kpi: &rallyev1.KpiDefinition{Key: "stolen",
				Name: &rallyev1.LocalizedText{Fr: "x", En: "x"}, Unit: rallyev1.KpiUnit_KPI_UNIT_COUNT, Level: 1,
				Direction: rallyev1.KpiDirection_KPI_DIRECTION_HIGHER_IS_BETTER, Periods: []rallyev1.PeriodKind{month},
				OwnerId: acme.Admin.ID.String(), Formula: &rallyev1.Formula{Aggregation: rallyev1.Aggregation_AGGREGATION_COUNT,
					Events: &rallyev1.EventSelection{EventTypes: []string{"deal.won"}}}}})
			return err
		}},
		{"SetTargetOnAnotherCompanysKpi", func() error {
			_, err := k.SetTarget(ctx, &rallyev1.SetTargetRequest{KpiKey: "acme_only", Period: month,
				Scope: &rallyev1.Scope{Kind: rallyev1.ScopeKind_SCOPE_KIND_COMPANY}, Target: 1})
			return err
		}},
		{"SetTargetOnAnotherCompanysTeam", func() error {
			_, err := k.SetTarget(ctx, &rallyev1.SetTargetRequest{KpiKey: "deals_won", Period: month, Scope: acmeTeam, Target: 1})
			return err
		}},
		{"DeleteTarget", func() error {
			_, err := k.DeleteTarget(ctx, &rallyev1.DeleteTargetRequest{Id: target.ID.String()})
			return err
		}},
		{"AcknowledgeAlert", func() error {
			_, err := k.AcknowledgeAlert(ctx, &rallyev1.AcknowledgeAlertRequest{Id: alerts[0].ID.String()})
			return err
		}},
		{"CreateActionPlanOnAnotherCompanysTeam", func() error {
			_, err := k.CreateActionPlan(ctx, &rallyev1.CreateActionPlanRequest{KpiKey: "deals_won", Question: "q", Action: "a",
				Deadline: timestamppb.New(time.Now().Add(time.Hour)), Criterion: &rallyev1.SuccessCriterion{Scope: acmeTeam,
					Comparison: rallyev1.CriterionComparison_CRITERION_COMPARISON_GREATER, Threshold: 1, Period: month}})
			return err
		}},
		{"CreateActionPlanOnAnotherCompanysAlert", func() error {
			_, err := k.CreateActionPlan(ctx, &rallyev1.CreateActionPlanRequest{KpiKey: "deals_won", Question: "q", Action: "a",
				AlertId: alerts[0].ID.String(), Deadline: timestamppb.New(time.Now().Add(time.Hour)),
				Criterion: &rallyev1.SuccessCriterion{Scope: &rallyev1.Scope{Kind: rallyev1.ScopeKind_SCOPE_KIND_COMPANY},
					Comparison: rallyev1.CriterionComparison_CRITERION_COMPARISON_GREATER, Threshold: 1, Period: month}})
			return err
		}},
		{"GetActionPlan", func() error {
			_, err := k.GetActionPlan(ctx, &rallyev1.GetActionPlanRequest{Id: plan.ID.String()})
			return err
		}},
		{"RecordLearnings", func() error {
			_, err := k.RecordLearnings(ctx, &rallyev1.RecordLearningsRequest{Id: plan.ID.String(), Learnings: "x"})
			return err
		}},
		{"GetLevel2", func() error {
			_, err := d.GetLevel2(ctx, &rallyev1.GetLevel2Request{TeamId: acme.north.ID.String()})
			return err
		}},
		{"GetLevel3Person", func() error {
			_, err := d.GetLevel3(ctx, &rallyev1.GetLevel3Request{UserId: acme.rep1.ID.String()})
			return err
		}},
		{"GetLevel3Team", func() error {
			_, err := d.GetLevel3(ctx, &rallyev1.GetLevel3Request{TeamId: acme.north.ID.String()})
			return err
		}},
		{"Watch", func() error {
			stream, err := d.Watch(ctx, &rallyev1.WatchRequest{Level: 3, UserId: acme.rep1.ID.String()})
			if err != nil {
				return err
			}
			defer stream.Close()
			stream.Receive()
			return stream.Err()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), connect.CodeNotFound) })
	}
	t.Run("ListsShowNothingOfAnotherCompany", func(t *testing.T) {
		ts, err := k.ListTargets(ctx, &rallyev1.ListTargetsRequest{})
		if err != nil || len(ts.Targets) != 0 {
			t.Fatalf("targets: %v %v", ts.GetTargets(), err)
		}
		as, err := k.ListAlerts(ctx, &rallyev1.ListAlertsRequest{})
		if err != nil || len(as.Alerts) != 0 {
			t.Fatalf("alerts: %v %v", as.GetAlerts(), err)
		}
		ps, err := k.ListActionPlans(ctx, &rallyev1.ListActionPlansRequest{})
		if err != nil || len(ps.Plans) != 0 {
			t.Fatalf("plans: %v %v", ps.GetPlans(), err)
		}
		ks, err := k.ListKpis(ctx, &rallyev1.ListKpisRequest{})
		if err != nil || cardCount(ks.Kpis, "acme_only") != 0 {
			t.Fatalf("kpis: %v", err)
		}
		l1, err := d.GetLevel1(ctx, &rallyev1.GetLevel1Request{})
		// A company created this month without events: 0, none of Acme's revenue.
		if err != nil || !near(cardOf(l1.Kpis, "net_revenue").Value, 0) {
			t.Fatalf("level 1 of a company without events: %v %v", cardOf(l1.Kpis, "net_revenue").GetValue(), err)
		}
	})
}

func cardCount(ks []*rallyev1.Kpi, key string) int {
	n := 0
	for _, k := range ks {
		if k.Key == key {
			n++
		}
	}
	return n
}

// TestWatchAcrossInstances watches the level-1 dashboard on one instance
// while events are ingested through another; both share PostgreSQL and
// Redis.
func TestWatchAcrossInstances(t *testing.T) {
	a := testserver.Start(t)
	b := testserver.Start(t, func(cfg *config.Config) {
		cfg.DatabaseURL, cfg.RedisPrefix = a.App.Config.DatabaseURL, a.App.Config.RedisPrefix
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := newSalesCompany(t, a)
	if _, err := a.App.KPI.InstallModel(ctx, c.Operator, uuid.Nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the model's history to be computed", func() bool {
		board, err := dashClient(a, testserver.Protocols()[0], c.AdminToken).GetLevel1(ctx, &rallyev1.GetLevel1Request{})
		if err != nil {
			t.Fatal(err)
		}
		for _, card := range board.Kpis {
			if card.Computing {
				return false
			}
		}
		return true
	})
	select {
	case <-b.App.Hub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("instance b never subscribed to KPI changes")
	}
	stream, err := dashClient(b, testserver.Protocols()[1], c.AdminToken).Watch(ctx, &rallyev1.WatchRequest{Level: 1})
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan *rallyev1.WatchResponse, 100)
	go func() {
		defer close(updates)
		for stream.Receive() {
			updates <- stream.Msg()
		}
	}()
	next := func() *rallyev1.WatchResponse {
		select {
		case u, ok := <-updates:
			if !ok {
				t.Fatalf("stream ended: %v", stream.Err())
			}
			return u
		case <-time.After(20 * time.Second):
			t.Fatal("no update")
		}
		return nil
	}
	if snap := next(); !snap.Snapshot || len(snap.Kpis) != 8 {
		t.Fatalf("first message: snapshot=%v, %d cards", snap.Snapshot, len(snap.Kpis))
	}
	sent := time.Now()
	if _, err := eventClient(a, testserver.Protocols()[0], c.key).IngestEvents(ctx, &rallyev1.IngestEventsRequest{
		Events: []*rallyev1.SalesEvent{won(c.rep1, time.Now().Add(-time.Second), 900)}}); err != nil {
		t.Fatal(err)
	}
	for {
		u := next()
		if u.Snapshot {
			t.Fatal("a second snapshot")
		}
		if card := cardOf(u.Kpis, "net_revenue"); card != nil && near(card.Value, 900) {
			t.Logf("the change reached a watcher of the other instance %s after the batch was accepted", time.Since(sent))
			if cardOf(u.Kpis, "nps") != nil {
				t.Fatal("a KPI that did not change was sent")
			}
			return
		}
	}
}
