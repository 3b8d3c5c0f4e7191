package kpi_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/period"
)

// identical is exact equality: the cache must give the very values an
// uncached read computes, not close ones.
func identical(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

// sameCards compares two reads of the same cards, series and breakdowns
// included.
func sameCards(t *testing.T, what string, got, want [][]kpi.Card) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d scopes, want %d", what, len(got), len(want))
	}
	for si := range want {
		if len(got[si]) != len(want[si]) {
			t.Fatalf("%s: scope %d has %d cards, want %d", what, si, len(got[si]), len(want[si]))
		}
		for ci, w := range want[si] {
			g := got[si][ci]
			name := what + " " + w.KPI.Key + " " + w.Period.Key()
			if !identical(g.Value.Value, w.Value.Value) || !identical(g.Previous, w.Previous) ||
				g.Value.Computing != w.Value.Computing || g.Value.NotApplicable != w.Value.NotApplicable {
				t.Errorf("%s scope %d: got %s (previous %s), want %s (previous %s)", name, si,
					show(g.Value.Value), show(g.Previous), show(w.Value.Value), show(w.Previous))
			}
			if len(g.Value.Breakdown) != len(w.Value.Breakdown) {
				t.Errorf("%s scope %d: %d breakdown values, want %d", name, si, len(g.Value.Breakdown), len(w.Value.Breakdown))
			} else {
				for i, d := range w.Value.Breakdown {
					if g.Value.Breakdown[i].Dim != d.Dim || !identical(g.Value.Breakdown[i].Value, d.Value) {
						t.Errorf("%s scope %d [%s]: got %s, want %s", name, si, d.Dim, show(g.Value.Breakdown[i].Value), show(d.Value))
					}
				}
			}
			if len(g.Series) != len(w.Series) {
				t.Errorf("%s scope %d: series of %d, want %d", name, si, len(g.Series), len(w.Series))
				continue
			}
			for i, p := range w.Series {
				if !identical(g.Series[i].Value, p.Value) {
					t.Errorf("%s scope %d series %s: got %s, want %s", name, si, p.Period.Key(), show(g.Series[i].Value), show(p.Value))
				}
			}
		}
	}
}

// closedCacheLookups reads the cache's hit or miss counter (both tables).
func closedCacheLookups(t *testing.T, svc *kpi.Service, result string) float64 {
	t.Helper()
	total := 0.0
	for _, c := range svc.Collectors() {
		ch := make(chan prometheus.Metric, 64)
		go func() { c.Collect(ch); close(ch) }()
		for m := range ch {
			if m.Desc().String() == "" {
				continue
			}
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				t.Fatal(err)
			}
			if d.Counter == nil {
				continue
			}
			isCache, isResult := false, false
			for _, l := range d.Label {
				if l.GetName() == "result" && l.GetValue() == result {
					isResult = true
				}
				if l.GetName() == "table" {
					isCache = true
				}
			}
			if isCache && isResult {
				total += d.Counter.GetValue()
			}
		}
	}
	return total
}

