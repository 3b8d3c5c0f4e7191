package analytics

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// population is everyone invited to the challenges of a request, over its
// period.
type population struct {
	challengeIDs []uuid.UUID
	start, end   time.Time
	firstDay     time.Time // local date of start, midnight UTC
	days         int
	records      []*record
	byID         map[uuid.UUID]*record
	invitedTo    map[uuid.UUID][]*record
}

// loadPopulation resolves the challenges and the period and reads who was
// invited, enrolled, their team, band and missions offered.
func (s *Service) loadPopulation(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, ids []uuid.UUID,
	start, end time.Time, sc scope) (*population, error) {
	now := s.now()
	named := len(ids) > 0
	if !named {
		if end.IsZero() {
			end = now
		}
		if start.IsZero() {
			start = end.Add(-DefaultPeriod)
		}
	}
	if !start.IsZero() && !end.IsZero() {
		if err := checkPeriod(start, end); err != nil {
			return nil, err
		}
	}
	var chs []challengeRow
	rows, err := tx.Query(ctx, `SELECT c.id, c.team_ids, c.user_ids, c.starts_at, c.ends_at,
			(SELECT count(*) FROM challenge_missions m WHERE m.tenant_id = c.tenant_id AND m.challenge_id = c.id)
		FROM challenges c
		WHERE c.tenant_id = $1 AND CASE WHEN $2 THEN c.id = ANY($3)
			ELSE c.state IN ('scheduled', 'active', 'ended') AND c.starts_at < $5 AND c.ends_at > $4 END
		ORDER BY c.id`, tenantID, named, ids, start, end)
	if err != nil {
		return nil, fmt.Errorf("read challenges: %w", err)
	}
	for rows.Next() {
		var c challengeRow
		if err := rows.Scan(&c.id, &c.teams, &c.users, &c.starts, &c.ends, &c.missions); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read challenges: %w", err)
		}
		chs = append(chs, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read challenges: %w", err)
	}
	if named && len(chs) != len(ids) {
		return nil, &rallye.Error{Code: rallye.CodeNotFound, Field: "challenge_ids", Message: "a challenge does not exist"}
	}
	if named && (start.IsZero() || end.IsZero()) {
		// The challenges' window, capped at now.
		var first, last time.Time
		for _, c := range chs {
			if c.starts != nil && (first.IsZero() || c.starts.Before(first)) {
				first = *c.starts
			}
			if c.ends != nil && c.ends.After(last) {
				last = *c.ends
			}
		}
		if last.After(now) {
			last = now
		}
		if start.IsZero() {
			start = first
		}
		if end.IsZero() {
			end = last
		}
		if start.IsZero() || end.Before(start) {
			end = start // drafts, or not started yet: an empty period
		}
		if end.Sub(start) > MaxPeriod {
			start = end.Add(-MaxPeriod)
		}
	}
	pop := &population{start: start, end: end, byID: map[uuid.UUID]*record{}, invitedTo: map[uuid.UUID][]*record{}}
	for _, c := range chs {
		pop.challengeIDs = append(pop.challengeIDs, c.id)
	}
	if err := pop.loadInvited(ctx, tx, tenantID, chs); err != nil {
		return nil, err
	}
	if named && !sc.all {
		// A challenge the caller does not see is NotFound: managers see
		// those covering one of their teams or people, reps those they are
		// invited to.
		for _, c := range chs {
			if !pop.visibleTo(c, sc) {
				return nil, &rallye.Error{Code: rallye.CodeNotFound, Field: "challenge_ids", Message: "a challenge does not exist"}
			}
		}
	}
	return pop, nil
}

func checkPeriod(start, end time.Time) error {
	if !end.After(start) {
		return rallye.Invalid("end_time", "must be after start_time")
	}
	if end.Sub(start) > MaxPeriod {
		return rallye.Invalid("end_time", "must be at most 366 days after start_time")
	}
	return nil
}

func (pop *population) visibleTo(c challengeRow, sc scope) bool {
	if sc.managed != nil && slices.ContainsFunc(c.teams, func(t uuid.UUID) bool { return slices.Contains(sc.managed, t) }) {
		return true
	}
	for _, r := range pop.invitedTo[c.id] {
		if r.UserID == sc.self || sc.managed != nil && sc.sees(r) {
			return true
		}
	}
	return false
}

