package challenge

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
)

// Each format ranks with its own semantics, computed from this package's
// state (the leaderboard's boards rank raw points live):
//
//   - leaderboard: points;
//   - race: those who reached the target, by the event time they reached it
//     (ties by arrival), then the others by points;
//   - league: the percentage of one's own target;
//   - duels: won (2), drawn (1), lost (0), then points; the odd one out (and
//     anyone who joined after the pairing) duels the average of the others;
//   - team battle: teams by total or average per member; people by points.
//
// In team mode, teams are ranked too (by the battle's metric, else total)
// and rank rewards go to the members of the teams ranked.
//
// Whatever the format, what still ties follows the challenge's tie rule:
// shared ranks (1, 2, 2, 4), or distinct ranks where the earliest achiever
// of the tied score (by event time, then arrival, of the last change to
// their points; for a team, of its members' latest) ranks first and those
// who never scored come last.

// Standing is one participant's place.
type Standing struct {
	UserID, TeamID uuid.UUID
	Rank           int
	Points         int64
	// Target and Percent: league.
	Target  int64
	Percent float64
	// Reached: race, when the target was reached (zero if not).
	Reached time.Time
}

// TeamStanding is one team's place (team mode).
type TeamStanding struct {
	TeamID  uuid.UUID
	Rank    int
	Points  int64
	Members int
	// Average is points per member.
	Average float64
}

// Duel is a pairing of the duels format. B is uuid.Nil for a bye: A then
// duels BAverage, the average points of the other participants.
type Duel struct {
	A, B               uuid.UUID
	APoints, BPoints   int64
	BAverage           float64
	AOutcome, BOutcome Outcome
}

// Outcome is how a duel stands for one side.
type Outcome string

// Outcomes (leading/trailing while it runs, won/lost once final).
const (
	Leading  Outcome = "leading"
	Trailing Outcome = "trailing"
	Tied     Outcome = "tied"
	Won      Outcome = "won"
	Lost     Outcome = "lost"
	Drawn    Outcome = "drawn"
)

// Standings are a challenge's rankings.
type Standings struct {
	Format Format
	// People, best first.
	People []Standing
	Teams  []TeamStanding
	Duels  []Duel
	// Final: the challenge is final and the ranks will not move.
	Final bool
}

func (st *Standings) teamRank(team uuid.UUID) int {
	for _, t := range st.Teams {
		if t.TeamID == team {
			return t.Rank
		}
	}
	return 0
}

func (st *Standings) teamPoints(team uuid.UUID) int64 {
	for _, t := range st.Teams {
		if t.TeamID == team {
			return t.Points
		}
	}
	return 0
}

// person returns a participant's standing.
func (st *Standings) person(user uuid.UUID) (Standing, bool) {
	for _, r := range st.People {
		if r.UserID == user {
			return r, true
		}
	}
	return Standing{}, false
}

// tied reports whether more than one person holds rank.
func (st *Standings) tied(rank int) bool {
	if rank == 0 {
		return false
	}
	n := 0
	for _, r := range st.People {
		if r.Rank == rank {
			n++
		}
	}
	return n > 1
}

// competitionRanks gives ranks 1, 2, 2, 4 to rows sorted best first, where
// same says two neighbours tie.
func competitionRanks[T any](rows []T, same func(a, b T) bool, set func(*T, int)) {
	rank := 0
	for i := range rows {
		if i == 0 || !same(rows[i-1], rows[i]) {
			rank = i + 1
		}
		set(&rows[i], rank)
	}
}

