package challenge

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

func fed(m Mission, values ...float64) *progress {
	p := &progress{}
	for _, v := range values {
		p.apply(m, contribution{Value: int64(v * valueScale), Sample: v}, +1)
	}
	return p
}

func TestMissingText(t *testing.T) {
	meetings := Mission{Aggregate: AggCount, EventTypes: []event.Type{event.MeetingHeld}, Target: 5, Comparison: AtLeast, Unit: UnitCount}
	revenue := Mission{Aggregate: AggSum, EventTypes: []event.Type{event.DealWon}, Target: 10000, Comparison: AtLeast, Unit: UnitMoney}
	noShows := Mission{Aggregate: AggRate, EventTypes: []event.Type{event.MeetingHeld, event.MeetingNoShow}, Target: 10,
		MinVolume: 10, Comparison: AtMost, Unit: UnitPercent}
	cycle := Mission{Aggregate: AggMedian, EventTypes: []event.Type{event.DealWon}, Target: 20, Comparison: AtMost, Unit: UnitDays}
	withHits := func(m Mission, volume, hits int64) *progress { return &progress{Volume: volume, Hits: hits} }
	for _, tc := range []struct {
		name   string
		m      Mission
		p      *progress
		locale string
		want   string
		pct    int
	}{
		{"CountEN", meetings, fed(meetings, 1, 1, 1), "en", "2 more meetings", 60},
		{"CountFR", meetings, fed(meetings, 1, 1, 1), "fr", "2 réunions de plus", 60},
		{"CountOneEN", meetings, fed(meetings, 1, 1, 1, 1), "en", "1 more meeting", 80},
		{"CountOneFR", meetings, fed(meetings, 1, 1, 1, 1), "fr", "1 réunion de plus", 80},
		{"MoneyEN", revenue, fed(revenue, 8800), "en", "1,200\u00a0EUR more", 88},
		{"MoneyFR", revenue, fed(revenue, 8800), "fr", "1\u202f200\u00a0EUR de plus", 88},
		{"MoneyCentsEN", revenue, fed(revenue, 0.5), "en", "9,999.50\u00a0EUR more", 0},
		{"RateVolumeShortEN", noShows, withHits(noShows, 4, 1), "en", "6 more meetings; 15 percentage points lower (now 25\u00a0%)", 40},
		{"RateFR", noShows, withHits(noShows, 20, 4), "fr", "10 points de moins (20\u00a0% actuellement)", 50},
		{"RateMetEN", noShows, withHits(noShows, 20, 1), "en", "", 100},
		{"MedianEN", cycle, fed(cycle, 10, 30, 32), "en", "10 days lower (now 30 days)", 66},
		{"MedianFR", cycle, fed(cycle, 10, 30, 32), "fr", "10 jours de moins (30 jours actuellement)", 66},
		{"NothingYetFR", cycle, &progress{}, "fr", "1 affaire gagnée de plus", 0},
		{"RateGoodButVolumeShortFR", Mission{Aggregate: AggRate, EventTypes: []event.Type{event.DealWon}, Target: 30, MinVolume: 5,
			Comparison: AtLeast, Unit: UnitPercent}, withHits(noShows, 1, 1), "fr", "4 affaires gagnées de plus", 20},
		{"AverageGoodButVolumeShortEN", Mission{Aggregate: AggAverage, EventTypes: []event.Type{event.DealWon}, Target: 1000, MinVolume: 3,
			Comparison: AtLeast, Unit: UnitMoney}, fed(revenue, 4200), "en", "2 more deals won", 33},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := missingText(tc.m, tc.p, submissionNone, nil, "EUR", tc.locale); got != tc.want {
				t.Errorf("missing %q, want %q", got, tc.want)
			}
			if tc.want == "" {
				tc.p.Completed = true
			}
			if got := percent(tc.m, tc.p); got != tc.pct {
				t.Errorf("percent %d, want %d", got, tc.pct)
			}
		})
	}
}

