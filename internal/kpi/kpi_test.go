package kpi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/event/eventgen"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

var paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(err)
	}
	return loc
}()

type bundle struct {
	db     *postgres.DB
	org    *org.Service
	svc    *kpi.Service
	events *event.Store
	feed   *event.Feed
	op     rallye.Principal
	reps   []eventgen.Rep
	userOf map[string]uuid.UUID
	// teams: parent P with children A and B; C on its own.
	teams   map[string]uuid.UUID
	teamsOf map[uuid.UUID][]uuid.UUID
	below   map[uuid.UUID][]uuid.UUID
	// created is just before the company was created.
	created time.Time
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup makes a company in Europe/Paris with a small team tree and nReps
// reps; rep 2 sits in two sub-teams of P (A and B).
func setup(t testing.TB, nReps int) *bundle {
	t.Helper()
	ctx := context.Background()
	db := testutil.DB(t)
	b := &bundle{db: db, org: org.NewService(db), events: event.NewStore(db), userOf: map[string]uuid.UUID{},
		teams: map[string]uuid.UUID{}, teamsOf: map[uuid.UUID][]uuid.UUID{}, below: map[uuid.UUID][]uuid.UUID{}, created: time.Now()}
	tenant, admin, err := b.org.CreateTenant(ctx, org.NewTenant{Name: "Acme", Slug: "acme", TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Admin", Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	b.op = rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	b.svc = kpi.NewService(db, nil, quiet())
	b.svc.Now = func() time.Time { return time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC) }
	b.feed = event.NewFeed(db, quiet())
	b.feed.Register(b.svc.Rollups())
	for _, spec := range []struct{ name, parent string }{{"P", ""}, {"A", "P"}, {"B", "P"}, {"C", ""}} {
		team, err := b.org.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: spec.name, ParentID: b.teams[spec.parent]})
		if err != nil {
			t.Fatal(err)
		}
		b.teams[spec.name] = team.ID
	}
	b.below[b.teams["P"]] = []uuid.UUID{b.teams["P"], b.teams["A"], b.teams["B"]}
	for _, n := range []string{"A", "B", "C"} {
		b.below[b.teams[n]] = []uuid.UUID{b.teams[n]}
	}
	var rows []org.ImportRow
	for i := range nReps {
		ext := fmt.Sprintf("crm-rep-%d", i)
		b.reps = append(b.reps, eventgen.Rep{ExternalID: ext, Skill: 0.8 + 0.1*float64(i%5)})
		team := []string{"A", "A", "A", "B", "B", "B", "C", "C"}[i%8]
		ids := []uuid.UUID{b.teams[team]}
		if i == 2 {
			ids = append(ids, b.teams["B"])
		}
		rows = append(rows, org.ImportRow{User: org.UserInput{DisplayName: ext, Email: ext + "@acme.test", Locale: org.LocaleFR,
			ExternalID: ext, Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: ids}})
	}
	res, err := b.org.ImportUsers(ctx, b.op, rows)
	if err != nil || len(res.Rejected) > 0 {
		t.Fatalf("import: %v %+v", err, res.Rejected)
	}
	users, err := b.org.ListUsers(ctx, b.op, org.ListUsersRequest{Size: 500})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		b.userOf[u.ExternalID] = u.ID
		b.teamsOf[u.ID] = u.TeamIDs
	}
	return b
}

func (b *bundle) install(t testing.TB) {
	t.Helper()
	res, err := b.svc.InstallModel(context.Background(), b.op, uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Created) != len(kpi.Model()) {
		t.Fatalf("installed %d KPIs, the model has %d", len(res.Created), len(kpi.Model()))
	}
}

func (b *bundle) dataset(t testing.TB, seed uint64, start time.Time, days int) ([]eventgen.Delivery, []event.Event) {
	t.Helper()
	var ds []eventgen.Delivery
	var truth []event.Event
	cfg := eventgen.Default(seed, b.reps, start, start.AddDate(0, 0, days), paris)
	err := eventgen.Generate(cfg, func(d eventgen.Delivery) error {
		ds = append(ds, d)
		return nil
	}, func(e event.Event) { truth = append(truth, e) })
	if err != nil {
		t.Fatal(err)
	}
	return ds, truth
}

