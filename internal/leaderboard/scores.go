package leaderboard

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Entry is one change of a person's points (the points ledger row).
type Entry struct {
	// Key is the idempotency key, unique per company: recording the same Key
	// twice changes nothing.
	Key    string
	UserID uuid.UUID
	// TeamID is the team the person plays for in this challenge (team
	// boards); uuid.Nil takes the team they were enrolled with, if any.
	TeamID uuid.UUID
	// ChallengeID is uuid.Nil for points earned outside any challenge
	// (period boards only).
	ChallengeID uuid.UUID
	// Points may be negative (a correction takes points back).
	Points int64
	// At is when the points were earned: it picks the period and breaks ties.
	At time.Time
	// Reason says where the points come from: "mission:<id>", "event:<id>",
	// "correction".
	Reason string
	// Kind says what the points are for ("" is EntryScoring). Spending
	// kinds and adjustments move no board.
	Kind EntryKind
	// Cause links the entry to what caused it, as a JSON object whose
	// shape the writer documents (challenge.Cause, the rewards area's
	// causes): the wallet's history reads it. nil for none.
	Cause json.RawMessage
}

// EntryKind is what a ledger entry is for.
type EntryKind string

// Entry kinds (the points_ledger.kind check lists them).
const (
	EntryScoring         EntryKind = "scoring"          // a challenge's scoring rule on an event
	EntryMission         EntryKind = "mission"          // a mission completed
	EntryCorrection      EntryKind = "correction"       // what a correction or a cancellation takes back
	EntryRankReward      EntryKind = "rank_reward"      // a final rank's bonus
	EntryThresholdReward EntryKind = "threshold_reward" // a final threshold's bonus
	EntryManual          EntryKind = "manual"           // granted by a manager
	EntryKudos           EntryKind = "kudos"            // received with kudos
	EntryRedemption      EntryKind = "redemption"       // spent on a catalogue reward (negative)
	EntryRefund          EntryKind = "refund"           // a redemption rejected or cancelled
	EntryAdjustment      EntryKind = "adjustment"       // a settlement keeping the wallet at zero or more
)

var entryKinds = map[EntryKind]bool{EntryScoring: true, EntryMission: true, EntryCorrection: true,
	EntryRankReward: true, EntryThresholdReward: true, EntryManual: true, EntryKudos: true,
	EntryRedemption: true, EntryRefund: true, EntryAdjustment: true}

// MovesBoards reports whether entries of the kind count on leaderboards:
// points earned do, spending, refunds and wallet adjustments do not.
func (k EntryKind) MovesBoards() bool {
	return k != EntryRedemption && k != EntryRefund && k != EntryAdjustment
}

// Spending reports whether the kind is spending (or its refund), which
// lifetime points leave out.
func (k EntryKind) Spending() bool { return k == EntryRedemption || k == EntryRefund }

// MessagePointsRecorded is the outbox kind Record appends when it recorded
// new entries: payload PointsRecorded, subjects the people.
const MessagePointsRecorded outbox.Kind = "points.recorded"

// PointsRecorded is the payload of a points.recorded message: each person's
// change in one Record call.
type PointsRecorded struct {
	Changes []PointsChange `json:"changes"`
}

// PointsChange is one person's change.
type PointsChange struct {
	UserID uuid.UUID `json:"user_id"`
	// Points is the sum of the new entries; Lifetime leaves spending out.
	Points   int64 `json:"points"`
	Lifetime int64 `json:"lifetime"`
}

// Receipt is what Record wrote, for Publish to copy into Redis after commit.
type Receipt struct {
	TenantID uuid.UUID
	// Recorded counts new entries; Duplicates those whose key was already
	// recorded (they changed nothing).
	Recorded   int
	Duplicates int

	changes []boardChange
}

// boardChange is a board's rows written by one Record, with their absolute
// values as PostgreSQL returned them.
type boardChange struct {
	board Board
	rows  []scoreRow
}

// Scores records points. It is the challenge package's entry point.
type Scores struct{ s *Service }

// Limits of a Record call.
const (
	MaxEntries   = 1000
	maxKeyLen    = 200
	maxReasonLen = 200
	maxCauseLen  = 4096
)