// TestMedianAgainstSort compares the incremental samples with a plain sort
// after random additions and removals.
func TestMedianAgainstSort(t *testing.T) {
	m := Mission{Aggregate: AggMedian, Target: 1, Comparison: AtMost}
	rng := rand.New(rand.NewPCG(1, 2))
	p := &progress{}
	var ref []float64
	for i := range 2000 {
		if len(ref) > 0 && rng.IntN(3) == 0 {
			j := rng.IntN(len(ref))
			p.apply(m, contribution{Value: int64(ref[j] * valueScale), Sample: ref[j]}, -1)
			ref = slices.Delete(ref, j, j+1)
		} else {
			v := float64(rng.IntN(50)) / 4
			p.apply(m, contribution{Value: int64(v * valueScale), Sample: v}, +1)
			ref = append(ref, v)
		}
		sorted := slices.Sorted(slices.Values(ref))
		var want float64
		if n := len(sorted); n > 0 {
			want = sorted[n/2]
			if n%2 == 0 {
				want = (sorted[n/2-1] + sorted[n/2]) / 2
			}
		}
		got, _ := measure(m, p)
		if got != want || p.Volume != int64(len(ref)) {
			t.Fatalf("step %d: median %v, want %v", i, got, want)
		}
	}
}

func TestCompetitionRanks(t *testing.T) {
	pts := []int64{50, 40, 40, 30, 30, 30, 10}
	rows := make([]Standing, len(pts))
	for i, p := range pts {
		rows[i].Points = p
	}
	competitionRanks(rows, func(a, b Standing) bool { return a.Points == b.Points }, func(r *Standing, n int) { r.Rank = n })
	for i, want := range []int{1, 2, 2, 4, 4, 4, 7} {
		if rows[i].Rank != want {
			t.Fatalf("ranks %+v", rows)
		}
	}
}

func TestRulePoints(t *testing.T) {
	r, err := compileRule(Rule{EventTypes: []event.Type{event.DealWon}, Filter: `deal_kind == "upsell"`, Value: "amount", Per: 100, Points: 1}, "")
	if err != nil {
		t.Fatal(err)
	}
	// A rule whose points per unit are tiny: the largest amount would give
	// more than one event may.
	fine, err := compileRule(Rule{EventTypes: []event.Type{event.DealWon}, Value: "amount", Per: 0.001, Points: 1000}, "")
	if err != nil {
		t.Fatal(err)
	}
	attr, err := compileRule(Rule{EventTypes: []event.Type{event.DealWon}, Filter: `attributes["tier"] == "gold"`, Per: 1, Points: 5}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		rule    compiledRule
		cents   int64
		kind    string
		want    int64
		ok      bool
		evalErr bool
	}{
		{"Exact", r, 2900_00, "upsell", 29, true, false},
		{"Floor", r, 2999_99, "upsell", 29, true, false},
		{"Below", r, 99_99, "upsell", 0, true, false},
		{"OtherKind", r, 2900_00, "new", 0, false, false},
		// The largest amount ingestion accepts gives its points, exactly.
		{"LargestAmount", r, event.MaxMinorUnits, "upsell", event.MaxMinorUnits / 100 / 100, true, false},
		// int64-max minor units (refused at ingestion since) used to give 0
		// without a word: it is a rule error now.
		{"Int64MaxIsAnError", r, math.MaxInt64, "upsell", 0, false, true},
		{"TooManyPointsIsAnError", fine, event.MaxMinorUnits, "upsell", 0, false, true},
		{"MissingAttributeIsAnError", attr, 100, "upsell", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := tc.rule.points(event.Event{Type: event.DealWon, Amount: tc.cents, DealKind: tc.kind}, time.UTC)
			if got != tc.want || ok != tc.ok || (err != nil) != tc.evalErr {
				t.Fatalf("points %d %v %v, want %d %v (error: %v)", got, ok, err, tc.want, tc.ok, tc.evalErr)
			}
		})
	}
}

