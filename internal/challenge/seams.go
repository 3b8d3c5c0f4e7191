package challenge

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// Entry is a change of a person's points, as the leaderboard records it
// (leaderboard.Entry has the same fields).
type Entry struct {
	// Key is the idempotency key, unique per company: recording the same
	// key twice changes nothing. The keys this package writes are
	//
	//	challenge:<c>:event:<version>:change:<seq>        points of a feed change (+ or -)
	//	challenge:<c>:mission:<m>:user:<u>:complete:<n>   n-th completion of a mission
	//	challenge:<c>:mission:<m>:user:<u>:revoke:<n>     its taking back by a correction
	//	challenge:<c>:cancel:event:<version>              a cancelled challenge takes back what an event gave
	//	challenge:<c>:cancel:mission:<m>:user:<u>:<n>     ... and what a completion gave
	//
	// A feed change is applied exactly once, and its sequence number makes
	// the key unique even when a version counts, stops counting and counts
	// again (a reopened deal whose reopening is retracted).
	Key         string
	UserID      uuid.UUID
	TeamID      uuid.UUID
	ChallengeID uuid.UUID
	// Points may be negative (a correction takes points back).
	Points int64
	// At is when the points were earned (event time).
	At     time.Time
	Reason string
	// Kind is what the points are for: "scoring", "mission" or
	// "correction" (leaderboard.EntryKind); Cause what caused them.
	Kind  string
	Cause *Cause
}

// Receipt is what Scores.Record wrote. Publish it once the transaction has
// committed: it copies the points into the live rankings (best effort: the
// repair job Record enqueued heals a failure, seconds later).
type Receipt interface {
	Publish(ctx context.Context)
}

// Receipts are what one transaction recorded. The functions that record
// points return them, so that the caller that commits holds them and
// publishes them after commit; dropping them takes a deliberate `_`.
type Receipts []Receipt

// Publish publishes every receipt, in order.
func (rs Receipts) Publish(ctx context.Context) {
	for _, r := range rs {
		r.Publish(ctx)
	}
}

// Scores records points in the leaderboard's ledger (in the caller's
// transaction); the receipt it returns publishes them to the live rankings
// after commit. The leaderboard package implements it; this package only
// calls it.
type Scores interface {
	// Record returns CodeFailedPrecondition when the challenge's boards are
	// frozen or the person is not enrolled on them.
	Record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []Entry) (Receipt, error)
}

// BoardSpec describes a challenge's boards.
type BoardSpec struct {
	ChallengeID uuid.UUID
	// Team adds team boards (team mode).
	Team bool
	// SharedRanks gives equal points the same rank (1, 2, 2, 4), as this
	// package ranks for rewards.
	SharedRanks      bool
	StartsAt, EndsAt time.Time
}

// Player is a person on a challenge's boards, with the team they play for
// (uuid.Nil: none).
type Player struct {
	UserID, TeamID uuid.UUID
}

// Boards creates, fills and freezes a challenge's leaderboards, in the
// caller's transaction.
type Boards interface {
	CreateChallengeBoards(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, b BoardSpec) error
	Enroll(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID, players []Player) error
	// Freeze writes the final ranking into PostgreSQL; nothing moves after.
	Freeze(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID) error
	// Reschedule moves the boards' planned end (an extended challenge).
	Reschedule(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID, endsAt time.Time) error
}

// Grant is a reward earned in a challenge.
type Grant struct {
	// Key is unique per company: granting the same key twice changes nothing.
	Key         string
	ChallengeID uuid.UUID
	UserID      uuid.UUID
	TeamID      uuid.UUID
	// RewardRef names the reward rule.
	RewardRef string
	Kind      RewardKind
	// Rank is the final rank (0 for a threshold reward); Points the final
	// points.
	Rank   int
	Points int64
	// BonusPoints and Badge are what the reward gives.
	BonusPoints int64
	Badge       string
	Label       Text
	At          time.Time
}

// Rewards is the hook through which a final challenge grants its rank and
// threshold rewards, inside the finalizing transaction: exactly once per key.
type Rewards interface {
	GrantReward(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, g Grant) error
}

// GrantTable is the default Rewards: it stores grants in
// challenge_reward_grants (each participant's result shows them); the
// rewards area delivers them from the challenge.result messages.
type GrantTable struct{}

// GrantReward implements Rewards.
func (GrantTable) GrantReward(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, g Grant) error {
	var team *uuid.UUID
	if g.TeamID != uuid.Nil {
		team = &g.TeamID
	}
	var rank *int
	if g.Rank > 0 {
		rank = &g.Rank
	}
	_, err := tx.Exec(ctx, `INSERT INTO challenge_reward_grants (tenant_id, key, challenge_id, user_id, team_id,
			reward_ref, rank, points, label_fr, label_en, granted_at, kind, bonus_points, badge)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING`,
		tenantID, g.Key, g.ChallengeID, g.UserID, team, g.RewardRef, rank, g.Points, g.Label.FR, g.Label.EN, g.At,
		string(g.Kind), g.BonusPoints, g.Badge)
	if err != nil {
		return fmt.Errorf("grant reward: %w", err)
	}
	return nil
}

// JobInserter enqueues River jobs inside a transaction (river.Client).
type JobInserter interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}