// Record records points in the caller's transaction: ledger rows (idempotent
// on Entry.Key) and per-board totals, plus a repair job inserted in that same
// transaction. After commit, call Publish with the receipt to update the live
// rankings. On error nothing was written by Record, but the caller's
// transaction may be unusable: roll it back.
//
// Points go to the challenge's individual board, to its team boards in team
// mode, and to the company's period boards (week, month, quarter, all time)
// of the period containing At in the company's time zone (cached for a
// minute: a change of time zone applies to entries recorded after that).
//
// Entries of kinds that move no board (spending, refunds, adjustments) are
// only written to the ledger. The wallet's balances follow the ledger in the
// same statement (a database trigger, see migrations/00101_wallet.sql), and
// new entries are announced in the outbox (MessagePointsRecorded) in the
// caller's transaction: call Record last in it (see outbox.Append).
//
// Errors: CodeInvalid for a malformed entry (Field names it), CodeNotFound
// when a challenge has no boards, CodeFailedPrecondition when a challenge is
// frozen (reason BOARD_FROZEN), the person is not enrolled in it (reason
// NOT_ENROLLED), or an entry would take a person's spendable points below
// zero (reason INSUFFICIENT_POINTS).
func (sc *Scores) Record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []Entry) (Receipt, error) {
	s := sc.s
	r := Receipt{TenantID: tenantID}
	if s.jobs == nil {
		return r, errorf("Record needs a job queue (SetJobs)")
	}
	entries, err := checkEntries(entries)
	if err != nil {
		return r, err
	}
	if len(entries) == 0 {
		return r, nil
	}

	// Challenge boards: lock them against a concurrent Freeze, check they
	// are live and that everyone is enrolled.
	var challenges []uuid.UUID
	var users []uuid.UUID
	for _, e := range entries {
		if e.ChallengeID != uuid.Nil && e.Kind.MovesBoards() {
			challenges = append(challenges, e.ChallengeID)
			users = append(users, e.UserID)
		}
	}
	slices.SortFunc(challenges, func(a, b uuid.UUID) int { return compareIDs(a, b) })
	challenges = slices.Compact(challenges)
	boardsOf := map[uuid.UUID]map[Kind]Board{}
	teamOf := map[[2]uuid.UUID]uuid.UUID{} // (challenge, user) -> team; present = enrolled
	if len(challenges) > 0 {
		// One round trip: the locks, then (each statement seeing what
		// committed before the locks were granted) the boards and the
		// enrolments.
		batch := &pgx.Batch{}
		for _, c := range challenges {
			batch.Queue(`SELECT pg_advisory_xact_lock_shared($1)`, challengeLock(c))
		}
		var bs []Board
		batch.Queue(`SELECT `+boardColumns+` FROM boards WHERE tenant_id = $1 AND challenge_id = ANY($2)`, tenantID, challenges).
			Query(func(rows pgx.Rows) error {
				var err error
				bs, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Board, error) { return scanBoard(r) })
				return err
			})
		batch.Queue(`SELECT challenge_id, user_id, coalesce(team_id, '00000000-0000-0000-0000-000000000000')
			FROM challenge_participants WHERE tenant_id = $1 AND challenge_id = ANY($2) AND user_id = ANY($3)`,
			tenantID, challenges, users).
			Query(func(rows pgx.Rows) error {
				var c, u, t uuid.UUID
				_, err := pgx.ForEachRow(rows, []any{&c, &u, &t}, func() error { teamOf[[2]uuid.UUID{c, u}] = t; return nil })
				return err
			})
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return r, fmt.Errorf("read challenge boards: %w", err)
		}
		for _, b := range bs {
			if boardsOf[b.ChallengeID] == nil {
				boardsOf[b.ChallengeID] = map[Kind]Board{}
			}
			boardsOf[b.ChallengeID][b.Kind] = b
		}
	}

	loc, err := s.location(ctx, tx, tenantID)
	if err != nil {
		return r, err
	}

	// Where each entry's points go.
	var t targets
	known := map[uuid.UUID]Board{}
	var periodBoards []Board
	for i, e := range entries {
		if !e.Kind.MovesBoards() {
			continue
		}
		if e.ChallengeID != uuid.Nil {
			bs := boardsOf[e.ChallengeID]
			ind, ok := bs[KindIndividual]
			if !ok {
				return r, &rallye.Error{Code: rallye.CodeNotFound, Field: fmt.Sprintf("entries[%d].challenge_id", i), Message: "the challenge has no boards"}
			}
			if ind.Frozen() {
				return r, &rallye.Error{Code: rallye.CodeFailedPrecondition, Reason: "BOARD_FROZEN",
					Message: "the challenge is over: its ranking is final"}
			}
			team, enrolled := teamOf[[2]uuid.UUID{e.ChallengeID, e.UserID}]
			if !enrolled {
				return r, &rallye.Error{Code: rallye.CodeFailedPrecondition, Reason: "NOT_ENROLLED",
					Field: fmt.Sprintf("entries[%d].user_id", i), Message: "the person does not take part in the challenge"}
			}
			t.add(e, ind.ID, e.UserID, 1)
			known[ind.ID] = ind
			if e.TeamID != uuid.Nil {
				team = e.TeamID
			}
			if team != uuid.Nil {
				for _, k := range []Kind{KindTeamTotal, KindTeamAverage} {
					if b, ok := bs[k]; ok {
						t.add(e, b.ID, team, 0)
						known[b.ID] = b
					}
				}
			}
		}
		for _, p := range Periods {
			b := periodBoard(tenantID, p, e.At, loc)
			if _, ok := known[b.ID]; !ok {
				known[b.ID] = b
				periodBoards = append(periodBoards, b)
			}
			t.add(e, b.ID, e.UserID, 1)
		}
	}

	// One statement: the ledger rows that are new, the period boards they
	// need, the totals they move (returned absolute, with their version), and
	// the dirty marks of the boards. Totals are upserted in (board, member)
	// order so that concurrent calls lock rows in the same order.
	keys, userIDs, teamIDs, challengeIDs, points, ats, reasons, kinds, causes := entryColumns(entries)
	pb := periodColumns(periodBoards)
	rows, err := tx.Query(ctx, `
		WITH e AS (
			INSERT INTO points_ledger (tenant_id, key, user_id, team_id, challenge_id, points, earned_at, reason, kind, cause)
			SELECT $1, k, u, nullif(t, '00000000-0000-0000-0000-000000000000'), nullif(c, '00000000-0000-0000-0000-000000000000'), p, a, r, kd, cs
			FROM unnest($2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bigint[], $7::timestamptz[], $8::text[],
				$20::text[], $21::jsonb[]) AS x(k, u, t, c, p, a, r, kd, cs)
			ON CONFLICT (tenant_id, key) DO NOTHING
			RETURNING key, user_id, points, kind
		), nb AS (
			INSERT INTO boards (tenant_id, id, kind, period, starts_at, ends_at, tick_seconds)
			SELECT $1, id, 'individual', period, s, en, tick
			FROM unnest($9::uuid[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::int[]) AS x(id, period, s, en, tick)
			ON CONFLICT DO NOTHING
		), agg AS (
			SELECT b, m, sum(p)::bigint AS p, max(a) AS a, min(n) AS n
			FROM unnest($14::text[], $15::uuid[], $16::uuid[], $17::bigint[], $18::timestamptz[], $19::int[]) AS x(k, b, m, p, a, n)
			JOIN e ON e.key = x.k
			GROUP BY b, m
		), up AS (
			INSERT INTO board_scores AS s (tenant_id, board_id, member_id, points, reached_at, members, xact)
			SELECT $1, b, m, p, a, n, pg_current_xact_id()::text::bigint FROM agg ORDER BY b, m
			ON CONFLICT (tenant_id, board_id, member_id) DO UPDATE SET
				points = s.points + excluded.points,
				reached_at = greatest(s.reached_at, excluded.reached_at),
				version = s.version + 1,
				xact = excluded.xact
			RETURNING board_id, member_id, points, reached_at, members, version
		), d AS (
			INSERT INTO board_dirty (tenant_id, board_id)
			SELECT $1::uuid, b FROM agg GROUP BY b ORDER BY b
			ON CONFLICT DO NOTHING
			RETURNING board_id
		)
		SELECT 0, board_id, member_id, points, reached_at, members, version FROM up
		UNION ALL
		SELECT 1, board_id, board_id, 0, NULL, 0, 0 FROM d
		UNION ALL
		SELECT 2, '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000', count(*), NULL, 0, 0 FROM e
		UNION ALL
		SELECT 3, user_id, user_id, sum(points)::bigint, NULL, 0,
			coalesce(sum(points) FILTER (WHERE kind NOT IN ('redemption', 'refund')), 0)::bigint
		FROM e GROUP BY user_id`,
		tenantID, keys, userIDs, teamIDs, challengeIDs, points, ats, reasons,
		pb.ids, pb.periods, pb.starts, pb.ends, pb.ticks,
		t.keys, t.boards, t.members, t.points, t.ats, t.members0, kinds, causes)
	if err != nil {
		return r, recordError(err)
	}
	byBoard := map[uuid.UUID]*boardChange{}
	var dirty []uuid.UUID
	var recorded PointsRecorded
	var (
		tag     int32
		board   uuid.UUID
		row     scoreRow
		reached *time.Time
		members int32
	)
	_, err = pgx.ForEachRow(rows, []any{&tag, &board, &row.Member, &row.Points, &reached, &members, &row.Version}, func() error {
		switch tag {
		case 2:
			r.Recorded = int(row.Points)
		case 1:
			dirty = append(dirty, board)
		case 3:
			recorded.Changes = append(recorded.Changes, PointsChange{UserID: row.Member, Points: row.Points, Lifetime: row.Version})
		default:
			rr := row
			rr.Members = int(members)
			if reached != nil {
				rr.ReachedAt = *reached
			}
			c := byBoard[board]
			if c == nil {
				c = &boardChange{board: known[board]}
				byBoard[board] = c
			}
			c.rows = append(c.rows, rr)
		}
		return nil
	})
	if err != nil {
		return r, recordError(err)
	}
	r.Duplicates = len(entries) - r.Recorded
	for _, c := range byBoard {
		r.changes = append(r.changes, *c)
	}
	slices.SortFunc(r.changes, func(a, b boardChange) int { return compareIDs(a.board.ID, b.board.ID) })
	if err := s.enqueueRepairs(ctx, tx, tenantID, dirty); err != nil {
		return r, err
	}
	if len(recorded.Changes) > 0 {
		slices.SortFunc(recorded.Changes, func(a, b PointsChange) int { return compareIDs(a.UserID, b.UserID) })
		subjects := make([]uuid.UUID, len(recorded.Changes))
		for i, c := range recorded.Changes {
			subjects[i] = c.UserID
		}
		if err := outbox.Append(ctx, tx, outbox.Message{TenantID: tenantID, Kind: MessagePointsRecorded,
			Subjects: subjects, Payload: recorded, OccurredAt: s.now()}); err != nil {
			return r, err
		}
	}
	return r, nil
}

