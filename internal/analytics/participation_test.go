package analytics_test

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/rallye"
)

// refRow is what the reference computes about one person.
type refRow struct {
	p                 *genPerson
	enrolled, active  bool
	points            int64
	missions, offered int
	days              map[time.Time]bool
	firstWeek, beyond bool
	team              uuid.UUID
	teamStart         time.Time
	band              analytics.TenureBand
	last              time.Time
	dayPoints         map[time.Time]int64
	dayMissions       map[time.Time]int
}

func localDay(t time.Time) time.Time {
	l := t.In(paris)
	return time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, time.UTC)
}

// reference computes participation with plain loops over the generated
// data, independently of the service's SQL.
func (w *world) reference(chs []*genChallenge, start, end time.Time, visible func(*genPerson) bool, k int) analytics.Participation {
	rows := map[uuid.UUID]*refRow{}
	var order []*refRow
	for _, c := range chs {
		for _, p := range w.people {
			team, enrolled := c.enrolled[p.id]
			if !w.invitedTo(c, p) && !enrolled {
				continue
			}
			r := rows[p.id]
			if r == nil {
				r = &refRow{p: p, days: map[time.Time]bool{}, dayPoints: map[time.Time]int64{}, dayMissions: map[time.Time]int{}}
				rows[p.id] = r
				order = append(order, r)
			}
			if enrolled {
				r.enrolled = true
				r.offered += len(c.missions)
				if team != uuid.Nil && (r.team == uuid.Nil || c.start.After(r.teamStart)) {
					r.team, r.teamStart = team, c.start
				}
			}
		}
	}
	inChs := map[uuid.UUID]bool{}
	for _, c := range chs {
		inChs[c.id] = true
	}
	weekEnd := start.Add(7 * 24 * time.Hour)
	for _, a := range w.acts {
		r := rows[a.user]
		if !inChs[a.challenge] || r == nil || a.at.Before(start) || !a.at.Before(end) || a.missions == 1 && a.revoked {
			continue
		}
		d := localDay(a.at)
		r.active = true
		r.days[d] = true
		r.points += a.points
		r.dayPoints[d] += a.points
		if a.missions == 1 {
			r.missions++
			r.dayMissions[d]++
		}
		if d.After(r.last) {
			r.last = d
		}
		if end.After(weekEnd) && r.enrolled {
			if a.at.Before(weekEnd) {
				r.firstWeek = true
			} else {
				r.beyond = true
			}
		}
	}
	for _, r := range order {
		if r.team == uuid.Nil && len(r.p.teams) > 0 {
			r.team = r.p.teams[0]
		}
		r.band = analytics.BandOf(r.p.hire, end)
	}
	days := 0
	first := localDay(start)
	if end.After(start) {
		days = int(localDay(end.Add(-time.Nanosecond)).Sub(first).Hours()/24) + 1
	}
	stats := func(rs []*refRow) analytics.Stats {
		var st analytics.Stats
		offered := 0
		var pts []int64
		for _, r := range rs {
			st.Invited++
			if r.enrolled {
				st.OptedIn++
				pts = append(pts, r.points)
			}
			if r.active {
				st.Active++
			}
			st.MissionsCompleted += r.missions
			offered += r.offered
			if r.firstWeek {
				st.ActiveFirstWeek++
				if !r.beyond {
					st.DroppedOff++
				}
			}
		}
		if offered > 0 {
			st.CompletionRate = float64(st.MissionsCompleted) / float64(offered)
		}
		if len(pts) >= k {
			slices.Sort(pts)
			rank := func(q float64) int64 { // nearest rank, by counting
				for _, v := range pts {
					below := 0
					for _, x := range pts {
						if x <= v {
							below++
						}
					}
					if float64(below) >= q*float64(len(pts)) {
						return v
					}
				}
				return pts[len(pts)-1]
			}
			sum := int64(0)
			for _, v := range pts {
				sum += v
			}
			st.Points = &analytics.Points{Min: pts[0], P25: rank(0.25), Median: rank(0.5), P75: rank(0.75), P90: rank(0.9),
				Max: pts[len(pts)-1], Mean: float64(sum) / float64(len(pts))}
		} else {
			st.MissionsCompleted, st.CompletionRate = 0, 0
		}
		st.Daily = make([]analytics.Day, days)
		for i := range days {
			d := first.AddDate(0, 0, i)
			day := analytics.Day{}
			for _, r := range rs {
				if r.days[d] {
					day.Active++
					day.Points += r.dayPoints[d]
					day.MissionsCompleted += r.dayMissions[d]
				}
			}
			if day.Active > 0 && day.Active < k {
				day.Points, day.MissionsCompleted, day.Withheld = 0, 0, true
			}
			st.Daily[i] = day
		}
		return st
	}
	population := len(order)
	small := func(n int) bool { return n < k || population-n > 0 && population-n < k }
	var vis []*refRow
	for _, r := range order {
		if visible(r.p) {
			vis = append(vis, r)
		}
	}
	out := analytics.Participation{Total: stats(vis)}
	if small(len(vis)) {
		out.Total = analytics.Stats{Withheld: true}
	}
	// By team, in name order.
	names := map[uuid.UUID]string{w.north.ID: "Nord", w.south.ID: "Sud", w.southEast.ID: "Sud-Est", w.west.ID: "Ouest"}
	var teams []uuid.UUID
	for _, r := range vis {
		if !slices.Contains(teams, r.team) {
			teams = append(teams, r.team)
		}
	}
	slices.SortFunc(teams, func(a, b uuid.UUID) int {
		if c := strings.Compare(names[a], names[b]); c != 0 {
			return c
		}
		return strings.Compare(a.String(), b.String())
	})
	var sizes []int
	for _, team := range teams {
		var rs []*refRow
		for _, r := range vis {
			if r.team == team {
				rs = append(rs, r)
			}
		}
		st := stats(rs)
		if small(len(rs)) {
			st = analytics.Stats{Withheld: true}
		}
		out.ByTeam = append(out.ByTeam, analytics.TeamStats{TeamID: team, TeamName: names[team], Stats: st})
		sizes = append(sizes, len(rs))
	}
	second := func(get func(int) *analytics.Stats, sizes []int) {
		if out.Total.Withheld {
			return
		}
		var withheld []int
		for i := range sizes {
			if get(i).Withheld {
				withheld = append(withheld, i)
			}
		}
		if len(withheld) != 1 {
			return
		}
		best := -1
		for i, n := range sizes {
			if !get(i).Withheld && (best < 0 || n < sizes[best]) {
				best = i
			}
		}
		if best >= 0 {
			*get(best) = analytics.Stats{Withheld: true}
		}
	}
	second(func(i int) *analytics.Stats { return &out.ByTeam[i].Stats }, sizes)
	sizes = nil
	for _, b := range analytics.Bands {
		var rs []*refRow
		for _, r := range vis {
			if r.band == b {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		st := stats(rs)
		if small(len(rs)) {
			st = analytics.Stats{Withheld: true}
		}
		out.ByTenure = append(out.ByTenure, analytics.TenureStats{Band: b, Stats: st})
		sizes = append(sizes, len(rs))
	}
	second(func(i int) *analytics.Stats { return &out.ByTenure[i].Stats }, sizes)
	for _, r := range vis {
		out.People = append(out.People, analytics.Person{UserID: r.p.id, DisplayName: r.p.name, TeamID: r.team,
			HireDate: r.p.hire, Band: r.band, Invited: true, OptedIn: r.enrolled, Active: r.active,
			MissionsCompleted: r.missions, Points: r.points, ActiveDays: len(r.days), LastActive: r.last})
	}
	slices.SortFunc(out.People, func(a, b analytics.Person) int {
		if c := strings.Compare(a.DisplayName, b.DisplayName); c != 0 {
			return c
		}
		return strings.Compare(a.UserID.String(), b.UserID.String())
	})
	return out
}

// same compares the figures (not the request echo), floats to 1e-9.
func same(t *testing.T, what string, got, want analytics.Participation) {
	t.Helper()
	norm := func(p analytics.Participation) string {
		p.Start, p.End, p.ChallengeIDs, p.MinGroupSize = time.Time{}, time.Time{}, nil, 0
		round := func(s *analytics.Stats) {
			s.CompletionRate = math.Round(s.CompletionRate*1e9) / 1e9
			if s.Points != nil {
				c := *s.Points
				c.Mean = math.Round(c.Mean*1e9) / 1e9
				s.Points = &c
			}
			for i := range s.Daily {
				s.Daily[i].Date = time.Time{}
			}
		}
		round(&p.Total)
		for i := range p.ByTeam {
			round(&p.ByTeam[i].Stats)
		}
		for i := range p.ByTenure {
			round(&p.ByTenure[i].Stats)
		}
		b, _ := json.MarshalIndent(p, "", " ")
		return string(b)
	}
	g, w := norm(got), norm(want)
	if g != w {
		gl, wl := strings.Split(g, "\n"), strings.Split(w, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("%s: first difference at line %d: got %s, want %s\n(got %d lines, want %d)", what, i, gl[i], wl[i], len(gl), len(wl))
			}
		}
		t.Fatalf("%s: got %d lines, want %d", what, len(gl), len(wl))
	}
}

func all(*genPerson) bool { return true }

// TestParticipationMatchesReference: on generated companies (three seeds),
// the service's participation (one challenge, every challenge of a period,
// a team and its sub-teams, a manager's scope) equals a plain-loop
// reference, with the minimum group size at 2 and at the default 5.
func TestParticipationMatchesReference(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3} {
		w := newWorld(t, seed, 60)
		for _, k := range []int{2, 5} {
			if _, err := w.svc.UpdateSettings(ctx, w.admin, analytics.Settings{MinGroupSize: k}); err != nil {
				t.Fatal(err)
			}
			c0 := w.challenges[0]
			got, err := w.svc.Participation(ctx, w.hr, analytics.ParticipationRequest{ChallengeIDs: []uuid.UUID{c0.id}, IncludePeople: true})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Start.Equal(c0.start) || !got.End.Equal(c0.end) || got.MinGroupSize != k {
				t.Fatalf("period %v-%v (k %d), want the challenge's window %v-%v", got.Start, got.End, got.MinGroupSize, c0.start, c0.end)
			}
			if got.Total.Invited == 0 || got.Total.Active == 0 || len(got.Total.Daily) != 29 {
				t.Fatalf("a degenerate world: %+v", got.Total)
			}
			same(t, "one challenge", got, w.reference([]*genChallenge{c0}, c0.start, c0.end, all, k))

			start, end := time.Date(2026, 3, 5, 0, 0, 0, 0, paris), time.Date(2026, 4, 5, 0, 0, 0, 0, paris)
			got, err = w.svc.Participation(ctx, w.admin, analytics.ParticipationRequest{Start: start, End: end, IncludePeople: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.ChallengeIDs) != 3 {
				t.Fatalf("challenges of the period: %v", got.ChallengeIDs)
			}
			same(t, "every challenge of a period", got, w.reference(w.challenges, start, end, all, k))

			inSouth := func(p *genPerson) bool {
				return slices.ContainsFunc(p.teams, func(t uuid.UUID) bool { return t == w.south.ID || t == w.southEast.ID })
			}
			got, err = w.svc.Participation(ctx, w.hr, analytics.ParticipationRequest{Start: start, End: end, TeamID: w.south.ID, IncludePeople: true})
			if err != nil {
				t.Fatal(err)
			}
			same(t, "a team and its sub-teams", got, w.reference(w.challenges, start, end, inSouth, k))

			got, err = w.svc.Participation(ctx, w.manager, analytics.ParticipationRequest{Start: start, End: end, IncludePeople: true})
			if err != nil {
				t.Fatal(err)
			}
			same(t, "a manager's teams", got, w.reference(w.challenges, start, end, inSouth, k))
		}
	}
}

// TestParticipationPrivacy: reps see their own row and no aggregate;
// managers are refused other teams and do not see challenges of other
// teams; small groups and their complements are withheld.
func TestParticipationPrivacy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t, 7, 40)
	c0 := w.challenges[0] // North only
	rep := w.people[0]
	repP := rallye.Principal{TenantID: w.tenant.ID, UserID: rep.id, Roles: []rallye.Role{rallye.RoleRep}}

	t.Run("RepSeesOnlyThemselves", func(t *testing.T) {
		got, err := w.svc.Participation(ctx, repP, analytics.ParticipationRequest{
			Start: c0.start, End: c0.end, IncludePeople: true})
		if err != nil {
			t.Fatal(err)
		}
		if !got.Total.Withheld || len(got.ByTeam) != 0 || len(got.ByTenure) != 0 || len(got.People) > 1 {
			t.Fatalf("a rep got aggregates or others: %+v", got)
		}
		if len(got.People) == 1 && got.People[0].UserID != rep.id {
			t.Fatalf("a rep got someone else's row")
		}
	})
	t.Run("ErrManagerOtherTeam", func(t *testing.T) {
		_, err := w.svc.Participation(ctx, w.manager, analytics.ParticipationRequest{TeamID: w.north.ID})
		if e, ok := rallye.AsError(err); !ok || e.Code != rallye.CodePermissionDenied || e.Field != "team_id" {
			t.Fatalf("got %v, want permission_denied on team_id", err)
		}
	})
	t.Run("ErrManagerChallengeOfOtherTeams", func(t *testing.T) {
		south := false
		for _, p := range w.people {
			if w.invitedTo(c0, p) && slices.ContainsFunc(p.teams, func(t uuid.UUID) bool { return w.under(t, w.south.ID) }) {
				south = true
			}
		}
		_, err := w.svc.Participation(ctx, w.manager, analytics.ParticipationRequest{ChallengeIDs: []uuid.UUID{c0.id}})
		if south {
			if err != nil {
				t.Fatalf("a challenge with people of the manager's teams: %v", err)
			}
			return
		}
		if rallye.ErrorCode(err) != rallye.CodeNotFound {
			t.Fatalf("got %v, want not_found", err)
		}
	})
	t.Run("ErrUnknownChallenge", func(t *testing.T) {
		_, err := w.svc.Participation(ctx, w.hr, analytics.ParticipationRequest{ChallengeIDs: []uuid.UUID{uuid.New()}})
		if e, ok := rallye.AsError(err); !ok || e.Code != rallye.CodeNotFound || e.Field != "challenge_ids" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrPeriod", func(t *testing.T) {
		_, err := w.svc.Participation(ctx, w.hr, analytics.ParticipationRequest{Start: c0.end, End: c0.start})
		if e, ok := rallye.AsError(err); !ok || e.Field != "end_time" {
			t.Fatalf("got %v", err)
		}
		_, err = w.svc.Participation(ctx, w.hr, analytics.ParticipationRequest{Start: c0.start, End: c0.start.AddDate(1, 1, 0)})
		if e, ok := rallye.AsError(err); !ok || e.Field != "end_time" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("SmallGroupsWithheld", func(t *testing.T) {
		got, err := w.svc.Participation(ctx, w.hr, analytics.ParticipationRequest{ChallengeIDs: []uuid.UUID{c0.id}})
		if err != nil {
			t.Fatal(err)
		}
		population := got.Total.Invited
		withheld := 0
		for _, team := range got.ByTeam {
			s := team.Stats
			if s.Withheld {
				withheld++
				if s.Invited != 0 || s.Points != nil || len(s.Daily) != 0 {
					t.Fatalf("a withheld group shows figures: %+v", s)
				}
				continue
			}
			if s.Invited < 5 || population-s.Invited > 0 && population-s.Invited < 5 {
				t.Fatalf("a group of %d out of %d is shown", s.Invited, population)
			}
		}
		if withheld == 1 {
			t.Fatal("exactly one team withheld: the total minus the others gives it away")
		}
	})
}

// TestWithholdingRules: a table of groups against the rules.
func TestWithholdingRules(t *testing.T) {
	t.Parallel()
	cases := []struct {
		size, population, k int
		withheld            bool
	}{
		{4, 100, 5, true},    // too small
		{5, 100, 5, false},   // at the minimum
		{96, 100, 5, true},   // the other 4 would be the difference
		{95, 100, 5, false},  // the other 5 are a group
		{100, 100, 5, false}, // everyone: no complement
		{1, 1, 2, true},
	}
	for _, c := range cases {
		if got := analytics.Withheld(c.size, c.population, c.k); got != c.withheld {
			t.Errorf("group of %d in %d (k=%d): withheld %v, want %v", c.size, c.population, c.k, got, c.withheld)
		}
	}
}
