package challenge

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/outbox"
)

// The domain events this package publishes in the outbox (internal/outbox),
// each appended in the transaction of the change it announces. Consumers
// (rewards, notifications, analytics) decode the payload types below; this
// package never knows them. A kind never changes meaning: a new shape is a
// new kind.
const (
	// MessagePublished: a challenge was published (scheduled). Payload
	// Launched; subjects: the challenge.
	MessagePublished outbox.Kind = "challenge.published"
	// MessageStarted: a challenge started. Payload Launched with its
	// participants; subjects: the challenge, then the participants.
	MessageStarted outbox.Kind = "challenge.started"
	// MessageCancelled: a challenge was cancelled (its points taken back).
	// Payload Cancelled; subjects: the challenge.
	MessageCancelled outbox.Kind = "challenge.cancelled"
	// MessageFinal: a challenge's results became final, once. Payload
	// Final; subjects: the challenge. One MessageResult per participant
	// follows in the same transaction.
	MessageFinal outbox.Kind = "challenge.final"
	// MessageResult: a participant's final result with the rewards granted
	// (exactly once per grant key). Payload Result; subjects: the person,
	// the challenge.
	MessageResult outbox.Kind = "challenge.result"
	// MessageMissionCompleted and MessageMissionUncompleted: a mission's
	// completion for a person (each member, for team missions), and its
	// taking back by a correction. Payload MissionCompletion; subjects: the
	// person, the challenge, the mission.
	MessageMissionCompleted   outbox.Kind = "mission.completed"
	MessageMissionUncompleted outbox.Kind = "mission.uncompleted"
	// MessageSubmissionSubmitted, MessageSubmissionApproved and
	// MessageSubmissionRejected: a manual mission's submission and its
	// review. Payload SubmissionEvent; subjects: the rep, the challenge.
	MessageSubmissionSubmitted outbox.Kind = "submission.submitted"
	MessageSubmissionApproved  outbox.Kind = "submission.approved"
	MessageSubmissionRejected  outbox.Kind = "submission.rejected"
)

// Launched is the payload of challenge.published and challenge.started.
type Launched struct {
	ChallengeID uuid.UUID   `json:"challenge_id"`
	Challenge   Text        `json:"challenge"`
	Kind        Kind        `json:"kind"`
	StartsAt    time.Time   `json:"starts_at"`
	EndsAt      time.Time   `json:"ends_at"`
	TeamIDs     []uuid.UUID `json:"team_ids,omitempty"`
	// Participants: challenge.started only (enrolled at the start).
	Participants []uuid.UUID `json:"participants,omitempty"`
}

// Cancelled is the payload of challenge.cancelled.
type Cancelled struct {
	ChallengeID uuid.UUID `json:"challenge_id"`
	Challenge   Text      `json:"challenge"`
	CancelledAt time.Time `json:"cancelled_at"`
}

// Final is the payload of challenge.final.
type Final struct {
	ChallengeID  uuid.UUID `json:"challenge_id"`
	Challenge    Text      `json:"challenge"`
	Kind         Kind      `json:"kind"`
	Mode         Mode      `json:"mode"`
	EndedAt      time.Time `json:"ended_at"`
	FinalAt      time.Time `json:"final_at"`
	Participants int       `json:"participants"`
}

// Result is the payload of challenge.result: one participant's final place.
type Result struct {
	ChallengeID uuid.UUID `json:"challenge_id"`
	Challenge   Text      `json:"challenge"`
	Kind        Kind      `json:"kind"`
	UserID      uuid.UUID `json:"user_id"`
	TeamID      uuid.UUID `json:"team_id,omitzero"`
	// Rank in the challenge's format (shared by ties, then Tied); 0 when
	// unranked.
	Rank   int   `json:"rank"`
	Tied   bool  `json:"tied,omitempty"`
	Points int64 `json:"points"`
	// Participants is how many took part.
	Participants      int       `json:"participants"`
	MissionsCompleted int       `json:"missions_completed"`
	MissionsTotal     int       `json:"missions_total"`
	FinalAt           time.Time `json:"final_at"`
	// Rewards granted to the participant (to be delivered by the rewards
	// area, each exactly once by its key).
	Rewards []GrantedReward `json:"rewards,omitempty"`
}

