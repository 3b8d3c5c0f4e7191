// Package event receives the CRM, marketing and support events, stores each
// one once, applies corrections, and publishes a change feed that every
// derived number (KPI roll-ups, mission progress, points) is computed from.
//
// Identity is (source, external id). A higher revision replaces the stored
// version, a retracted revision withdraws it, and a deal.reopened withdraws
// the earlier win or loss of the same opportunity. Each time a version starts
// or stops counting, the feed gets a +1 or -1 change for it, so consumers add
// and take back exactly the same contribution.
package event

import (
	"time"

	"github.com/google/uuid"
)

// Type is a normalised event type, such as "deal.won".
type Type string

// Event types. The fields each requires are listed in event.proto and checked
// by Validate.
const (
	LeadCreated             Type = "lead.created"
	LeadQualified           Type = "lead.qualified"
	LeadContacted           Type = "lead.contacted"
	OpportunityCreated      Type = "opportunity.created"
	OpportunityStageChanged Type = "opportunity.stage_changed"
	DealWon                 Type = "deal.won"
	DealLost                Type = "deal.lost"
	DealReopened            Type = "deal.reopened"
	MeetingScheduled        Type = "meeting.scheduled"
	MeetingHeld             Type = "meeting.held"
	MeetingNoShow           Type = "meeting.no_show"
	CallLogged              Type = "call.logged"
	QuoteSent               Type = "quote.sent"
	TicketOpened            Type = "ticket.opened"
	TicketResolved          Type = "ticket.resolved"
	CustomerRenewed         Type = "customer.renewed"
	CustomerChurned         Type = "customer.churned"
	NPSAnswered             Type = "nps.answered"
	SatisfactionAnswered    Type = "satisfaction.answered"
	TrainingCompleted       Type = "training.completed"
	ContentUsed             Type = "content.used"
	MarketingSpend          Type = "marketing.spend"
)

// Deal kinds.
const (
	KindNew     = "new"
	KindUpsell  = "upsell"
	KindRenewal = "renewal"
)

// Event is one version of a source event. Optional times are zero when
// absent; Score is nil when absent.
type Event struct {
	TenantID  uuid.UUID
	VersionID uuid.UUID

	Source     string
	ExternalID string
	Revision   int64
	Type       Type
	OccurredAt time.Time
	Retracted  bool

	// UserID is the rep (resolved from RepExternalID when the source named
	// the rep by CRM id); uuid.Nil when the event has no rep.
	UserID        uuid.UUID
	RepExternalID string
	// TeamIDs are the teams the event counts for: its rep's teams when the
	// event was first received.
	TeamIDs []uuid.UUID

	AccountID     string
	OpportunityID string
	LeadID        string
	// Amount and GrossMargin are in minor units of the company's currency.
	Amount               int64
	GrossMargin          int64
	Currency             string
	Segment              string
	Product              string
	DealKind             string
	OpportunityCreatedAt time.Time
	Stage                string
	FromStage            string
	StageEnteredAt       time.Time
	LeadCreatedAt        time.Time
	TicketOpenedAt       time.Time
	Score                *int32
	DiscoveryCompleted   bool
	ContentID            string
	Channel              string
	Attributes           map[string]string

	ReceivedAt time.Time
}

// Key identifies a source event across its versions.
type Key struct {
	Source, ExternalID string
}

// Key returns the event's identity.
func (e Event) Key() Key { return Key{e.Source, e.ExternalID} }

// IsClosing reports whether the event closes a deal (won or lost).
func (e Event) IsClosing() bool { return e.Type == DealWon || e.Type == DealLost }

// CycleDays is the closing time of a won or lost deal, in days (fractional),
// from the opportunity's creation.
func (e Event) CycleDays() float64 {
	return e.OccurredAt.Sub(e.OpportunityCreatedAt).Hours() / 24
}

// Change is one entry of the feed: a version started (+1) or stopped (-1)
// counting.
type Change struct {
	Seq   int64
	Sign  int
	Event Event
}
