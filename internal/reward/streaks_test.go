package reward_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// refStreak is the reference: walk the local days from the first activity
// to today; non-working days are skipped; a working day meeting the goal
// extends the run, one missing it (today excepted, it is not over) ends it.
func refStreak(counts map[time.Time]int, min int, weekend map[time.Weekday]bool, holidays map[time.Time]bool, today time.Time) (current, best int) {
	first := today
	for d := range counts {
		if d.Before(first) {
			first = d
		}
	}
	run := 0
	for d := first; !d.After(today); d = d.AddDate(0, 0, 1) {
		if weekend[d.Weekday()] || holidays[d] {
			continue
		}
		if counts[d] >= min {
			run++
			best = max(best, run)
		} else if !d.Equal(today) {
			run = 0
		}
	}
	return run, best
}

func localDay(t time.Time, tz string) time.Time {
	loc, err := time.LoadLocation(tz)
	if err != nil {
		panic(err)
	}
	l := t.In(loc)
	return time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, time.UTC)
}

func (b *bundle) streakRule(t *testing.T, min int, period reward.StreakPeriod, freezeWeeks int) reward.StreakRule {
	t.Helper()
	r, err := b.svc.CreateStreakRule(context.Background(), b.admin, reward.StreakRuleInput{Key: fmt.Sprintf("calls-%s", period),
		Name: reward.Text{FR: "Appels du jour", EN: "Daily calls"}, EventTypes: []string{string(event.CallLogged)}, MinCount: min,
		Period: period, FreezeEveryWeeks: freezeWeeks}, "")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b *bundle) streak(t *testing.T, u org.User) reward.Streak {
	t.Helper()
	ss, err := b.svc.Streaks(context.Background(), principal(u), uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 {
		t.Fatalf("%d streaks", len(ss))
	}
	return ss[0]
}

func calls(rep org.User, at time.Time, n int) []event.Event {
	var out []event.Event
	for i := range n {
		out = append(out, ev(event.CallLogged, rep, at.Add(time.Duration(i)*time.Second)))
	}
	return out
}

// TestStreakBoundaries: the named cases of the issue, each checked against
// the reference on the same activity.
func TestStreakBoundaries(t *testing.T) {
	t.Parallel()
	paris := func(y int, m time.Month, d, h, min int) time.Time {
		loc, _ := time.LoadLocation("Europe/Paris")
		return time.Date(y, m, d, h, min, 0, 0, loc)
	}
	cases := []struct {
		name     string
		tz       string // the rep's time zone ("" for the company's, Paris)
		holidays []time.Time
		calls    []time.Time
		retract  int
		today    time.Time
		current  int
	}{
		{name: "MidnightInParis", calls: []time.Time{paris(2026, 3, 2, 10, 0), paris(2026, 3, 3, 23, 50), paris(2026, 3, 4, 0, 10)},
			retract: -1, today: paris(2026, 3, 4, 12, 0), current: 3},
		{name: "MidnightInNewYork", tz: "America/New_York",
			calls:   []time.Time{paris(2026, 3, 2, 10, 0), paris(2026, 3, 3, 23, 50), paris(2026, 3, 4, 0, 10)},
			retract: -1, today: paris(2026, 3, 4, 12, 0), current: 2},
		{name: "AcrossAWeekend", calls: []time.Time{paris(2026, 3, 5, 10, 0), paris(2026, 3, 6, 10, 0), paris(2026, 3, 9, 10, 0)},
			retract: -1, today: paris(2026, 3, 9, 18, 0), current: 3},
		{name: "WeekendActivityNeitherCountsNorBreaks", calls: []time.Time{paris(2026, 3, 6, 10, 0), paris(2026, 3, 7, 10, 0), paris(2026, 3, 9, 10, 0)},
			retract: -1, today: paris(2026, 3, 9, 18, 0), current: 2},
		{name: "AcrossAHoliday", holidays: []time.Time{time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)},
			calls: []time.Time{paris(2026, 4, 29, 10, 0), paris(2026, 4, 30, 10, 0), paris(2026, 5, 4, 10, 0)}, retract: -1,
			today: paris(2026, 5, 4, 18, 0), current: 3},
		{name: "TodayNotOverYet", calls: []time.Time{paris(2026, 3, 2, 10, 0), paris(2026, 3, 3, 10, 0)}, retract: -1,
			today: paris(2026, 3, 4, 9, 0), current: 2},
		{name: "MissedDayBreaks", calls: []time.Time{paris(2026, 3, 2, 10, 0), paris(2026, 3, 4, 10, 0)}, retract: -1,
			today: paris(2026, 3, 4, 18, 0), current: 1},
		{name: "BrokenByARetraction", calls: []time.Time{paris(2026, 3, 2, 10, 0), paris(2026, 3, 3, 10, 0), paris(2026, 3, 4, 10, 0)},
			retract: 1, today: paris(2026, 3, 4, 18, 0), current: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			b.streakRule(t, 1, reward.StreakDay, 0)
			if len(c.holidays) > 0 {
				var hs []reward.Holiday
				for _, h := range c.holidays {
					hs = append(hs, reward.Holiday{Day: h, Name: "Fête du travail"})
				}
				if _, err := b.svc.SetCalendar(ctx, b.admin, reward.Calendar{Year: c.holidays[0].Year(),
					Weekend: []time.Weekday{time.Saturday, time.Sunday}, Holidays: hs}); err != nil {
					t.Fatal(err)
				}
			}
			rep := b.person(t, "Streaker", org.LocaleFR, c.tz, []rallye.Role{rallye.RoleRep}, b.north)
			var evs []event.Event
			for _, at := range c.calls {
				evs = append(evs, calls(rep, at, 1)...)
			}
			b.clock.Set(c.today)
			b.ingest(t, evs...)
			kept := slices.Clone(c.calls)
			if c.retract >= 0 {
				b.ingest(t, retracted(evs[c.retract]))
				kept = slices.Delete(kept, c.retract, c.retract+1)
			}
			tz := c.tz
			if tz == "" {
				tz = "Europe/Paris"
			}
			counts := map[time.Time]int{}
			for _, at := range kept {
				counts[localDay(at, tz)]++
			}
			hol := map[time.Time]bool{}
			for _, h := range c.holidays {
				hol[h] = true
			}
			wantCur, wantBest := refStreak(counts, 1, map[time.Weekday]bool{time.Saturday: true, time.Sunday: true}, hol, localDay(c.today, tz))
			if wantCur != c.current {
				t.Fatalf("the reference says %d, the case %d: fix the case", wantCur, c.current)
			}
			s := b.streak(t, rep)
			if s.Current != wantCur || s.Best != wantBest {
				t.Fatalf("streak %d (best %d), want %d (best %d)", s.Current, s.Best, wantCur, wantBest)
			}
		})
	}
}

