package leaderboard

import (
	"context"
	"log/slog"

	"github.com/google/uuid"
)

// Overtaken says that a participant passed others on a challenge board. The
// notifications area turns it into pushes to those passed.
type Overtaken struct {
	TenantID    uuid.UUID
	BoardID     uuid.UUID
	ChallengeID uuid.UUID
	Kind        Kind
	// By is the participant (a person, or a team on team boards) who moved
	// up, and ByRank their new rank.
	By     uuid.UUID
	ByRank int64
	// Passed are those who were above By and are now below, best first, with
	// their new rank; at most MaxPassed of them.
	Passed []Passed
}

// Passed is a participant overtaken, with their new rank.
type Passed struct {
	ParticipantID uuid.UUID
	Rank          int64
}

// MaxPassed bounds the participants an Overtaken event names: a jump past
// thousands notifies the few it displaced at the top of their range.
const MaxPassed = 10

// Events receives the leaderboard's domain events. Publish calls it after
// Redis accepted a change, on the instance that recorded the points; events
// are best effort (a change healed later by a repair job or a rebuild emits
// none).
type Events interface {
	Overtaken(ctx context.Context, e Overtaken)
}

// EventsFunc adapts a function to Events.
type EventsFunc func(ctx context.Context, e Overtaken)

// Overtaken implements Events.
func (f EventsFunc) Overtaken(ctx context.Context, e Overtaken) { f(ctx, e) }

// LogEvents logs events, until the notifications area consumes them.
type LogEvents struct{ Log *slog.Logger }

// Overtaken implements Events.
func (l LogEvents) Overtaken(ctx context.Context, e Overtaken) {
	passed := make([]string, len(e.Passed))
	for i, p := range e.Passed {
		passed[i] = p.ParticipantID.String()
	}
	l.Log.InfoContext(ctx, "overtaken", "tenant_id", e.TenantID, "board_id", e.BoardID,
		"challenge_id", e.ChallengeID, "by", e.By, "by_rank", e.ByRank, "passed", passed)
}
