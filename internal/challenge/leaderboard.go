package challenge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/leaderboard"
)

// LeaderboardSeam drives the leaderboard (internal/leaderboard) as this
// package's Scores and Boards: points recorded in its ledger, challenge
// boards created, filled and frozen. The two packages keep their own types;
// this is where they meet.
type LeaderboardSeam struct{ LB *leaderboard.Service }

var (
	_ Scores = LeaderboardSeam{}
	_ Boards = LeaderboardSeam{}
)

// Record implements Scores.
func (s LeaderboardSeam) Record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []Entry) (Receipt, error) {
	out := make([]leaderboard.Entry, len(entries))
	for i, e := range entries {
		out[i] = leaderboard.Entry{Key: e.Key, UserID: e.UserID, TeamID: e.TeamID, ChallengeID: e.ChallengeID,
			Points: e.Points, At: e.At, Reason: e.Reason, Kind: leaderboard.EntryKind(e.Kind)}
		if e.Cause != nil {
			b, err := json.Marshal(e.Cause)
			if err != nil {
				return nil, fmt.Errorf("encode cause: %w", err)
			}
			out[i].Cause = b
		}
	}
	r, err := s.LB.Scores.Record(ctx, tx, tenantID, out)
	if err != nil {
		return nil, err
	}
	return leaderboardReceipt{scores: s.LB.Scores, r: r}, nil
}

// leaderboardReceipt publishes what the leaderboard recorded.
type leaderboardReceipt struct {
	scores *leaderboard.Scores
	r      leaderboard.Receipt
}

// Publish implements Receipt.
func (r leaderboardReceipt) Publish(ctx context.Context) { r.scores.Publish(ctx, r.r) }

// CreateChallengeBoards implements Boards.
func (s LeaderboardSeam) CreateChallengeBoards(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, b BoardSpec) error {
	return s.LB.Boards.CreateChallengeBoards(ctx, tx, tenantID, leaderboard.ChallengeBoards{
		ChallengeID: b.ChallengeID, Team: b.Team, SharedRanks: b.SharedRanks, StartsAt: b.StartsAt, EndsAt: b.EndsAt,
	})
}

// Enroll implements Boards.
func (s LeaderboardSeam) Enroll(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID, players []Player) error {
	ps := make([]leaderboard.Participant, len(players))
	for i, p := range players {
		ps[i] = leaderboard.Participant{UserID: p.UserID, TeamID: p.TeamID}
	}
	return s.LB.Boards.Enroll(ctx, tx, tenantID, challengeID, ps)
}

// Freeze implements Boards.
func (s LeaderboardSeam) Freeze(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID) error {
	return s.LB.Boards.Freeze(ctx, tx, tenantID, challengeID)
}

// Reschedule implements Boards.
func (s LeaderboardSeam) Reschedule(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID, endsAt time.Time) error {
	return s.LB.Boards.Reschedule(ctx, tx, tenantID, challengeID, endsAt)
}