// recordError translates the database's refusals of a Record statement.
func recordError(err error) error {
	if postgres.IsCheckViolation(err, "wallet_balances_spendable_check") {
		return &rallye.Error{Code: rallye.CodeFailedPrecondition, Reason: "INSUFFICIENT_POINTS",
			Message: "not enough points", Cause: err}
	}
	return fmt.Errorf("record points: %w", err)
}

// checkEntries validates entries and drops repeated keys (the first wins, as
// it would across calls).
func checkEntries(entries []Entry) ([]Entry, error) {
	if len(entries) > MaxEntries {
		return nil, rallye.Invalid("entries", "at most %d entries per call", MaxEntries)
	}
	seen := make(map[string]bool, len(entries))
	out := make([]Entry, 0, len(entries))
	for i, e := range entries {
		field := func(f string) string { return fmt.Sprintf("entries[%d].%s", i, f) }
		switch {
		case e.Key == "" || len(e.Key) > maxKeyLen:
			return nil, rallye.Invalid(field("key"), "must be 1 to %d bytes", maxKeyLen)
		case e.UserID == uuid.Nil:
			return nil, rallye.Invalid(field("user_id"), "is required")
		case e.At.IsZero():
			return nil, rallye.Invalid(field("at"), "is required")
		case len(e.Reason) > maxReasonLen:
			return nil, rallye.Invalid(field("reason"), "must be at most %d bytes", maxReasonLen)
		case e.Points > MaxValue || e.Points < -MaxValue:
			return nil, rallye.Invalid(field("points"), "must be within ±%d", MaxValue)
		case e.Kind != "" && !entryKinds[e.Kind]:
			return nil, rallye.Invalid(field("kind"), "%q is not an entry kind", e.Kind)
		case !e.Kind.MovesBoards() && e.ChallengeID != uuid.Nil:
			return nil, rallye.Invalid(field("challenge_id"), "%s entries belong to no challenge", e.Kind)
		case len(e.Cause) > maxCauseLen:
			return nil, rallye.Invalid(field("cause"), "must be at most %d bytes", maxCauseLen)
		case len(e.Cause) > 0 && !json.Valid(e.Cause):
			return nil, rallye.Invalid(field("cause"), "must be JSON")
		}
		if e.Kind == "" {
			e.Kind = EntryScoring
		}
		if seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		out = append(out, e)
	}
	return out, nil
}

