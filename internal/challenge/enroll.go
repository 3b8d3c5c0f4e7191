package challenge

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/holdout"
	"github.com/rallyehq/rallye/internal/org"
)

// Who takes part (stated in the README):
//
//   - The participants are the reps (people holding the rep role) of the
//     challenge's teams and of their sub-teams, plus the people listed by
//     name (whatever their role). Deactivated people do not join.
//   - Auto-enrolled challenges enroll them at publication. Someone who joins
//     one of those teams later is enrolled at their first event in the
//     window (or when they open the challenge), and their events count from
//     the moment they joined the team (or the start, if later).
//   - Opt-in challenges enroll eligible people when they call
//     JoinChallenge; their events count from that moment (or the start).
//   - Someone who leaves a team stays enrolled with their points.
//   - A participant plays for the challenge's team that contains them: their
//     own team, or the nearest ancestor the challenge names.

type membership struct {
	team  uuid.UUID
	added time.Time
}

type person struct {
	active, rep bool
	teams       []membership
}

// orgView is the part of the organisation enrollment reads.
type orgView struct {
	parent map[uuid.UUID]uuid.UUID
	people map[uuid.UUID]*person
}

// loadOrg reads the team tree and the given people with their memberships.
func loadOrg(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, users []uuid.UUID) (*orgView, error) {
	o := &orgView{parent: map[uuid.UUID]uuid.UUID{}, people: map[uuid.UUID]*person{}}
	rows, err := tx.Query(ctx, `SELECT id, coalesce(parent_id, '00000000-0000-0000-0000-000000000000') FROM teams WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read teams: %w", err)
	}
	var id, parent uuid.UUID
	if _, err := pgx.ForEachRow(rows, []any{&id, &parent}, func() error { o.parent[id] = parent; return nil }); err != nil {
		return nil, fmt.Errorf("read teams: %w", err)
	}
	if len(users) == 0 {
		return o, nil
	}
	rows, err = tx.Query(ctx, `SELECT u.id, u.active, 'rep' = ANY(u.roles), m.team_id, m.added_at
		FROM users u LEFT JOIN team_members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
		WHERE u.tenant_id = $1 AND u.id = ANY($2) ORDER BY u.id, m.team_id`, tenantID, users)
	if err != nil {
		return nil, fmt.Errorf("read people: %w", err)
	}
	var active, rep bool
	var team *uuid.UUID
	var added *time.Time
	_, err = pgx.ForEachRow(rows, []any{&id, &active, &rep, &team, &added}, func() error {
		p := o.people[id]
		if p == nil {
			p = &person{active: active, rep: rep}
			o.people[id] = p
		}
		if team != nil {
			p.teams = append(p.teams, membership{*team, *added})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read people: %w", err)
	}
	return o, nil
}

// placement says whether a person may take part in a challenge, the team
// they play for (uuid.Nil: none) and since when they belong to it (zero for
// people listed by name).
type placement struct {
	eligible bool
	team     uuid.UUID
	since    time.Time
}

// place applies the participation rules to one person.
func (o *orgView) place(c *Challenge, user uuid.UUID) placement {
	p := o.people[user]
	if p == nil || !p.active || holdout.Contains(c.HeldOut, user) {
		return placement{}
	}
	best := placement{}
	bestDepth := -1
	for _, m := range p.teams {
		depth := 0
		for t := m.team; t != uuid.Nil && depth < 64; t, depth = o.parent[t], depth+1 {
			if !slices.Contains(c.TeamIDs, t) {
				continue
			}
			if bestDepth < 0 || depth < bestDepth || depth == bestDepth && t.String() < best.team.String() {
				best, bestDepth = placement{eligible: true, team: t, since: m.added}, depth
			}
			break
		}
	}
	if slices.Contains(c.UserIDs, user) {
		if !best.eligible && len(p.teams) > 0 {
			best.team = p.teams[0].team // their first team, by id
		}
		return placement{eligible: true, team: best.team}
	}
	if !p.rep {
		return placement{}
	}
	return best
}

// candidates lists the people who may take part in c now: the members of
// its teams and sub-teams, and the people listed.
func candidates(ctx context.Context, tx pgx.Tx, c *Challenge) ([]uuid.UUID, error) {
	teams, err := org.TeamAndDescendants(ctx, tx, c.TenantID, c.TeamIDs)
	if err != nil {
		return nil, fmt.Errorf("read teams: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM team_members WHERE tenant_id = $1 AND team_id = ANY($2)
		UNION SELECT unnest($3::uuid[]) ORDER BY 1`, c.TenantID, teams, c.UserIDs)
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// enrollment is a person's participation in a challenge.
type enrollment struct {
	ChallengeID, UserID, TeamID uuid.UUID
	Via                         string
	EnrolledAt, CountsFrom      time.Time
	// Target is the league target in points (0: none).
	Target      int64
	Points      int64
	OpponentID  uuid.UUID
	Bye         bool
	FinalRank   int
	FinalPoints int64

	dirty bool
}

const enrollmentColumns = `challenge_id, user_id, coalesce(team_id, '00000000-0000-0000-0000-000000000000'), via,
	enrolled_at, counts_from, coalesce(target, 0), points, coalesce(opponent_id, '00000000-0000-0000-0000-000000000000'),
	bye, coalesce(final_rank, 0), coalesce(final_points, 0)`

func scanEnrollment(r pgx.Row) (*enrollment, error) {
	e := &enrollment{}
	err := r.Scan(&e.ChallengeID, &e.UserID, &e.TeamID, &e.Via, &e.EnrolledAt, &e.CountsFrom, &e.Target, &e.Points,
		&e.OpponentID, &e.Bye, &e.FinalRank, &e.FinalPoints)
	return e, err
}

// enrollments reads the enrollments of challenges for some people (all of
// them when users is nil), optionally locking them, in key order.
func enrollments(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, challenges, users []uuid.UUID, forUpdate bool) ([]*enrollment, error) {
	q := `SELECT ` + enrollmentColumns + ` FROM challenge_enrollments
		WHERE tenant_id = $1 AND challenge_id = ANY($2) AND ($3::uuid[] IS NULL OR user_id = ANY($3))
		ORDER BY challenge_id, user_id`
	if forUpdate {
		q += ` FOR UPDATE`
	}
	rows, err := tx.Query(ctx, q, tenantID, challenges, users)
	if err != nil {
		return nil, fmt.Errorf("read enrollments: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*enrollment, error) { return scanEnrollment(r) })
	if err != nil {
		return nil, fmt.Errorf("read enrollments: %w", err)
	}
	return out, nil
}

// newcomer is someone to enroll.
type newcomer struct {
	user       uuid.UUID
	team       uuid.UUID
	via        string
	countsFrom time.Time
}

// enroll adds people to a published challenge (those already enrolled are
// left alone) and returns the enrollments created: league targets, personal
// mission targets (uplift over their own baseline) and, when the boards
// exist, their place on them.
func (s *Service) enroll(ctx context.Context, tx pgx.Tx, c *Challenge, people []newcomer) ([]*enrollment, error) {
	if len(people) == 0 {
		return nil, nil
	}
	slices.SortFunc(people, func(a, b newcomer) int { return compareIDs(a.user, b.user) })
	now := s.now()
	var target *int64
	if c.Definition.Format == FormatLeague {
		target = &c.Definition.LeagueTarget
	}
	users := make([]uuid.UUID, len(people))
	teams := make([]*uuid.UUID, len(people))
	vias := make([]string, len(people))
	froms := make([]time.Time, len(people))
	for i, p := range people {
		users[i], teams[i], vias[i], froms[i] = p.user, nullID(p.team), p.via, p.countsFrom
	}
	rows, err := tx.Query(ctx, `INSERT INTO challenge_enrollments (tenant_id, challenge_id, user_id, team_id, via,
			enrolled_at, counts_from, target)
		SELECT $1, $2, u, t, v, $3, f, $4 FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::timestamptz[]) AS x(u, t, v, f)
		ORDER BY u
		ON CONFLICT DO NOTHING
		RETURNING `+enrollmentColumns, c.TenantID, c.ID, now, target, users, teams, vias, froms)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	created, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*enrollment, error) { return scanEnrollment(r) })
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if len(created) == 0 {
		return nil, nil
	}
	if err := s.personalTargets(ctx, tx, c, created); err != nil {
		return nil, err
	}
	if !c.boardsAt.IsZero() && s.boards != nil {
		if err := s.boards.Enroll(ctx, tx, c.TenantID, c.ID, players(c, created)); err != nil {
			return nil, fmt.Errorf("enroll on boards: %w", err)
		}
	}
	return created, nil
}

// players are enrollments as the boards see them: with their team only in
// team mode.
func players(c *Challenge, es []*enrollment) []Player {
	out := make([]Player, len(es))
	for i, e := range es {
		out[i] = Player{UserID: e.UserID}
		if c.Definition.Mode == ModeTeam {
			out[i].TeamID = e.TeamID
		}
	}
	return out
}

// personalTargets sets, for the uplift missions, each newcomer's target:
// their average over the baseline days before the start, raised by the
// uplift (never below the mission's target, which also applies to people
// without history).
func (s *Service) personalTargets(ctx context.Context, tx pgx.Tx, c *Challenge, es []*enrollment) error {
	cc, err := s.compiledFor(c)
	if err != nil {
		return err
	}
	loc := c.Location()
	for i, m := range cc.missions {
		if m.UpliftPercent == 0 {
			continue
		}
		users := make([]uuid.UUID, len(es))
		for j, e := range es {
			users[j] = e.UserID
		}
		type acc struct{ sum, n float64 }
		base := map[uuid.UUID]*acc{}
		types := make([]event.Type, 0, len(m.types))
		for t := range m.types {
			types = append(types, t)
		}
		q := event.CountedQuery{Users: users, Types: types,
			From: c.StartsAt.AddDate(0, 0, -m.BaselineDays), To: c.StartsAt}
		err := event.Counted(ctx, tx, c.TenantID, q, func(e event.Event) error {
			ct, ok, err := m.contribute(e, loc)
			if err != nil {
				s.ruleError(ctx, fmt.Sprintf("challenge %s mission %s (baseline)", c.ID, m.Key), e, err)
			}
			if ok {
				a := base[e.UserID]
				if a == nil {
					a = &acc{}
					base[e.UserID] = a
				}
				a.sum += float64(ct.Value) / valueScale
				a.n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		var subjects []uuid.UUID
		var targets []float64
		for _, e := range es {
			t := m.Target
			if a := base[e.UserID]; a != nil && a.n > 0 {
				t = max(t, math.Round(a.sum/a.n*(1+m.UpliftPercent/100)*100)/100) // to the cent
			}
			subjects, targets = append(subjects, e.UserID), append(targets, t)
		}
		_, err = tx.Exec(ctx, `INSERT INTO challenge_progress (tenant_id, challenge_id, mission_id, subject_id, target)
			SELECT $1, $2, $3, s, t FROM unnest($4::uuid[], $5::float8[]) AS x(s, t) ORDER BY s
			ON CONFLICT (tenant_id, challenge_id, mission_id, subject_id) DO UPDATE SET target = excluded.target`,
			c.TenantID, c.ID, c.Missions[i].ID, subjects, targets)
		if err != nil {
			return fmt.Errorf("personal targets: %w", err)
		}
	}
	return nil
}

// enrollEligible enrolls everyone eligible now (auto-enrolled challenges):
// at publication, at the start and when the scope grows. Their events count
// from "from", or from when they joined their team if that is later.
func (s *Service) enrollEligible(ctx context.Context, tx pgx.Tx, c *Challenge, from time.Time) error {
	if c.Definition.Enrollment != EnrollAuto {
		return nil
	}
	users, err := candidates(ctx, tx, c)
	if err != nil {
		return err
	}
	o, err := loadOrg(ctx, tx, c.TenantID, users)
	if err != nil {
		return err
	}
	var people []newcomer
	for _, u := range users {
		pl := o.place(c, u)
		if !pl.eligible {
			continue
		}
		people = append(people, newcomer{user: u, team: pl.team, via: "auto", countsFrom: later(from, c.memberSince(pl.since))})
	}
	_, err = s.enroll(ctx, tx, c, people)
	return err
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func compareIDs(a, b uuid.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// ensureBoards creates the challenge's boards and puts its participants on
// them, once (at the start, or at the first points if events arrive before
// the start job ran).
func (s *Service) ensureBoards(ctx context.Context, tx pgx.Tx, c *Challenge) error {
	if !c.boardsAt.IsZero() || s.boards == nil {
		return nil
	}
	err := s.boards.CreateChallengeBoards(ctx, tx, c.TenantID, BoardSpec{
		ChallengeID: c.ID, Team: c.Definition.Mode == ModeTeam, SharedRanks: c.Definition.Ties() == TieSharedRank, StartsAt: c.StartsAt, EndsAt: c.EndsAt,
	})
	if err != nil {
		return fmt.Errorf("create boards: %w", err)
	}
	es, err := enrollments(ctx, tx, c.TenantID, []uuid.UUID{c.ID}, nil, false)
	if err != nil {
		return err
	}
	for chunk := range slices.Chunk(es, 1000) {
		if err := s.boards.Enroll(ctx, tx, c.TenantID, c.ID, players(c, chunk)); err != nil {
			return fmt.Errorf("enroll on boards: %w", err)
		}
	}
	now := s.now()
	if _, err := tx.Exec(ctx, `UPDATE challenges SET boards_at = $3 WHERE tenant_id = $1 AND id = $2`, c.TenantID, c.ID, now); err != nil {
		return fmt.Errorf("mark boards: %w", err)
	}
	c.boardsAt = now
	return nil
}
