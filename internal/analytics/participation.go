package analytics

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// What participation counts (stated in the README):
//
//   - invited: the people the challenge is for: the active reps of its teams
//     and sub-teams, the people it names, and anyone enrolled (people held
//     out of a challenge are not invited: they are told nothing);
//   - opted in: enrolled (by opting in, or automatically);
//   - active: any scored event, mission completion or manual submission in
//     the period;
//   - points: those of scored events plus mission completions in the
//     period; missions completed: completions in the period not revoked;
//   - completion rate: missions completed over missions offered (each
//     enrolled person times the missions of their challenge);
//   - drop-off: enrolled people active in the first 7 days of the period and
//     never after (only for periods longer than 7 days);
//   - a person's team is the team they play for in the latest of the
//     challenges they are enrolled in, else their first team; the team
//     filter and a manager's scope use their memberships.

// MaxPeriod is the longest period one call covers.
const MaxPeriod = 366 * 24 * time.Hour

// DefaultPeriod is the period read when neither challenges nor dates are
// given: the last 90 days.
const DefaultPeriod = 90 * 24 * time.Hour

// FirstWeek is the start of a period in which activity counts for drop-off.
const FirstWeek = 7 * 24 * time.Hour

// TenureBand groups people by time since their hire date at the end of the
// period.
type TenureBand int

// Tenure bands, in the order of the API's enum.
const (
	BandUnknown TenureBand = iota + 1
	BandUnder3Months
	Band3To12Months
	Band1To3Years
	BandOver3Years
)

// Bands lists the tenure bands in order.
var Bands = []TenureBand{BandUnknown, BandUnder3Months, Band3To12Months, Band1To3Years, BandOver3Years}

// BandOf returns the tenure band of someone hired on hire (zero: unknown)
// at the instant at.
func BandOf(hire, at time.Time) TenureBand {
	if hire.IsZero() {
		return BandUnknown
	}
	days := int(at.Sub(hire).Hours() / 24)
	switch {
	case days < 90:
		return BandUnder3Months
	case days < 365:
		return Band3To12Months
	case days < 3*365:
		return Band1To3Years
	}
	return BandOver3Years
}

// ParticipationRequest selects what GetParticipation reads.
type ParticipationRequest struct {
	// ChallengeIDs: none means every started challenge overlapping the
	// period.
	ChallengeIDs []uuid.UUID
	// TeamID: only people of this team or its sub-teams (uuid.Nil: all).
	TeamID uuid.UUID
	// Start and End: zero means the default (see MaxPeriod, DefaultPeriod).
	Start, End    time.Time
	IncludePeople bool
}

// Points is a distribution of points over people (nearest-rank quantiles).
type Points struct {
	Min, P25, Median, P75, P90, Max int64
	Mean                            float64
}

// Day is one day of a daily series.
type Day struct {
	Date              time.Time // midnight UTC of the company's local date
	Active            int
	Points            int64
	MissionsCompleted int
	Withheld          bool
}

// Stats are the figures of a group of people.
type Stats struct {
	Invited, OptedIn, Active, MissionsCompleted int
	CompletionRate                              float64
	// Points is nil when withheld (fewer enrolled people than the minimum).
	Points                      *Points
	Daily                       []Day
	ActiveFirstWeek, DroppedOff int
	Withheld                    bool
}

// TeamStats are a team's figures.
type TeamStats struct {
	TeamID   uuid.UUID // uuid.Nil: people of no team
	TeamName string
	Stats    Stats
}

// TenureStats are a tenure band's figures.
type TenureStats struct {
	Band  TenureBand
	Stats Stats
}

// Person is one person's figures.
type Person struct {
	UserID                   uuid.UUID
	DisplayName              string
	TeamID                   uuid.UUID
	HireDate                 time.Time
	Band                     TenureBand
	Invited, OptedIn, Active bool
	MissionsCompleted        int
	Points                   int64
	ActiveDays               int
	LastActive               time.Time // local date; zero if never active
}

// Participation is the answer of GetParticipation.
type Participation struct {
	Start, End   time.Time
	ChallengeIDs []uuid.UUID
	MinGroupSize int
	Total        Stats
	ByTeam       []TeamStats
	ByTenure     []TenureStats
	People       []Person
}

// record is one person of the population with what the queries found.
type record struct {
	Person
	memberships       []uuid.UUID
	teamStart         time.Time // start of the challenge that gave TeamID
	offered           int
	firstWeek, beyond bool
	cell              int
}

// cellKey is a (team, band) pair: every person is in exactly one, so
// distinct counts of the cells add up to those of any union of cells.
type cellKey struct {
	team uuid.UUID
	band TenureBand
}

type dayAgg struct {
	active, missions int
	points           int64
}

