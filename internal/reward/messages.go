package reward

import (
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/outbox"
)

// The domain events this package publishes in the outbox, each appended in
// the transaction of the change it announces (see internal/outbox and the
// README's "Domain events"). Notifications and analytics consume them; this
// package never knows them.
const (
	// MessageBadgeEarned: a person earned a badge (once per badge).
	// Payload BadgeEarned; subjects: the person, the badge.
	MessageBadgeEarned outbox.Kind = "reward.badge_earned"
	// MessageLevelReached: a person's lifetime points reached a level for
	// the first time. Payload LevelReached; subjects: the person.
	MessageLevelReached outbox.Kind = "reward.level_reached"
	// MessagePointsGranted: points granted by a manager or received with
	// kudos. Payload PointsGranted; subjects: the person.
	MessagePointsGranted outbox.Kind = "reward.points_granted"
	// MessageKudosSent: kudos sent. Payload KudosSent; subjects: the
	// recipient, the sender.
	MessageKudosSent outbox.Kind = "reward.kudos_sent"
	// MessageRedemptionChanged: a redemption was requested or changed
	// state. Payload RedemptionChanged; subjects: the person, the item.
	MessageRedemptionChanged outbox.Kind = "reward.redemption_changed"
	// MessageStreakAtRisk: a person's streak breaks tonight unless they
	// act (the hook notifications use). Payload StreakAtRisk; subjects: the
	// person.
	MessageStreakAtRisk outbox.Kind = "reward.streak_at_risk"
)

// BadgeEarned is the payload of reward.badge_earned.
type BadgeEarned struct {
	UserID  uuid.UUID `json:"user_id"`
	BadgeID uuid.UUID `json:"badge_id"`
	Key     string    `json:"key"`
	Name    Text      `json:"name"`
	IconURL string    `json:"icon_url,omitempty"`
	// Source is "criterion", or the grant key of a challenge reward.
	Source   string    `json:"source"`
	EarnedAt time.Time `json:"earned_at"`
}

// LevelReached is the payload of reward.level_reached.
type LevelReached struct {
	UserID   uuid.UUID `json:"user_id"`
	Level    int       `json:"level"`
	Name     Text      `json:"name"`
	Lifetime int64     `json:"lifetime"`
}

// PointsGranted is the payload of reward.points_granted.
type PointsGranted struct {
	UserID uuid.UUID `json:"user_id"`
	Points int64     `json:"points"`
	// Kind is "manual" or "kudos".
	Kind   string    `json:"kind"`
	Reason string    `json:"reason,omitempty"`
	ByID   uuid.UUID `json:"by_id"`
	By     string    `json:"by"`
}

// KudosSent is the payload of reward.kudos_sent.
type KudosSent struct {
	KudosID     uuid.UUID `json:"kudos_id"`
	SenderID    uuid.UUID `json:"sender_id"`
	Sender      string    `json:"sender"`
	RecipientID uuid.UUID `json:"recipient_id"`
	Message     string    `json:"message"`
	Points      int64     `json:"points"`
	WinID       uuid.UUID `json:"win_id,omitzero"`
}

// RedemptionChanged is the payload of reward.redemption_changed.
type RedemptionChanged struct {
	RedemptionID uuid.UUID `json:"redemption_id"`
	ItemID       uuid.UUID `json:"item_id"`
	Item         Text      `json:"item"`
	UserID       uuid.UUID `json:"user_id"`
	// From is "" for a new request.
	From RedemptionState `json:"from,omitempty"`
	To   RedemptionState `json:"to"`
	Cost int64           `json:"cost"`
	// Refunded: the points went back to the wallet.
	Refunded bool      `json:"refunded,omitempty"`
	ByID     uuid.UUID `json:"by_id,omitzero"`
	By       string    `json:"by,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// StreakAtRisk is the payload of reward.streak_at_risk.
type StreakAtRisk struct {
	UserID  uuid.UUID `json:"user_id"`
	RuleID  uuid.UUID `json:"rule_id"`
	Key     string    `json:"key"`
	Name    Text      `json:"name"`
	Current int       `json:"current"`
	// Missing is the activity still needed today.
	Missing int `json:"missing"`
	// Day is the person's local day (YYYY-MM-DD).
	Day string `json:"day"`
}