// TestStreaksMatchTheReference: random activity over six weeks for reps in
// two time zones, with holidays and retractions, checked day by day.
func TestStreaksMatchTheReference(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const min = 2
	b.streakRule(t, min, reward.StreakDay, 0)
	holidays := []time.Time{time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 24, 0, 0, 0, 0, time.UTC)}
	var hs []reward.Holiday
	hol := map[time.Time]bool{}
	for _, h := range holidays {
		hs = append(hs, reward.Holiday{Day: h, Name: "Férié"})
		hol[h] = true
	}
	if _, err := b.svc.SetCalendar(ctx, b.admin, reward.Calendar{Year: 2026, Weekend: []time.Weekday{time.Saturday, time.Sunday}, Holidays: hs}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 12))
	tzs := []string{"Europe/Paris", "Asia/Tokyo"}
	reps := []org.User{
		b.person(t, "Paris", org.LocaleFR, "", []rallye.Role{rallye.RoleRep}, b.north),
		b.person(t, "Tokyo", org.LocaleEN, "Asia/Tokyo", []rallye.Role{rallye.RoleRep}, b.south),
	}
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	kept := map[int][]time.Time{}
	for day := range 42 {
		var evs []event.Event
		var ats []time.Time
		for i := range reps {
			n := rng.IntN(4) // 0..3 calls at random hours of the UTC day
			for range n {
				at := start.AddDate(0, 0, day).Add(time.Duration(rng.IntN(24*60)) * time.Minute)
				evs = append(evs, calls(reps[i], at, 1)...)
				ats = append(ats, at)
				kept[i] = append(kept[i], at)
			}
		}
		now := start.AddDate(0, 0, day+1).Add(-time.Minute)
		b.clock.Set(now)
		if len(evs) > 0 {
			b.ingest(t, evs...)
		}
		if len(evs) > 0 && rng.IntN(5) == 0 { // a retraction of one of the day's calls
			k := rng.IntN(len(evs))
			b.ingest(t, retracted(evs[k]))
			for i := range reps {
				if evs[k].RepExternalID == reps[i].ExternalID {
					kept[i] = slices.DeleteFunc(kept[i], func(x time.Time) bool { return x.Equal(ats[k]) })
				}
			}
		}
		for i, rep := range reps {
			counts := map[time.Time]int{}
			for _, at := range kept[i] {
				counts[localDay(at, tzs[i])]++
			}
			wantCur, wantBest := refStreak(counts, min, map[time.Weekday]bool{time.Saturday: true, time.Sunday: true}, hol, localDay(now, tzs[i]))
			s := b.streak(t, rep)
			if s.Current != wantCur || s.Best != wantBest {
				t.Fatalf("day %d, %s: streak %d (best %d), want %d (best %d)", day, tzs[i], s.Current, s.Best, wantCur, wantBest)
			}
		}
	}
}