func entryColumns(entries []Entry) (keys []string, users, teams, challenges []uuid.UUID, points []int64, ats []time.Time,
	reasons, kinds []string, causes []*string) {
	for _, e := range entries {
		keys = append(keys, e.Key)
		users = append(users, e.UserID)
		teams = append(teams, e.TeamID)
		challenges = append(challenges, e.ChallengeID)
		points = append(points, e.Points)
		ats = append(ats, e.At)
		reasons = append(reasons, e.Reason)
		kinds = append(kinds, string(e.Kind))
		var cause *string
		if len(e.Cause) > 0 {
			c := string(e.Cause)
			cause = &c
		}
		causes = append(causes, cause)
	}
	return
}

type periodCols struct {
	ids     []uuid.UUID
	periods []string
	starts  []time.Time
	ends    []*time.Time // nil: open-ended
	ticks   []int32
}

func periodColumns(bs []Board) periodCols {
	var c periodCols
	for _, b := range bs {
		c.ids = append(c.ids, b.ID)
		c.periods = append(c.periods, string(b.Period))
		c.starts = append(c.starts, b.StartsAt)
		var end *time.Time
		if !b.EndsAt.IsZero() {
			end = &b.EndsAt
		}
		c.ends = append(c.ends, end)
		c.ticks = append(c.ticks, int32(b.Tick/time.Second))
	}
	if c.ids == nil { // unnest of NULL arrays would fail to type
		c.ids, c.periods, c.starts, c.ends, c.ticks = []uuid.UUID{}, []string{}, []time.Time{}, []*time.Time{}, []int32{}
	}
	return c
}