// GrantedReward is a reward granted at the end of a challenge.
type GrantedReward struct {
	// Key is the grant's key, unique per company.
	Key  string     `json:"key"`
	Kind RewardKind `json:"kind"`
	// Rank is the rank rewarded (the team's in team mode); 0 for a
	// threshold reward.
	Rank int `json:"rank,omitempty"`
	// Points are the bonus points; Badge the key of the badge awarded
	// ("" for none).
	Points int64  `json:"points"`
	Badge  string `json:"badge,omitempty"`
	Label  Text   `json:"label"`
}

// MissionCompletion is the payload of mission.completed and
// mission.uncompleted.
type MissionCompletion struct {
	ChallengeID uuid.UUID `json:"challenge_id"`
	Challenge   Text      `json:"challenge"`
	MissionID   uuid.UUID `json:"mission_id"`
	Mission     Text      `json:"mission"`
	UserID      uuid.UUID `json:"user_id"`
	// Ordinal counts the person's completions of the mission: a mission
	// completed, taken back and completed again has ordinal 2.
	Ordinal int   `json:"ordinal"`
	Points  int64 `json:"points"`
	Manual  bool  `json:"manual,omitempty"`
	// At is when the mission was completed (event time, or submission time
	// for manual missions).
	At time.Time `json:"at"`
}

// SubmissionEvent is the payload of the submission messages.
type SubmissionEvent struct {
	SubmissionID uuid.UUID `json:"submission_id"`
	ChallengeID  uuid.UUID `json:"challenge_id"`
	Challenge    Text      `json:"challenge"`
	MissionID    uuid.UUID `json:"mission_id"`
	Mission      Text      `json:"mission"`
	UserID       uuid.UUID `json:"user_id"`
	// ReviewerID and Reviewer (display name): approved or rejected only.
	ReviewerID uuid.UUID `json:"reviewer_id,omitzero"`
	Reviewer   string    `json:"reviewer,omitempty"`
	Note       string    `json:"note,omitempty"`
	At         time.Time `json:"at"`
}

// Cause is the JSON this package writes in the points ledger's cause column
// (leaderboard.Entry.Cause): what the wallet's history says about an entry.
type Cause struct {
	ChallengeID uuid.UUID `json:"challenge_id"`
	Challenge   Text      `json:"challenge"`
	// Mission: completions and their taking back.
	MissionID uuid.UUID `json:"mission_id,omitzero"`
	Mission   *Text     `json:"mission,omitempty"`
	// ApprovedBy: a manual mission's reviewer (display name).
	ApprovedBy string `json:"approved_by,omitempty"`
	// Rules: the labels of the scoring rules an event matched.
	Rules     []Text `json:"rules,omitempty"`
	EventType string `json:"event_type,omitempty"`
	// Undo says what a correction takes back: "mission" or "event";
	// Cancelled that it is the challenge's cancellation.
	Undo      string `json:"undo,omitempty"`
	Cancelled bool   `json:"cancelled,omitempty"`
}

// causeOf returns the base cause of a challenge's entries.
func causeOf(c *Challenge) Cause {
	return Cause{ChallengeID: c.ID, Challenge: c.Definition.Name}
}

// launched announces a challenge's publication or start.
func (s *Service) launched(ctx context.Context, tx pgx.Tx, c *Challenge, kind outbox.Kind) error {
	p := Launched{ChallengeID: c.ID, Challenge: c.Definition.Name, Kind: c.Definition.Kind,
		StartsAt: c.StartsAt, EndsAt: c.EndsAt, TeamIDs: c.TeamIDs}
	subjects := []uuid.UUID{c.ID}
	if kind == MessageStarted {
		rows, err := tx.Query(ctx, `SELECT user_id FROM challenge_enrollments WHERE tenant_id = $1 AND challenge_id = $2
			ORDER BY user_id`, c.TenantID, c.ID)
		if err != nil {
			return fmt.Errorf("read participants: %w", err)
		}
		if p.Participants, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID]); err != nil {
			return fmt.Errorf("read participants: %w", err)
		}
		if len(p.Participants) < outbox.MaxSubjects {
			subjects = append(subjects, p.Participants...)
		}
	}
	return outbox.Append(ctx, tx, outbox.Message{TenantID: c.TenantID, Kind: kind,
		Key: fmt.Sprintf("challenge:%s:%s:%d", c.ID, kind, c.Version), Subjects: subjects, Payload: p, OccurredAt: s.now()})
}