func (b *bundle) ingest(t testing.TB, ds []eventgen.Delivery) {
	t.Helper()
	for i := 0; i < len(ds); i += 500 {
		batch := ds[i:min(i+500, len(ds))]
		rows := make([]event.Row, len(batch))
		for j, d := range batch {
			rows[j] = event.Row{Event: d.Event, HasAmount: d.HasAmount}
		}
		res, err := b.events.Ingest(context.Background(), b.op, rows)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rejected) > 0 {
			t.Fatalf("rejected: %+v", res.Rejected[0])
		}
	}
}

// drain applies the feed. Changes stay pending while an older transaction
// of the cluster (another test's) is running: retry until they pass.
func (b *bundle) drain(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending, err := b.feed.Drain(context.Background(), b.op.TenantID)
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("drain: changes still pending after 30s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (b *bundle) backfill(t testing.TB) {
	t.Helper()
	if err := b.svc.Backfill(context.Background(), b.op.TenantID); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) oracle(truth []event.Event) *oracle {
	return &oracle{truth: truth, userOf: b.userOf, teamsOf: b.teamsOf, below: b.below, now: b.svc.Now(), created: b.created}
}

func modelKeys() []string {
	var keys []string
	for _, d := range kpi.Model() {
		keys = append(keys, d.Key)
	}
	return keys
}

func (b *bundle) read(t *testing.T, s kpi.ScopeRef, periods []period.Period) []map[string]kpi.Value {
	t.Helper()
	vals, err := b.svc.Values(context.Background(), b.op.TenantID, kpi.ValuesRequest{Keys: modelKeys(), Scope: s, Periods: periods})
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func same(got, want *float64) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	return near(*got, *want)
}

func show(v *float64) string {
	if v == nil {
		return "no value"
	}
	return fmt.Sprintf("%.6f", *v)
}

// compare checks every model KPI for s over periods against the oracle.
func (b *bundle) compare(t *testing.T, o *oracle, name string, s kpi.ScopeRef, periods []period.Period) (checked, valued int) {
	t.Helper()
	got := b.read(t, s, periods)
	for pi, p := range periods {
		for _, key := range modelKeys() {
			want := o.expect(key, s, p)
			v := got[pi][key]
			if v.Computing {
				t.Fatalf("%s %s %s: still computing", name, key, p.Key())
			}
			checked++
			if want.value != nil {
				valued++
			}
			if !same(v.Value, want.value) {
				t.Errorf("%s %s %s: got %s, want %s", name, key, p.Key(), show(v.Value), show(want.value))
			}
			if want.breakdown == nil {
				continue
			}
			gotDims := map[string]*float64{}
			for _, d := range v.Breakdown {
				gotDims[d.Dim] = d.Value
			}
			for dim, w := range want.breakdown {
				if !same(gotDims[dim], w) {
					t.Errorf("%s %s %s [%s]: got %s, want %s", name, key, p.Key(), dim, show(gotDims[dim]), show(w))
				}
			}
			for dim, g := range gotDims {
				if _, ok := want.breakdown[dim]; !ok && g != nil {
					t.Errorf("%s %s %s: unexpected breakdown value %q = %s", name, key, p.Key(), dim, show(g))
				}
			}
		}
	}
	return checked, valued
}

type scopeCase struct {
	name  string
	scope kpi.ScopeRef
}

func (b *bundle) scopes() []scopeCase {
	return []scopeCase{
		{"Company", kpi.Company},
		{"ParentTeam", kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: b.teams["P"]}},
		{"SubTeam", kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: b.teams["A"]}},
		{"OtherTeam", kpi.ScopeRef{Kind: kpi.ScopeTeam, ID: b.teams["C"]}},
		{"Rep", kpi.ScopeRef{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-0"]}},
		{"RepInTwoTeams", kpi.ScopeRef{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-2"]}},
	}
}

func periodCases() []struct {
	name    string
	periods []period.Period
} {
	end := time.Date(2026, 4, 26, 12, 0, 0, 0, paris)
	return []struct {
		name    string
		periods []period.Period
	}{
		{"Months", kpi.Series(period.Month, time.Date(2026, 5, 15, 0, 0, 0, 0, paris), paris, 4)},
		{"Weeks", kpi.Series(period.Week, end, paris, 9)},
		// Around the switch to summer time (2026-03-29, a 23-hour day).
		{"DaysAcrossDST", kpi.Series(period.Day, time.Date(2026, 3, 31, 12, 0, 0, 0, paris), paris, 5)},
		{"Quarters", kpi.Series(period.Quarter, end, paris, 2)},
	}
}

// TestEveryModelKPIMatchesTheTruth ingests half a generated dataset,
// installs the model (so the backfill computes the history), ingests the
// rest (applied by the consumer), then compares every model KPI with the
// oracle for several scopes and periods. Replaying every batch then changes
// nothing.
func TestEveryModelKPIMatchesTheTruth(t *testing.T) {
	b := setup(t, 8)
	ds, truth := b.dataset(t, 11, time.Date(2026, 3, 2, 0, 0, 0, 0, paris), 56)
	b.ingest(t, ds[:len(ds)/2])
	b.drain(t)
	b.install(t)
	b.ingest(t, ds[len(ds)/2:])
	b.drain(t)
	b.backfill(t)
	o := b.oracle(truth)

	total, valued := 0, 0
	for _, sc := range b.scopes() {
		t.Run(sc.name, func(t *testing.T) {
			for _, pc := range periodCases() {
				t.Run(pc.name, func(t *testing.T) {
					c, v := b.compare(t, o, sc.name, sc.scope, pc.periods)
					total, valued = total+c, valued+v
				})
			}
		})
	}
	t.Logf("%d comparisons, %d with a value", total, valued)
	// The comparison means something only if most expectations have values.
	if valued < total/2 {
		t.Fatalf("only %d of %d expectations have a value", valued, total)
	}

	t.Run("ReplayChangesNothing", func(t *testing.T) {
		periods := kpi.Series(period.Week, time.Date(2026, 4, 26, 0, 0, 0, 0, paris), paris, 9)
		before := b.read(t, kpi.Company, periods)
		b.ingest(t, ds)
		b.drain(t)
		after := b.read(t, kpi.Company, periods)
		for pi := range periods {
			for _, k := range modelKeys() {
				if !same(before[pi][k].Value, after[pi][k].Value) {
					t.Errorf("%s %s: %s before the replay, %s after", k, periods[pi].Key(), show(before[pi][k].Value), show(after[pi][k].Value))
				}
			}
		}
	})
}

// TestStocksAreReadAsOfToday reads the current period of the stock KPIs
// while it is running: they count up to today, not the derived changes
// dated later in the period.
func TestStocksAreReadAsOfToday(t *testing.T) {
	b := setup(t, 6)
	b.install(t)
	ds, truth := b.dataset(t, 5, time.Date(2026, 3, 2, 0, 0, 0, 0, paris), 35)
	b.ingest(t, ds)
	b.drain(t)
	b.backfill(t)
	now := time.Date(2026, 4, 8, 15, 0, 0, 0, paris)
	b.svc.Now = func() time.Time { return now }
	o := b.oracle(truth)
	periods := kpi.Series(period.Month, now, paris, 2)
	for _, sc := range b.scopes()[:3] {
		got := b.read(t, sc.scope, periods)
		for _, key := range []string{"open_opportunities", "deals_at_risk", "pipeline_velocity"} {
			for pi, p := range periods {
				want := o.expect(key, sc.scope, p)
				if !same(got[pi][key].Value, want.value) {
					t.Errorf("%s %s %s: got %s, want %s", sc.name, key, p.Key(), show(got[pi][key].Value), show(want.value))
				}
			}
		}
	}
}