// targets are the (board, member) rows each entry moves, as columns.
type targets struct {
	keys     []string
	boards   []uuid.UUID
	members  []uuid.UUID
	points   []int64
	ats      []time.Time
	members0 []int32 // enrolled members of a new row: 1 for a person, 0 for a team
}

func (t *targets) add(e Entry, board, member uuid.UUID, n int32) {
	t.keys = append(t.keys, e.Key)
	t.boards = append(t.boards, board)
	t.members = append(t.members, member)
	t.points = append(t.points, e.Points)
	t.ats = append(t.ats, e.At)
	t.members0 = append(t.members0, n)
}

// Publish copies what Record wrote into the live rankings, announces the
// changes to the boards' watchers and emits Overtaken events. Call it after
// the transaction committed. It is best effort: a failure is logged and
// healed by the repair job Record enqueued (or by a rebuild).
func (sc *Scores) Publish(ctx context.Context, r Receipt) {
	if err := sc.s.publish(ctx, r); err != nil {
		sc.s.log.WarnContext(ctx, "leaderboard: live rankings not updated; the repair job will", "tenant_id", r.TenantID, "error", err)
	}
}

func (s *Service) publish(ctx context.Context, r Receipt) error {
	if len(r.changes) == 0 {
		return nil
	}
	now := s.now()
	calls := make([]scriptCall, 0, len(r.changes))
	for _, c := range r.changes {
		calls = append(calls, s.setCall(c.board, c.rows, c.board.ChallengeID != uuid.Nil, now))
	}
	cmds, err := evalAll(ctx, s.redis, calls)
	if err != nil {
		return err
	}
	for i, cmd := range cmds {
		res, err := cmd.Slice()
		if err != nil || len(res) < 2 {
			continue
		}
		evs, _ := res[1].([]any)
		for _, ev := range evs {
			if o, ok := parseOvertaken(r.TenantID, r.changes[i].board, ev); ok {
				s.events.Overtaken(ctx, o)
			}
		}
	}
	return nil
}