// scope is who the caller may see.
type scope struct {
	all     bool        // HR, admins
	managed []uuid.UUID // managers: their teams and sub-teams
	self    uuid.UUID   // reps (and anyone else): themselves
}

func (sc scope) sees(r *record) bool {
	if sc.all {
		return true
	}
	for _, t := range r.memberships {
		if slices.Contains(sc.managed, t) {
			return true
		}
	}
	return false
}

func callerScope(ctx context.Context, tx pgx.Tx, p rallye.Principal) (scope, error) {
	if p.Has(rallye.RoleAdmin, rallye.RoleHR) {
		return scope{all: true}, nil
	}
	sc := scope{self: p.UserID}
	if p.Has(rallye.RoleManager) && p.IsPerson() {
		managed, err := org.ManagedTeams(ctx, tx, p.TenantID, p.UserID)
		if err != nil {
			return sc, fmt.Errorf("managed teams: %w", err)
		}
		sc.managed = managed
	}
	return sc, nil
}

type challengeRow struct {
	id           uuid.UUID
	teams, users []uuid.UUID
	starts, ends *time.Time
	missions     int
}

// Participation returns participation over a period, under the privacy
// rules of the package documentation.
func (s *Service) Participation(ctx context.Context, p rallye.Principal, req ParticipationRequest) (Participation, error) {
	var out Participation
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = s.participation(ctx, tx, p, req)
		return err
	})
	return out, err
}

func (s *Service) participation(ctx context.Context, tx pgx.Tx, p rallye.Principal, req ParticipationRequest) (Participation, error) {
	settings, err := readSettings(ctx, tx, p.TenantID)
	if err != nil {
		return Participation{}, err
	}
	sc, err := callerScope(ctx, tx, p)
	if err != nil {
		return Participation{}, err
	}
	var filter []uuid.UUID
	if req.TeamID != uuid.Nil {
		if filter, err = teamFilter(ctx, tx, p.TenantID, req.TeamID, sc); err != nil {
			return Participation{}, err
		}
	}
	loc, err := companyLocation(ctx, tx, p.TenantID)
	if err != nil {
		return Participation{}, err
	}
	pop, err := s.loadPopulation(ctx, tx, p.TenantID, req.ChallengeIDs, req.Start, req.End, sc)
	if err != nil {
		return Participation{}, err
	}
	out := Participation{Start: pop.start, End: pop.end, ChallengeIDs: pop.challengeIDs, MinGroupSize: settings.MinGroupSize}

	// The visible, filtered people, each in a (team, band) cell.
	var visible []*record
	cells := map[cellKey]int{}
	var cellKeys []cellKey
	for _, r := range pop.records {
		if !sc.all && sc.managed == nil {
			if r.UserID != sc.self {
				continue
			}
		} else if !sc.sees(r) {
			continue
		}
		if filter != nil && !slices.ContainsFunc(r.memberships, func(t uuid.UUID) bool { return slices.Contains(filter, t) }) {
			continue
		}
		k := cellKey{r.TeamID, r.Band}
		c, ok := cells[k]
		if !ok {
			c = len(cellKeys)
			cells[k] = c
			cellKeys = append(cellKeys, k)
		}
		r.cell = c
		visible = append(visible, r)
	}
	if err := pop.activity(ctx, tx, p.TenantID, loc, visible); err != nil {
		return Participation{}, err
	}
	daily, err := pop.dailyCells(ctx, tx, p.TenantID, loc, visible, len(cellKeys))
	if err != nil {
		return Participation{}, err
	}

	if !sc.all && sc.managed == nil {
		// A rep: their own row, no aggregate.
		out.Total = Stats{Withheld: true}
		for _, r := range visible {
			out.People = append(out.People, r.Person)
		}
		return out, nil
	}

	k := settings.MinGroupSize
	population := len(pop.records)
	all := make([]int, len(cellKeys))
	for i := range all {
		all[i] = i
	}
	out.Total = aggregate(visible, all, daily, pop.days, k)
	withhold(&out.Total, len(visible), population, k)

	teamNames, err := teamNames(ctx, tx, p.TenantID)
	if err != nil {
		return Participation{}, err
	}
	byTeam := map[uuid.UUID][]*record{}
	byBand := map[TenureBand][]*record{}
	for _, r := range visible {
		byTeam[r.TeamID] = append(byTeam[r.TeamID], r)
		byBand[r.Band] = append(byBand[r.Band], r)
	}
	cellsWhere := func(keep func(cellKey) bool) []int {
		var out []int
		for i, ck := range cellKeys {
			if keep(ck) {
				out = append(out, i)
			}
		}
		return out
	}
	var teamSizes []int
	for team, rs := range byTeam {
		st := aggregate(rs, cellsWhere(func(ck cellKey) bool { return ck.team == team }), daily, pop.days, k)
		out.ByTeam = append(out.ByTeam, TeamStats{TeamID: team, TeamName: teamNames[team], Stats: st})
	}
	slices.SortFunc(out.ByTeam, func(a, b TeamStats) int {
		return cmp.Or(cmp.Compare(a.TeamName, b.TeamName), cmp.Compare(a.TeamID.String(), b.TeamID.String()))
	})
	for i := range out.ByTeam {
		teamSizes = append(teamSizes, len(byTeam[out.ByTeam[i].TeamID]))
		withhold(&out.ByTeam[i].Stats, teamSizes[i], population, k)
	}
	secondary(func(i int) *Stats { return &out.ByTeam[i].Stats }, teamSizes, out.Total.Withheld)
	var bandSizes []int
	for _, b := range Bands {
		rs := byBand[b]
		if len(rs) == 0 {
			continue
		}
		st := aggregate(rs, cellsWhere(func(ck cellKey) bool { return ck.band == b }), daily, pop.days, k)
		withhold(&st, len(rs), population, k)
		out.ByTenure = append(out.ByTenure, TenureStats{Band: b, Stats: st})
		bandSizes = append(bandSizes, len(rs))
	}
	secondary(func(i int) *Stats { return &out.ByTenure[i].Stats }, bandSizes, out.Total.Withheld)

	if req.IncludePeople {
		for _, r := range visible {
			out.People = append(out.People, r.Person)
		}
		slices.SortFunc(out.People, func(a, b Person) int {
			return cmp.Or(cmp.Compare(a.DisplayName, b.DisplayName), cmp.Compare(a.UserID.String(), b.UserID.String()))
		})
	}
	return out, nil
}

