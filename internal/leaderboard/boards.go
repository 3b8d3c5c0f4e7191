package leaderboard

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Boards creates, fills and freezes challenge boards, inside the challenge
// package's transactions.
type Boards struct{ s *Service }

// ChallengeBoards describes the boards of a challenge.
type ChallengeBoards struct {
	ChallengeID uuid.UUID
	// Team adds team boards: total and average per member.
	Team bool
	// SharedRanks gives equal scores the same rank (competition ranking
	// 1, 2, 2, 4) instead of ranking the earliest achiever first.
	SharedRanks bool
	StartsAt    time.Time
	// EndsAt is zero for a challenge without a planned end.
	EndsAt time.Time
}

// Reschedule moves the planned end of a challenge's boards, for a challenge
// extended or ended early. Boards not created yet (the challenge has not
// started) or frozen are left alone. The tie-break resolution stays the one
// chosen at creation, so the live rankings stay consistent.
func (bs *Boards) Reschedule(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID, endsAt time.Time) error {
	var ends *time.Time
	if !endsAt.IsZero() {
		ends = &endsAt
	}
	rows, err := tx.Query(ctx, `UPDATE boards SET ends_at = $3
		WHERE tenant_id = $1 AND challenge_id = $2 AND frozen_at IS NULL RETURNING id`, tenantID, challengeID, ends)
	if err != nil {
		return fmt.Errorf("reschedule challenge boards: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("reschedule challenge boards: %w", err)
	}
	// Other instances see the new end within the board cache's lifetime; an
	// early expiry there only costs a rebuild from PostgreSQL.
	for _, id := range ids {
		bs.s.forgetBoard(tenantID, id)
	}
	return nil
}

// Participant is a person enrolled in a challenge, with the team they play
// for (uuid.Nil: none).
type Participant struct {
	UserID uuid.UUID
	TeamID uuid.UUID
}

// CreateChallengeBoards creates a challenge's boards (idempotent: creating
// them again with the same settings changes nothing).
//
// Errors: CodeInvalid for a missing challenge id or start, or an end before
// the start; CodeAlreadyExists when the boards exist with other settings.
func (bs *Boards) CreateChallengeBoards(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, c ChallengeBoards) error {
	switch {
	case c.ChallengeID == uuid.Nil:
		return rallye.Invalid("challenge_id", "is required")
	case c.StartsAt.IsZero():
		return rallye.Invalid("starts_at", "is required")
	case !c.EndsAt.IsZero() && !c.EndsAt.After(c.StartsAt):
		return rallye.Invalid("ends_at", "must be after starts_at")
	}
	kinds := []Kind{KindIndividual}
	if c.Team {
		kinds = append(kinds, KindTeamTotal, KindTeamAverage)
	}
	var ends *time.Time
	if !c.EndsAt.IsZero() {
		ends = &c.EndsAt
	}
	tick := int32(tickFor(c.StartsAt, c.EndsAt) / time.Second)
	for _, k := range kinds {
		_, err := tx.Exec(ctx, `INSERT INTO boards (tenant_id, id, kind, challenge_id, starts_at, ends_at, shared_ranks, tick_seconds)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
			tenantID, ChallengeBoardID(c.ChallengeID, k), k, c.ChallengeID, c.StartsAt, ends, c.SharedRanks, tick)
		if err != nil {
			return fmt.Errorf("create challenge boards: %w", err)
		}
	}
	existing, err := challengeBoards(ctx, tx, tenantID, []uuid.UUID{c.ChallengeID}, false)
	if err != nil {
		return fmt.Errorf("read challenge boards: %w", err)
	}
	same := func(a, b time.Time) bool { return a.Equal(b.Truncate(time.Microsecond)) } // PostgreSQL keeps microseconds
	for _, b := range existing {
		if len(existing) != len(kinds) || !same(b.StartsAt, c.StartsAt) || !same(b.EndsAt, c.EndsAt) || b.SharedRanks != c.SharedRanks {
			return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "challenge_id", Message: "the challenge's boards exist with other settings"}
		}
	}
	return nil
}

// Enroll adds participants to a challenge's boards: they appear with 0
// points, below everyone who scored. Enrolling someone again changes nothing
// (their team stays the first one given). The live rankings catch up through
// the repair job enqueued here, within a few seconds of commit.
//
// Errors: CodeNotFound when the challenge has no boards or a person does not
// exist; CodeFailedPrecondition when the challenge is frozen; CodeInvalid for
// a participant without a user id.
func (bs *Boards) Enroll(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID, participants []Participant) error {
	s := bs.s
	if len(participants) == 0 {
		return nil
	}
	users := make([]uuid.UUID, len(participants))
	teams := make([]uuid.UUID, len(participants))
	for i, p := range participants {
		if p.UserID == uuid.Nil {
			return rallye.Invalid(fmt.Sprintf("participants[%d].user_id", i), "is required")
		}
		users[i], teams[i] = p.UserID, p.TeamID
	}
	if err := lockChallenges(ctx, tx, []uuid.UUID{challengeID}, false); err != nil {
		return err
	}
	boards, err := challengeBoards(ctx, tx, tenantID, []uuid.UUID{challengeID}, false)
	if err != nil {
		return fmt.Errorf("read challenge boards: %w", err)
	}
	if len(boards) == 0 {
		return rallye.NotFound("challenge boards")
	}
	if boards[0].Frozen() {
		return &rallye.Error{Code: rallye.CodeFailedPrecondition, Reason: "BOARD_FROZEN", Message: "the challenge is over: its ranking is final"}
	}
	ind := ChallengeBoardID(challengeID, KindIndividual)

	// New participants, then their zero rows; team rows count members.
	rows, err := tx.Query(ctx, `
		WITH p AS (
			INSERT INTO challenge_participants (tenant_id, challenge_id, user_id, team_id)
			SELECT DISTINCT ON (u) $1::uuid, $2::uuid, u, nullif(t, '00000000-0000-0000-0000-000000000000')
			FROM unnest($3::uuid[], $4::uuid[]) AS x(u, t)
			ORDER BY u
			ON CONFLICT DO NOTHING
			RETURNING user_id, team_id
		), ind AS (
			INSERT INTO board_scores (tenant_id, board_id, member_id, points, members, xact)
			SELECT $1, $5, user_id, 0, 1, pg_current_xact_id()::text::bigint FROM p ORDER BY user_id
			ON CONFLICT DO NOTHING
		)
		SELECT team_id, count(*) FROM p WHERE team_id IS NOT NULL GROUP BY team_id ORDER BY team_id`,
		tenantID, challengeID, users, teams, ind)
	if err != nil {
		return enrollError(err)
	}
	var teamIDs []uuid.UUID
	var counts []int32
	var team uuid.UUID
	var n int32
	if _, err := pgx.ForEachRow(rows, []any{&team, &n}, func() error {
		teamIDs, counts = append(teamIDs, team), append(counts, n)
		return nil
	}); err != nil {
		return enrollError(err)
	}
	touched := []uuid.UUID{ind}
	for _, b := range boards {
		if !b.Team() || len(teamIDs) == 0 {
			continue
		}
		_, err := tx.Exec(ctx, `INSERT INTO board_scores AS s (tenant_id, board_id, member_id, points, members, xact)
			SELECT $1, $2, t, 0, n, pg_current_xact_id()::text::bigint FROM unnest($3::uuid[], $4::int[]) AS x(t, n)
			ON CONFLICT (tenant_id, board_id, member_id) DO UPDATE SET
				members = s.members + excluded.members, version = s.version + 1, xact = excluded.xact`,
			tenantID, b.ID, teamIDs, counts)
		if err != nil {
			return fmt.Errorf("count team members: %w", err)
		}
		touched = append(touched, b.ID)
	}
	return s.markDirty(ctx, tx, tenantID, touched)
}

func enrollError(err error) error {
	if postgres.IsForeignKeyViolation(err, "") {
		return &rallye.Error{Code: rallye.CodeNotFound, Field: "participants", Message: "a person does not exist", Cause: err}
	}
	return fmt.Errorf("enroll: %w", err)
}

// Freeze copies a challenge's final rankings into PostgreSQL. Afterwards its
// boards are read from there, Record refuses points for the challenge, and
// a repair job removes the live copies from Redis. Freezing again changes
// nothing.
//
// Errors: CodeNotFound when the challenge has no boards.
func (bs *Boards) Freeze(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID) error {
	s := bs.s
	if err := lockChallenges(ctx, tx, []uuid.UUID{challengeID}, true); err != nil {
		return err
	}
	boards, err := challengeBoards(ctx, tx, tenantID, []uuid.UUID{challengeID}, true)
	if err != nil {
		return fmt.Errorf("read challenge boards: %w", err)
	}
	if len(boards) == 0 {
		return rallye.NotFound("challenge boards")
	}
	var ids []uuid.UUID
	for _, b := range boards {
		if b.Frozen() {
			continue
		}
		rows, err := loadRows(ctx, tx, b)
		if err != nil {
			return err
		}
		ranked := rankRows(b, rows)
		members := make([]uuid.UUID, len(ranked))
		positions := make([]int64, len(ranked))
		ranks := make([]int64, len(ranked))
		for i, r := range ranked {
			members[i], positions[i], ranks[i] = r.row.Member, r.position, r.rank
		}
		if _, err := tx.Exec(ctx, `UPDATE board_scores s SET final_position = x.p, final_rank = x.r
			FROM unnest($3::uuid[], $4::int[], $5::int[]) AS x(m, p, r)
			WHERE s.tenant_id = $1 AND s.board_id = $2 AND s.member_id = x.m`,
			tenantID, b.ID, members, positions, ranks); err != nil {
			return fmt.Errorf("write final ranking: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE boards SET frozen_at = now(), participant_count = $3 WHERE tenant_id = $1 AND id = $2`,
			tenantID, b.ID, len(ranked)); err != nil {
			return fmt.Errorf("freeze board: %w", err)
		}
		ids = append(ids, b.ID)
		s.forgetBoard(tenantID, b.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	return s.markDirty(ctx, tx, tenantID, ids)
}

// loadRows reads every row of a board.
func loadRows(ctx context.Context, tx pgx.Tx, b Board) ([]scoreRow, error) {
	rows, err := tx.Query(ctx, `SELECT member_id, points, reached_at, members, version FROM board_scores
		WHERE tenant_id = $1 AND board_id = $2`, b.TenantID, b.ID)
	if err != nil {
		return nil, fmt.Errorf("read board rows: %w", err)
	}
	return pgx.CollectRows(rows, scanScoreRow)
}

func scanScoreRow(r pgx.CollectableRow) (scoreRow, error) {
	var row scoreRow
	var reached *time.Time
	var members int32
	err := r.Scan(&row.Member, &row.Points, &reached, &members, &row.Version)
	if reached != nil {
		row.ReachedAt = *reached
	}
	row.Members = int(members)
	return row, err
}

type rankedRow struct {
	row      scoreRow
	score    float64
	position int64 // 1-based, distinct
	rank     int64 // the board's rank: position, or competition rank
}

// rankRows orders rows exactly as the live ranking does (score descending,
// then participant id descending, as Redis orders equal scores) and gives
// them ranks. It is the one definition of the order outside Redis: freezing
// uses it, and the tests compare Redis against it.
func rankRows(b Board, rows []scoreRow) []rankedRow {
	out := make([]rankedRow, len(rows))
	for i, r := range rows {
		out[i] = rankedRow{row: r, score: b.score(r)}
	}
	slices.SortFunc(out, func(x, y rankedRow) int {
		if x.score != y.score {
			if x.score > y.score {
				return -1
			}
			return 1
		}
		return -compareIDs(x.row.Member, y.row.Member)
	})
	var prev int64
	for i := range out {
		out[i].position = int64(i + 1)
		out[i].rank = out[i].position
		if b.SharedRanks && i > 0 {
			v, _ := decompose(out[i].score, b.StartsAt, b.Tick)
			if v == prev {
				out[i].rank = out[i-1].rank
			}
		}
		prev, _ = decompose(out[i].score, b.StartsAt, b.Tick)
	}
	return out
}