// TestCompileNamesTheField checks definitions that must be refused.
func TestCompileNamesTheField(t *testing.T) {
	valid := func() Definition {
		return Definition{Name: Text{FR: "a", EN: "a"}, Missions: []Mission{{Key: "m", Name: Text{FR: "m", EN: "m"},
			Aggregate: AggCount, EventTypes: []event.Type{event.CallLogged}, Target: 1}}}
	}
	for _, tc := range []struct {
		name  string
		edit  func(*Definition)
		field string
	}{
		{"NameInOneLanguage", func(d *Definition) { d.Name.EN = "" }, "name"},
		{"UnknownEventType", func(d *Definition) { d.Missions[0].EventTypes = []event.Type{"deal.signed"} }, "missions[0].auto.event_types"},
		{"BadFilter", func(d *Definition) { d.Missions[0].Filter = "amount >" }, "missions[0].auto.filter"},
		{"FilterNotBoolean", func(d *Definition) { d.Missions[0].Filter = "amount" }, "missions[0].auto.filter"},
		{"RateWithoutHits", func(d *Definition) { d.Missions[0].Aggregate = AggRate }, "missions[0].auto.hit_filter"},
		{"SumWithoutValue", func(d *Definition) { d.Missions[0].Aggregate = AggSum }, "missions[0].auto.value"},
		{"CountAtMost", func(d *Definition) { d.Missions[0].Comparison = AtMost }, "missions[0].auto.comparison"},
		{"TeamMissionIndividualMode", func(d *Definition) { d.Missions[0].Scope = ScopeTeam }, "missions[0].scope"},
		{"DuplicateKey", func(d *Definition) { d.Missions = append(d.Missions, d.Missions[0]) }, "missions[1].key"},
		{"RaceWithoutTarget", func(d *Definition) { d.Format = FormatRace }, "race_target_points"},
		{"BattleIndividual", func(d *Definition) { d.Format = FormatTeamBattle; d.TeamMetric = TeamTotal }, "mode"},
		{"RewardRanks", func(d *Definition) { d.Rewards = []Reward{{Kind: RewardRank, FromRank: 3, ToRank: 1, Ref: "x"}} }, "rewards[0].from_rank"},
		{"NothingToScore", func(d *Definition) { d.Missions = nil }, "missions"},
		{"GraceTooLong", func(d *Definition) { d.Grace = Duration(90 * 24 * time.Hour) }, "grace_period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := valid()
			tc.edit(&d)
			d = d.withDefaults()
			if tc.name == "BattleIndividual" {
				d.Mode = ModeIndividual // withDefaults would put a battle in team mode
			}
			_, err := compile(d, "")
			assertField(t, err, tc.field)
		})
	}
	if _, err := compile(valid().withDefaults(), ""); err != nil {
		t.Fatal(err)
	}
}

func assertField(t *testing.T, err error, field string) {
	t.Helper()
	e, ok := rallye.AsError(err)
	if !ok || e.Code != rallye.CodeInvalid || e.Field != field {
		t.Fatalf("error %v, want invalid on %s", err, field)
	}
}

func TestPlace(t *testing.T) {
	sales, north, squad, south := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	joined := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	o := &orgView{parent: map[uuid.UUID]uuid.UUID{north: sales, squad: north, south: sales}, people: map[uuid.UUID]*person{}}
	rep, mgr, gone, listed := uuid.New(), uuid.New(), uuid.New(), uuid.New()
	o.people[rep] = &person{active: true, rep: true, teams: []membership{{squad, joined}}}
	o.people[mgr] = &person{active: true, teams: []membership{{north, joined}}}
	o.people[gone] = &person{rep: true, teams: []membership{{north, joined}}}
	o.people[listed] = &person{active: true, teams: []membership{{south, joined}}}
	for _, tc := range []struct {
		name  string
		c     Challenge
		user  uuid.UUID
		want  placement
		since bool
	}{
		{"NearestNamedAncestor", Challenge{TeamIDs: []uuid.UUID{sales, north}}, rep, placement{eligible: true, team: north, since: joined}, true},
		{"ParentTeam", Challenge{TeamIDs: []uuid.UUID{sales}}, rep, placement{eligible: true, team: sales, since: joined}, true},
		{"OtherTeam", Challenge{TeamIDs: []uuid.UUID{south}}, rep, placement{}, false},
		{"NotARep", Challenge{TeamIDs: []uuid.UUID{north}}, mgr, placement{}, false},
		{"Deactivated", Challenge{TeamIDs: []uuid.UUID{north}}, gone, placement{}, false},
		{"ListedByName", Challenge{TeamIDs: []uuid.UUID{north}, UserIDs: []uuid.UUID{listed, mgr}}, listed, placement{eligible: true, team: south}, false},
		{"ListedManager", Challenge{TeamIDs: []uuid.UUID{north}, UserIDs: []uuid.UUID{mgr}}, mgr, placement{eligible: true, team: north}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := o.place(&tc.c, tc.user); got != tc.want {
				t.Fatalf("place = %+v, want %+v", got, tc.want)
			}
		})
	}
}