// aggregate computes the figures of rs, whose daily activity is that of
// the given cells.
func aggregate(rs []*record, cells []int, daily []map[int]dayAgg, days int, k int) Stats {
	var st Stats
	var offered int
	var pts []int64
	for _, r := range rs {
		if r.Invited {
			st.Invited++
		}
		if r.OptedIn {
			st.OptedIn++
			pts = append(pts, r.Points)
		}
		if r.Active {
			st.Active++
		}
		st.MissionsCompleted += r.MissionsCompleted
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
		st.Points = distribution(pts)
	} else {
		// Figures over the enrolled alone: withheld when they are few.
		st.MissionsCompleted, st.CompletionRate = 0, 0
	}
	st.Daily = make([]Day, days)
	for d := range days {
		var agg dayAgg
		for _, c := range cells {
			a := daily[c][d]
			agg.active += a.active
			agg.points += a.points
			agg.missions += a.missions
		}
		st.Daily[d] = Day{Active: agg.active, Points: agg.points, MissionsCompleted: agg.missions}
		if agg.active > 0 && agg.active < k {
			st.Daily[d].Points, st.Daily[d].MissionsCompleted, st.Daily[d].Withheld = 0, 0, true
		}
	}
	return st
}

// Withheld reports whether a group of size people out of population is
// withheld under a minimum group size of k: it is smaller than k, or the
// rest of the population is (1 to k-1 people), since the population's
// figure minus the group's would show them.
func Withheld(size, population, k int) bool {
	rest := population - size
	return size < k || rest > 0 && rest < k
}

// withhold blanks st when its group must be withheld.
func withhold(st *Stats, size, population, k int) {
	if Withheld(size, population, k) {
		*st = Stats{Withheld: true}
	}
}

// secondary withholds the smallest other group of a partition in which
// exactly one group is withheld while the total is shown: otherwise the
// total minus the shown groups would give the withheld one away.
func secondary(stats func(int) *Stats, sizes []int, totalWithheld bool) {
	if totalWithheld {
		return
	}
	withheld, smallest := 0, -1
	for i, n := range sizes {
		if stats(i).Withheld {
			withheld++
			continue
		}
		if smallest < 0 || n < sizes[smallest] {
			smallest = i
		}
	}
	if withheld == 1 && smallest >= 0 {
		*stats(smallest) = Stats{Withheld: true}
	}
}

// distribution returns nearest-rank quantiles of pts (not empty).
func distribution(pts []int64) *Points {
	s := slices.Clone(pts)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	return &Points{
		Min: s[0], P25: quantile(s, 0.25), Median: quantile(s, 0.5), P75: quantile(s, 0.75), P90: quantile(s, 0.9),
		Max: s[len(s)-1], Mean: sum / float64(len(s)),
	}
}

// quantile is the nearest-rank quantile of sorted values: the smallest
// value with at least q of the values at or below it.
func quantile(sorted []int64, q float64) int64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