// TestClosedPeriodCacheReadsWhatAnUncachedReadReads reads every model KPI
// (level 2's three medians and the distinct counts among them) for the company, teams and a rep
// over months, weeks and quarters, through the closed-period cache and
// without it, on generated data; then sends late events, a correction and a
// retraction into a closed (cached) month, and late events into the current
// month's days before today (cached as rows), and reads again: every value,
// previous value, series and breakdown must be identical, and the late
// events must move the cached month's median.
func TestClosedPeriodCacheReadsWhatAnUncachedReadReads(t *testing.T) {
	ctx := context.Background()
	b := setup(t, 8)
	// Today is 18 May: the data runs to the 20th, so the current month,
	// week and quarter have cached days before today and rows from today on.
	now := time.Date(2026, 5, 18, 12, 0, 0, 0, time.UTC)
	b.svc.Now = func() time.Time { return now }
	b.install(t)
	ds, _ := b.dataset(t, 23, time.Date(2026, 2, 2, 0, 0, 0, 0, paris), 107)
	b.ingest(t, ds)
	b.drain(t)
	b.backfill(t)
	uncached := kpi.NewService(b.db, nil, quiet())
	uncached.Now, uncached.UncachedReads = b.svc.Now, true

	// Every model KPI: level 2's medians and distinct counts, and the
	// sums, stocks and composites read alongside them.
	keys := modelKeys()
	scopeSets := []struct {
		name   string
		scopes []kpi.ScopeRef
	}{
		{"Company", []kpi.ScopeRef{kpi.Company}},
		{"TeamRows", []kpi.ScopeRef{{Kind: kpi.ScopeTeam, ID: b.teams["P"]}, {Kind: kpi.ScopeTeam, ID: b.teams["C"]}}},
		{"SubTeam", []kpi.ScopeRef{{Kind: kpi.ScopeTeam, ID: b.teams["A"]}}},
		{"Reps", []kpi.ScopeRef{{Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-2"]}, {Kind: kpi.ScopePerson, ID: b.userOf["crm-rep-3"]}}},
	}
	requests := []struct {
		name string
		kind period.Kind
		n    int
	}{
		{"Months", period.Month, 12},
		{"Weeks", period.Week, 9},
		{"Quarters", period.Quarter, 4},
	}
	compare := func(t *testing.T, when string) {
		t.Helper()
		for _, ss := range scopeSets {
			for _, rq := range requests {
				cr := kpi.CardsRequest{Keys: keys, Scopes: ss.scopes, Kind: rq.kind, SeriesLength: rq.n}
				got, err := b.svc.Cards(ctx, b.op.TenantID, cr)
				if err != nil {
					t.Fatal(err)
				}
				want, err := uncached.Cards(ctx, b.op.TenantID, cr)
				if err != nil {
					t.Fatal(err)
				}
				sameCards(t, when+" "+ss.name+" "+rq.name, got, want)
			}
		}
	}

	compare(t, "first read")
	hits := closedCacheLookups(t, b.svc, "hit")
	compare(t, "second read")
	if got := closedCacheLookups(t, b.svc, "hit"); got <= hits {
		t.Fatalf("the second read took nothing from the cache (%v hits before, %v after)", hits, got)
	}
	if got := closedCacheLookups(t, uncached, "hit") + closedCacheLookups(t, uncached, "miss"); got != 0 {
		t.Fatalf("the uncached service looked up its cache %v times", got)
	}

	march := period.Of(period.Month, time.Date(2026, 3, 15, 0, 0, 0, 0, paris), paris)
	medianOf := func(svc *kpi.Service) *float64 {
		t.Helper()
		vals, err := svc.Values(ctx, b.op.TenantID, kpi.ValuesRequest{Keys: []string{"median_closing_days"}, Scope: kpi.Company,
			Periods: []period.Period{march}})
		if err != nil {
			t.Fatal(err)
		}
		return vals[0]["median_closing_days"].Value
	}
	before := medianOf(b.svc)
	if before == nil {
		t.Fatal("no March median: the data does not reach the cached month")
	}

	// Late events for March, a closed month the cache holds: long deals
	// (they move the median), a call by a rep, then a correction of one deal
	// and the retraction of another.
	day := 24 * time.Hour
	x := &builder{b: b, rep: "crm-rep-3"}
	y := &builder{b: b, rep: "crm-rep-7"}
	at := time.Date(2026, 3, 12, 10, 0, 0, 0, paris)
	long := []event.Row{x.won(at, 400*day, 50000), x.won(at, 420*day, 60000), x.won(at.Add(time.Hour), 380*day, 70000)}
	for i := range 40 {
		long = append(long, x.won(at.Add(time.Duration(i)*time.Minute), time.Duration(300+i)*day, 10000))
	}
	x.send(t, long...)
	y.send(t, y.call(at))
	// And into the current month's days before today (cached too).
	x.send(t, x.won(time.Date(2026, 5, 5, 10, 0, 0, 0, paris), 500*day, 90000), x.won(time.Date(2026, 5, 6, 10, 0, 0, 0, paris), 510*day, 90000))
	y.send(t, y.call(time.Date(2026, 5, 4, 10, 0, 0, 0, paris)))
	after := medianOf(b.svc)
	if identical(after, before) {
		t.Fatalf("the late March deals did not move the March median (%s): the test proves nothing", show(after))
	}
	if want := medianOf(uncached); !identical(after, want) {
		t.Fatalf("March median after late events: cached %s, uncached %s", show(after), show(want))
	}
	compare(t, "after late events")

	fixed := long[0]
	fixed.Event.Revision, fixed.Event.OpportunityCreatedAt = 1, at.Add(-2*day)
	gone := long[1]
	gone.Event.Revision, gone.Event.Retracted = 1, true
	x.send(t, fixed, gone)
	compare(t, "after a correction and a retraction")
}

// BenchmarkLevel2Read reads what a company's level-2 board reads (its KPIs
// over a 12-month series for the company, then the current and previous
// months for each top-level team) on five months of generated data, through
// the closed-period cache and, as the same-run baseline, without it.
func BenchmarkLevel2Read(b *testing.B) {
	ctx := context.Background()
	x := setup(b, 24)
	now := time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)
	x.svc.Now = func() time.Time { return now }
	x.install(b)
	ds, _ := x.dataset(b, 7, time.Date(2026, 2, 16, 0, 0, 0, 0, paris), 154)
	x.ingest(b, ds)
	x.drain(b)
	x.backfill(b)
	keys, err := x.svc.KeysOfLevel(ctx, x.op.TenantID, 2)
	if err != nil {
		b.Fatal(err)
	}
	teams := []kpi.ScopeRef{{Kind: kpi.ScopeTeam, ID: x.teams["P"]}, {Kind: kpi.ScopeTeam, ID: x.teams["C"]}}
	read := func(b *testing.B, svc *kpi.Service) {
		if _, err := svc.Cards(ctx, x.op.TenantID, kpi.CardsRequest{Keys: keys, Scopes: []kpi.ScopeRef{kpi.Company}, Kind: period.Month}); err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Cards(ctx, x.op.TenantID, kpi.CardsRequest{Keys: keys, Scopes: teams, Kind: period.Month, SeriesLength: 2}); err != nil {
			b.Fatal(err)
		}
	}
	uncached := kpi.NewService(x.db, nil, quiet())
	uncached.Now, uncached.UncachedReads = x.svc.Now, true
	b.Run("Uncached", func(b *testing.B) {
		for b.Loop() {
			read(b, uncached)
		}
	})
	b.Run("Cached", func(b *testing.B) {
		read(b, x.svc) // fills the cache, as the first read after a start does
		for b.Loop() {
			read(b, x.svc)
		}
	})
}