// setCall is the setScores invocation writing rows to a board.
func (s *Service) setCall(b Board, rows []scoreRow, overtake bool, now time.Time) scriptCall {
	k := keysOf(s.keys, b.ID)
	args := make([]any, 0, 4+3*len(rows))
	args = append(args, flag(overtake), flag(b.SharedRanks), tieRange, s.ttlMillis(b, now))
	for _, row := range rows {
		args = append(args, string(row.Member[:]), scoreArg(b.score(row)), row.Version)
	}
	return scriptCall{script: setScores, keys: []string{k.ready, k.z, k.v, k.build, k.bz, k.bv, k.live}, args: args}
}

// endedTTL is how long a board whose period is over stays in Redis after its
// last write; a later read rebuilds it from PostgreSQL.
const endedTTL = 24 * time.Hour

func (s *Service) ttlMillis(b Board, now time.Time) int64 {
	if b.ended(now) {
		return endedTTL.Milliseconds()
	}
	return 0
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func parseOvertaken(tenantID uuid.UUID, b Board, raw any) (Overtaken, bool) {
	ev, ok := raw.([]any)
	if !ok || len(ev) < 3 {
		return Overtaken{}, false
	}
	by, ok1 := memberID(ev[0])
	rank, ok2 := ev[1].(int64)
	n, ok3 := ev[2].(int64)
	if !ok1 || !ok2 || !ok3 || len(ev) < 3+2*int(n) {
		return Overtaken{}, false
	}
	o := Overtaken{TenantID: tenantID, BoardID: b.ID, ChallengeID: b.ChallengeID, Kind: b.Kind, By: by, ByRank: rank}
	for i := range int(n) {
		id, ok := memberID(ev[3+2*i])
		r, ok2 := ev[4+2*i].(int64)
		if ok && ok2 {
			o.Passed = append(o.Passed, Passed{ParticipantID: id, Rank: r})
		}
	}
	return o, len(o.Passed) > 0
}

// memberID decodes a sorted-set member (the participant's 16 id bytes).
func memberID(v any) (uuid.UUID, bool) {
	s, ok := v.(string)
	if !ok {
		return uuid.Nil, false
	}
	id, err := uuid.FromBytes([]byte(s))
	return id, err == nil
}

func compareIDs(a, b uuid.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// enqueueRepairs inserts a repair job for each board newly marked dirty.
func (s *Service) enqueueRepairs(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, boards []uuid.UUID) error {
	if len(boards) == 0 {
		return nil
	}
	params := make([]river.InsertManyParams, len(boards))
	at := s.now().Add(s.repairDelay)
	for i, b := range boards {
		params[i] = river.InsertManyParams{Args: RepairArgs{TenantID: tenantID, BoardID: b}, InsertOpts: &river.InsertOpts{ScheduledAt: at}}
	}
	if _, err := s.jobs.InsertManyTx(ctx, tx, params); err != nil {
		return fmt.Errorf("enqueue leaderboard repair: %w", err)
	}
	return nil
}

// markDirty marks boards dirty (outside Record, whose statement does it) and
// enqueues a repair job for those newly marked.
func (s *Service) markDirty(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, boards []uuid.UUID) error {
	boards = slices.Clone(boards)
	slices.SortFunc(boards, compareIDs) // the same lock order in every transaction
	rows, err := tx.Query(ctx, `INSERT INTO board_dirty (tenant_id, board_id) SELECT $1, unnest($2::uuid[])
		ON CONFLICT DO NOTHING RETURNING board_id`, tenantID, boards)
	if err != nil {
		return fmt.Errorf("mark boards dirty: %w", err)
	}
	fresh, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return fmt.Errorf("mark boards dirty: %w", err)
	}
	if s.jobs == nil {
		return errorf("no job queue (SetJobs)")
	}
	return s.enqueueRepairs(ctx, tx, tenantID, fresh)
}