// standings computes the rankings of c from its enrollments.
func (s *Service) standings(ctx context.Context, tx pgx.Tx, c *Challenge) (*Standings, error) {
	es, err := enrollments(ctx, tx, c.TenantID, []uuid.UUID{c.ID}, nil, false)
	if err != nil {
		return nil, err
	}
	st := &Standings{Format: c.Definition.Format, Final: c.Final()}
	for _, e := range es {
		st.People = append(st.People, Standing{UserID: e.UserID, TeamID: e.TeamID, Points: e.Points, Target: e.Target})
	}
	byPoints := func(a, b Standing) int {
		return cmp.Or(cmp.Compare(b.Points, a.Points), compareIDs(a.UserID, b.UserID))
	}
	samePoints := func(a, b Standing) bool { return a.Points == b.Points }
	setRank := func(r *Standing, n int) { r.Rank = n }
	switch c.Definition.Format {
	case FormatRace:
		if err := s.raceReached(ctx, tx, c, st); err != nil {
			return nil, err
		}
	case FormatLeague:
		for i := range st.People {
			r := &st.People[i]
			if r.Target > 0 {
				r.Percent = float64(r.Points) * 100 / float64(r.Target)
			}
		}
		// Compare a.Points/a.Target with b.Points/b.Target exactly.
		frac := func(a, b Standing) int {
			return cmp.Compare(b.Points*max(a.Target, 1), a.Points*max(b.Target, 1))
		}
		slices.SortFunc(st.People, func(a, b Standing) int { return cmp.Or(frac(a, b), compareIDs(a.UserID, b.UserID)) })
		competitionRanks(st.People, func(a, b Standing) bool { return frac(a, b) == 0 }, setRank)
	case FormatDuels:
		duelRanks(c, es, st)
	default:
		slices.SortFunc(st.People, byPoints)
		competitionRanks(st.People, samePoints, setRank)
	}
	if c.Definition.Mode == ModeTeam {
		teamRanks(c, st)
	}
	if c.Definition.Ties() == TieEarliestAchiever {
		if err := s.earliestAchieverFirst(ctx, tx, c, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// achievement is when a participant's points last changed.
type achievement struct {
	at      time.Time
	arrival int64
}

// before orders achievements earliest first, the never-scored last.
func (a achievement) before(b achievement) int {
	switch az, bz := a.at.IsZero(), b.at.IsZero(); {
	case az && bz:
		return 0
	case az:
		return 1
	case bz:
		return -1
	}
	return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.arrival, b.arrival))
}

// earliestAchieverFirst breaks the ties the format's ranking left: within
// each group of equal rank, the earliest achiever first; then every rank
// is the position.
func (s *Service) earliestAchieverFirst(ctx context.Context, tx pgx.Tx, c *Challenge, st *Standings) error {
	rows, err := tx.Query(ctx, `WITH log AS (
			SELECT user_id, occurred_at AS at, arrival FROM challenge_contributions
				WHERE tenant_id = $1 AND challenge_id = $2 AND points <> 0
			UNION ALL
			SELECT user_id, awarded_at, arrival FROM challenge_awards
				WHERE tenant_id = $1 AND challenge_id = $2 AND revoked_at IS NULL AND points <> 0
		)
		SELECT DISTINCT ON (user_id) user_id, at, arrival FROM log ORDER BY user_id, at DESC, arrival DESC`, c.TenantID, c.ID)
	if err != nil {
		return fmt.Errorf("achievements: %w", err)
	}
	last := map[uuid.UUID]achievement{}
	var u uuid.UUID
	var a achievement
	if _, err := pgx.ForEachRow(rows, []any{&u, &a.at, &a.arrival}, func() error { last[u] = a; return nil }); err != nil {
		return fmt.Errorf("achievements: %w", err)
	}
	slices.SortStableFunc(st.People, func(x, y Standing) int {
		return cmp.Or(cmp.Compare(x.Rank, y.Rank), last[x.UserID].before(last[y.UserID]))
	})
	for i := range st.People {
		st.People[i].Rank = i + 1
	}
	teamLast := map[uuid.UUID]achievement{}
	for _, r := range st.People {
		if a, ok := last[r.UserID]; ok && (teamLast[r.TeamID].at.IsZero() || teamLast[r.TeamID].before(a) < 0) {
			teamLast[r.TeamID] = a
		}
	}
	slices.SortStableFunc(st.Teams, func(x, y TeamStanding) int {
		return cmp.Or(cmp.Compare(x.Rank, y.Rank), teamLast[x.TeamID].before(teamLast[y.TeamID]))
	})
	for i := range st.Teams {
		st.Teams[i].Rank = i + 1
	}
	return nil
}

// raceReached ranks a race: the finishers by the event time they reached
// the target (ties by arrival), then the others by points.
func (s *Service) raceReached(ctx context.Context, tx pgx.Tx, c *Challenge, st *Standings) error {
	rows, err := tx.Query(ctx, `WITH log AS (
			SELECT user_id, occurred_at AS at, arrival, points FROM challenge_contributions
				WHERE tenant_id = $1 AND challenge_id = $2 AND points <> 0
			UNION ALL
			SELECT user_id, awarded_at, arrival, points FROM challenge_awards
				WHERE tenant_id = $1 AND challenge_id = $2 AND revoked_at IS NULL AND points <> 0
		), run AS (
			SELECT user_id, at, arrival,
				sum(points) OVER (PARTITION BY user_id ORDER BY at, arrival ROWS UNBOUNDED PRECEDING) AS total
			FROM log
		)
		SELECT DISTINCT ON (user_id) user_id, at, arrival FROM run WHERE total >= $3 ORDER BY user_id, at, arrival`,
		c.TenantID, c.ID, c.Definition.RaceTarget)
	if err != nil {
		return fmt.Errorf("race: %w", err)
	}
	type reach struct {
		at      time.Time
		arrival int64
	}
	reached := map[uuid.UUID]reach{}
	var u uuid.UUID
	var r reach
	if _, err := pgx.ForEachRow(rows, []any{&u, &r.at, &r.arrival}, func() error { reached[u] = r; return nil }); err != nil {
		return fmt.Errorf("race: %w", err)
	}
	for i := range st.People {
		st.People[i].Reached = reached[st.People[i].UserID].at
	}
	slices.SortFunc(st.People, func(a, b Standing) int {
		ra, oka := reached[a.UserID]
		rb, okb := reached[b.UserID]
		switch {
		case oka && okb:
			return cmp.Or(ra.at.Compare(rb.at), cmp.Compare(ra.arrival, rb.arrival), compareIDs(a.UserID, b.UserID))
		case oka:
			return -1
		case okb:
			return 1
		}
		return cmp.Or(cmp.Compare(b.Points, a.Points), compareIDs(a.UserID, b.UserID))
	})
	competitionRanks(st.People, func(a, b Standing) bool {
		return a.Reached.IsZero() && b.Reached.IsZero() && a.Points == b.Points
	}, func(r *Standing, n int) { r.Rank = n })
	return nil
}

// duelRanks builds the duels from the pairing and ranks people by result,
// then points.
func duelRanks(c *Challenge, es []*enrollment, st *Standings) {
	points := map[uuid.UUID]int64{}
	var total int64
	for _, e := range es {
		points[e.UserID] = e.Points
		total += e.Points
	}
	result := map[uuid.UUID]int{}
	final := c.Final()
	outcome := func(mine, theirs float64) (Outcome, int) {
		switch {
		case mine > theirs && final:
			return Won, 2
		case mine > theirs:
			return Leading, 2
		case mine < theirs && final:
			return Lost, 0
		case mine < theirs:
			return Trailing, 0
		case final:
			return Drawn, 1
		}
		return Tied, 1
	}
	done := map[uuid.UUID]bool{}
	for _, e := range es {
		if done[e.UserID] {
			continue
		}
		done[e.UserID] = true
		d := Duel{A: e.UserID, APoints: e.Points}
		if op := e.OpponentID; op != uuid.Nil && !done[op] {
			if _, ok := points[op]; ok {
				done[op] = true
				d.B, d.BPoints = op, points[op]
			}
		}
		var sa, sb int
		if d.B == uuid.Nil {
			if n := len(es) - 1; n > 0 {
				d.BAverage = float64(total-e.Points) / float64(n)
			}
			d.AOutcome, sa = outcome(float64(d.APoints), d.BAverage)
		} else {
			d.AOutcome, sa = outcome(float64(d.APoints), float64(d.BPoints))
			d.BOutcome, sb = outcome(float64(d.BPoints), float64(d.APoints))
			result[d.B] = sb
		}
		result[d.A] = sa
		st.Duels = append(st.Duels, d)
	}
	slices.SortFunc(st.People, func(a, b Standing) int {
		return cmp.Or(cmp.Compare(result[b.UserID], result[a.UserID]), cmp.Compare(b.Points, a.Points), compareIDs(a.UserID, b.UserID))
	})
	competitionRanks(st.People, func(a, b Standing) bool {
		return result[a.UserID] == result[b.UserID] && a.Points == b.Points
	}, func(r *Standing, n int) { r.Rank = n })
}

// teamRanks aggregates people by team and ranks the teams.
func teamRanks(c *Challenge, st *Standings) {
	byTeam := map[uuid.UUID]*TeamStanding{}
	for _, r := range st.People {
		if r.TeamID == uuid.Nil {
			continue
		}
		t := byTeam[r.TeamID]
		if t == nil {
			t = &TeamStanding{TeamID: r.TeamID}
			byTeam[r.TeamID] = t
		}
		t.Points += r.Points
		t.Members++
	}
	for _, t := range byTeam {
		t.Average = float64(t.Points) / float64(t.Members)
		st.Teams = append(st.Teams, *t)
	}
	metric := func(t TeamStanding) float64 { return float64(t.Points) }
	if c.Definition.TeamMetric == TeamAverage {
		metric = func(t TeamStanding) float64 { return t.Average }
	}
	slices.SortFunc(st.Teams, func(a, b TeamStanding) int {
		return cmp.Or(cmp.Compare(metric(b), metric(a)), compareIDs(a.TeamID, b.TeamID))
	})
	competitionRanks(st.Teams, func(a, b TeamStanding) bool { return metric(a) == metric(b) },
		func(t *TeamStanding, n int) { t.Rank = n })
}

// pairDuels pairs the participants at the start, deterministically and
// balanced: by strength (the points the challenge's scoring rules would have
// given them over the 30 days before the start), ties broken by a hash of
// the challenge and the person; neighbours duel; the weakest of an odd
// number gets a bye (they duel the average of the others).
func (s *Service) pairDuels(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	es, err := enrollments(ctx, tx, c.TenantID, []uuid.UUID{c.ID}, nil, true)
	if err != nil {
		return err
	}
	cc, err := s.compiledFor(c)
	if err != nil {
		return err
	}
	users := make([]uuid.UUID, len(es))
	for i, e := range es {
		users[i] = e.UserID
	}
	strength := map[uuid.UUID]int64{}
	types := make([]event.Type, 0, len(cc.types))
	for t := range cc.types {
		types = append(types, t)
	}
	loc := c.Location()
	err = event.Counted(ctx, tx, c.TenantID, event.CountedQuery{Users: users, Types: types,
		From: c.StartsAt.AddDate(0, 0, -30), To: c.StartsAt}, func(e event.Event) error {
		for i, r := range cc.rules {
			p, ok, err := r.points(e, loc)
			if err != nil {
				s.ruleError(ctx, fmt.Sprintf("challenge %s rule %d (duel pairing)", c.ID, i+1), e, err)
			}
			if ok {
				strength[e.UserID] += p
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	order := pairingOrder(c.ID, users, strength)
	opp := make([]*uuid.UUID, len(order))
	bye := make([]bool, len(order))
	for i := 0; i < len(order); i += 2 {
		if i+1 == len(order) {
			bye[i] = true
			continue
		}
		a, b := order[i], order[i+1]
		opp[i], opp[i+1] = &b, &a
	}
	_, err = tx.Exec(ctx, `UPDATE challenge_enrollments e SET opponent_id = x.o, bye = x.b
		FROM unnest($3::uuid[], $4::uuid[], $5::boolean[]) AS x(u, o, b)
		WHERE e.tenant_id = $1 AND e.challenge_id = $2 AND e.user_id = x.u`, c.TenantID, c.ID, order, opp, bye)
	if err != nil {
		return fmt.Errorf("pair duels: %w", err)
	}
	return nil
}

// pairingOrder sorts people strongest first, ties by a hash of the
// challenge and the person (deterministic, but not by name or id).
func pairingOrder(challenge uuid.UUID, users []uuid.UUID, strength map[uuid.UUID]int64) []uuid.UUID {
	hash := func(u uuid.UUID) uint64 {
		h := fnv.New64a()
		h.Write(challenge[:])
		h.Write(u[:])
		return h.Sum64()
	}
	out := slices.Clone(users)
	slices.SortFunc(out, func(a, b uuid.UUID) int {
		return cmp.Or(cmp.Compare(strength[b], strength[a]), cmp.Compare(hash(a), hash(b)), compareIDs(a, b))
	})
	return out
}