// loadInvited reads who each challenge invited and enrolled, then the
// people themselves.
func (pop *population) loadInvited(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, chs []challengeRow) error {
	if len(chs) == 0 {
		return nil
	}
	missions := map[uuid.UUID]int{}
	for _, c := range chs {
		missions[c.id] = c.missions
	}
	rows, err := tx.Query(ctx, `WITH RECURSIVE ch AS (
			SELECT id, team_ids, user_ids, holdout_user_ids, coalesce(starts_at, created_at) AS starts_at FROM challenges
			WHERE tenant_id = $1 AND id = ANY($2)),
		tree(challenge_id, team_id) AS (
			SELECT ch.id, t FROM ch CROSS JOIN LATERAL unnest(ch.team_ids) AS t
			UNION
			SELECT tree.challenge_id, tm.id FROM tree JOIN teams tm ON tm.tenant_id = $1 AND tm.parent_id = tree.team_id),
		inv AS (
			SELECT tree.challenge_id, m.user_id FROM tree
				JOIN team_members m ON m.tenant_id = $1 AND m.team_id = tree.team_id
				JOIN ch ON ch.id = tree.challenge_id
				JOIN users u ON u.tenant_id = $1 AND u.id = m.user_id AND u.active AND 'rep' = ANY(u.roles)
			WHERE NOT (m.user_id = ANY(ch.holdout_user_ids))
			UNION
			SELECT ch.id, x FROM ch CROSS JOIN LATERAL unnest(ch.user_ids) AS x
				JOIN users u ON u.tenant_id = $1 AND u.id = x AND u.active
			WHERE NOT (x = ANY(ch.holdout_user_ids))
			UNION
			SELECT e.challenge_id, e.user_id FROM challenge_enrollments e
			WHERE e.tenant_id = $1 AND e.challenge_id = ANY($2))
		SELECT inv.challenge_id, inv.user_id, e.user_id IS NOT NULL, e.team_id, ch.starts_at
		FROM inv JOIN ch ON ch.id = inv.challenge_id
		LEFT JOIN challenge_enrollments e ON e.tenant_id = $1 AND e.challenge_id = inv.challenge_id AND e.user_id = inv.user_id`,
		tenantID, pop.challengeIDs)
	if err != nil {
		return fmt.Errorf("read invited: %w", err)
	}
	var challengeID, userID uuid.UUID
	var enrolled bool
	var team *uuid.UUID
	var starts time.Time
	_, err = pgx.ForEachRow(rows, []any{&challengeID, &userID, &enrolled, &team, &starts}, func() error {
		r := pop.byID[userID]
		if r == nil {
			r = &record{Person: Person{UserID: userID, Invited: true}}
			pop.byID[userID] = r
			pop.records = append(pop.records, r)
		}
		pop.invitedTo[challengeID] = append(pop.invitedTo[challengeID], r)
		if enrolled {
			r.OptedIn = true
			r.offered += missions[challengeID]
			if team != nil && (r.TeamID == uuid.Nil || starts.After(r.teamStart)) {
				r.TeamID, r.teamStart = *team, starts
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read invited: %w", err)
	}
	ids := make([]uuid.UUID, len(pop.records))
	for i, r := range pop.records {
		ids[i] = r.UserID
	}
	rows, err = tx.Query(ctx, `SELECT u.id, u.display_name, u.hire_date,
			coalesce(array_agg(m.team_id ORDER BY m.team_id) FILTER (WHERE m.team_id IS NOT NULL), '{}')
		FROM users u LEFT JOIN team_members m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
		WHERE u.tenant_id = $1 AND u.id = ANY($2) GROUP BY u.tenant_id, u.id`, tenantID, ids)
	if err != nil {
		return fmt.Errorf("read people: %w", err)
	}
	var name string
	var hired *time.Time
	var teams []uuid.UUID
	_, err = pgx.ForEachRow(rows, []any{&userID, &name, &hired, &teams}, func() error {
		r := pop.byID[userID]
		r.DisplayName = name
		r.memberships = slices.Clone(teams)
		if hired != nil {
			r.HireDate = time.Date(hired.Year(), hired.Month(), hired.Day(), 0, 0, 0, 0, time.UTC)
		}
		r.Band = BandOf(r.HireDate, pop.end)
		if r.TeamID == uuid.Nil && len(teams) > 0 {
			r.TeamID = teams[0]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read people: %w", err)
	}
	return nil
}

// activitySQL is every sign of activity of the challenges $2 between $3
// (included) and $4 (excluded): scored events, mission completions not
// revoked, manual submissions.
const activitySQL = `act AS (
		SELECT user_id, occurred_at AS at, points, 0 AS missions FROM challenge_contributions
		WHERE tenant_id = $1 AND challenge_id = ANY($2) AND occurred_at >= $3 AND occurred_at < $4
		UNION ALL
		SELECT user_id, awarded_at, points, 1 FROM challenge_awards
		WHERE tenant_id = $1 AND challenge_id = ANY($2) AND revoked_at IS NULL AND awarded_at >= $3 AND awarded_at < $4
		UNION ALL
		SELECT user_id, submitted_at, 0, 0 FROM mission_submissions
		WHERE tenant_id = $1 AND challenge_id = ANY($2) AND submitted_at >= $3 AND submitted_at < $4)`

// activity fills each person's period figures.
func (pop *population) activity(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, loc *time.Location, rs []*record) error {
	first := time.Date(pop.start.In(loc).Year(), pop.start.In(loc).Month(), pop.start.In(loc).Day(), 0, 0, 0, 0, time.UTC)
	pop.firstDay = first
	if pop.end.After(pop.start) {
		last := pop.end.Add(-time.Nanosecond).In(loc)
		lastDay := time.Date(last.Year(), last.Month(), last.Day(), 0, 0, 0, 0, time.UTC)
		pop.days = int(lastDay.Sub(first).Hours()/24) + 1
	}
	if len(rs) == 0 || pop.days == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(rs))
	for i, r := range rs {
		ids[i] = r.UserID
	}
	// Drop-off needs a first week and something after it.
	weekEnd := pop.start.Add(FirstWeek)
	dropOff := pop.end.After(weekEnd)
	rows, err := tx.Query(ctx, `WITH `+activitySQL+`
		SELECT user_id, sum(points)::bigint, sum(missions)::int, count(DISTINCT (at AT TIME ZONE $5)::date)::int,
			bool_or(at < $6), bool_or(at >= $6), (max(at) AT TIME ZONE $5)::date
		FROM act WHERE user_id = ANY($7) GROUP BY user_id`,
		tenantID, pop.challengeIDs, pop.start, pop.end, loc.String(), weekEnd, ids)
	if err != nil {
		return fmt.Errorf("read activity: %w", err)
	}
	var userID uuid.UUID
	var points int64
	var missions, days int
	var firstWeek, beyond bool
	var lastDay time.Time
	_, err = pgx.ForEachRow(rows, []any{&userID, &points, &missions, &days, &firstWeek, &beyond, &lastDay}, func() error {
		r := pop.byID[userID]
		r.Active = true
		r.Points, r.MissionsCompleted, r.ActiveDays = points, missions, days
		r.LastActive = time.Date(lastDay.Year(), lastDay.Month(), lastDay.Day(), 0, 0, 0, 0, time.UTC)
		if dropOff && r.OptedIn {
			r.firstWeek, r.beyond = firstWeek, beyond
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read activity: %w", err)
	}
	return nil
}

// dailyCells returns, per cell, the activity of each day of the period.
func (pop *population) dailyCells(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, loc *time.Location, rs []*record, cells int) ([]map[int]dayAgg, error) {
	out := make([]map[int]dayAgg, cells)
	for i := range out {
		out[i] = map[int]dayAgg{}
	}
	if len(rs) == 0 || pop.days == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, len(rs))
	cellOf := make([]int32, len(rs))
	for i, r := range rs {
		ids[i], cellOf[i] = r.UserID, int32(r.cell)
	}
	rows, err := tx.Query(ctx, `WITH `+activitySQL+`,
		who AS (SELECT * FROM unnest($6::uuid[], $7::int[]) AS w(user_id, cell))
		SELECT w.cell, (a.at AT TIME ZONE $5)::date, count(DISTINCT a.user_id)::int, sum(a.points)::bigint, sum(a.missions)::int
		FROM act a JOIN who w ON w.user_id = a.user_id GROUP BY 1, 2`,
		tenantID, pop.challengeIDs, pop.start, pop.end, loc.String(), ids, cellOf)
	if err != nil {
		return nil, fmt.Errorf("read daily activity: %w", err)
	}
	var cell int
	var day time.Time
	var agg dayAgg
	_, err = pgx.ForEachRow(rows, []any{&cell, &day, &agg.active, &agg.points, &agg.missions}, func() error {
		d := time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, time.UTC)
		out[cell][int(d.Sub(pop.firstDay).Hours()/24)] = agg
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read daily activity: %w", err)
	}
	return out, nil
}

// teamFilter returns the team and its sub-teams, checking that a manager
// asks about their own.
func teamFilter(ctx context.Context, tx pgx.Tx, tenantID, team uuid.UUID, sc scope) ([]uuid.UUID, error) {
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2)`, tenantID, team).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read team: %w", err)
	}
	if !exists {
		return nil, &rallye.Error{Code: rallye.CodeNotFound, Field: "team_id", Message: "the team does not exist"}
	}
	if !sc.all && !slices.Contains(sc.managed, team) {
		return nil, &rallye.Error{Code: rallye.CodePermissionDenied, Field: "team_id", Message: "this team is not one of yours"}
	}
	teams, err := org.TeamAndDescendants(ctx, tx, tenantID, []uuid.UUID{team})
	if err != nil {
		return nil, fmt.Errorf("read sub-teams: %w", err)
	}
	return teams, nil
}

func companyLocation(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (*time.Location, error) {
	var tz string
	if err := tx.QueryRow(ctx, `SELECT time_zone FROM tenants WHERE id = $1`, tenantID).Scan(&tz); err != nil {
		return nil, fmt.Errorf("read time zone: %w", err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return time.UTC, nil // time zones are checked when set: unreachable
	}
	return loc, nil
}

func teamNames(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (map[uuid.UUID]string, error) {
	rows, err := tx.Query(ctx, `SELECT id, name FROM teams WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read teams: %w", err)
	}
	out := map[uuid.UUID]string{}
	var id uuid.UUID
	var name string
	_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error { out[id] = name; return nil })
	return out, err
}