// TestStreakFreezeAndBadge: a freeze bridges a missed day once per period;
// reaching 5 days awards the streak badge.
func TestStreakFreezeAndBadge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rule := b.streakRule(t, 1, reward.StreakDay, 2)
	rep := b.reps[0]
	loc, _ := time.LoadLocation("Europe/Paris")
	day := func(d int) time.Time { return time.Date(2026, 3, d, 11, 0, 0, 0, loc) }
	// Mon 2, Tue 3, (missed Wed 4), Thu 5, Fri 6, Mon 9.
	b.clock.Set(day(9))
	var evs []event.Event
	for _, d := range []int{2, 3, 5, 6, 9} {
		evs = append(evs, calls(rep, day(d), 1)...)
	}
	b.ingest(t, evs...)
	if s := b.streak(t, rep); s.Current != 3 || s.Best != 3 || !s.FreezeAvailable {
		t.Fatalf("before the freeze: %+v", s)
	}
	_, err := b.svc.UseFreeze(ctx, principal(rep), rule.ID, civil(2026, 3, 7))
	wantCode(t, err, rallye.CodeInvalid) // a Saturday
	s, err := b.svc.UseFreeze(ctx, principal(rep), rule.ID, civil(2026, 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	if s.Current != 5 || s.FreezeAvailable {
		t.Fatalf("after the freeze: current %d, freeze available %v; want 5 and no", s.Current, s.FreezeAvailable)
	}
	if !slices.Contains(b.badgeKeys(t, rep), "streak-5") {
		t.Fatalf("badges %v, want streak-5", b.badgeKeys(t, rep))
	}
	// Once per two weeks.
	_, err = b.svc.UseFreeze(ctx, principal(rep), rule.ID, civil(2026, 3, 3))
	wantCode(t, err, rallye.CodeFailedPrecondition)
}

// TestStreakAtRisk: after the company's hour, a live streak unmet today is
// announced once.
func TestStreakAtRisk(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.streakRule(t, 1, reward.StreakDay, 0)
	rep := b.reps[0]
	loc, _ := time.LoadLocation("Europe/Paris")
	b.clock.Set(time.Date(2026, 3, 4, 10, 0, 0, 0, loc))
	b.ingest(t, append(calls(rep, time.Date(2026, 3, 2, 10, 0, 0, 0, loc), 1), calls(rep, time.Date(2026, 3, 3, 10, 0, 0, 0, loc), 1)...)...)
	n, err := b.svc.CheckStreaksAtRisk(ctx, b.tenant.ID)
	if err != nil || n != 0 {
		t.Fatalf("at 10:00: %d announced, %v; want none before 16:00", n, err)
	}
	b.clock.Set(time.Date(2026, 3, 4, 17, 0, 0, 0, loc))
	for i, want := range []int{1, 0} {
		n, err := b.svc.CheckStreaksAtRisk(ctx, b.tenant.ID)
		if err != nil || n != want {
			t.Fatalf("run %d at 17:00: %d announced, %v; want %d", i, n, err, want)
		}
	}
}

func civil(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
