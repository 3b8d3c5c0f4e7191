package event

import (
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/rallye"
)

// requirement lists what a type needs beyond the common fields.
type requirement struct {
	rep, opportunity, lead, account, amount, dealKind, oppCreated bool
	stages, leadCreated, ticketOpened, content, channel           bool
	// scoreMin..scoreMax bounds Score when scoreMax > 0.
	scoreMin, scoreMax int32
}

var requirements = map[Type]requirement{
	LeadCreated:             {lead: true},
	LeadQualified:           {lead: true},
	LeadContacted:           {lead: true, leadCreated: true, rep: true},
	OpportunityCreated:      {opportunity: true, rep: true},
	OpportunityStageChanged: {opportunity: true, rep: true, stages: true},
	DealWon:                 {opportunity: true, rep: true, amount: true, dealKind: true, oppCreated: true},
	DealLost:                {opportunity: true, rep: true, oppCreated: true},
	DealReopened:            {opportunity: true},
	MeetingScheduled:        {rep: true},
	MeetingHeld:             {rep: true},
	MeetingNoShow:           {rep: true},
	CallLogged:              {rep: true},
	QuoteSent:               {rep: true, opportunity: true},
	TicketOpened:            {account: true},
	TicketResolved:          {account: true, ticketOpened: true},
	CustomerRenewed:         {account: true, amount: true},
	CustomerChurned:         {account: true, amount: true},
	NPSAnswered:             {scoreMin: 0, scoreMax: 10},
	SatisfactionAnswered:    {scoreMin: 1, scoreMax: 5},
	TrainingCompleted:       {rep: true, content: true},
	ContentUsed:             {rep: true, content: true},
	MarketingSpend:          {amount: true, channel: true},
}

// Types lists every event type.
func Types() []Type {
	out := make([]Type, 0, len(requirements))
	for t := range requirements {
		out = append(out, t)
	}
	return out
}

// Validate checks the rules that depend on the type (the proto rules have
// checked each field's shape). hasAmount tells whether an amount was sent.
// Field names are those of SalesEvent.
func Validate(e Event, hasAmount bool, currency string) error {
	req, ok := requirements[e.Type]
	if !ok {
		return rallye.Invalid("type", "%q is not an event type", e.Type)
	}
	if e.OccurredAt.IsZero() {
		return rallye.Invalid("occurred_at", "is required")
	}
	if e.UserID != uuid.Nil && e.RepExternalID != "" {
		return rallye.Invalid("rep_external_id", "name the rep by rep_id or by rep_external_id, not both")
	}
	missing := func(field string) error { return rallye.Invalid(field, "is required for %s", e.Type) }
	switch {
	case req.rep && e.UserID == uuid.Nil && e.RepExternalID == "":
		return missing("rep_external_id")
	case req.opportunity && e.OpportunityID == "":
		return missing("opportunity_id")
	case req.lead && e.LeadID == "":
		return missing("lead_id")
	case req.account && e.AccountID == "":
		return missing("account_id")
	case req.amount && !hasAmount:
		return missing("amount")
	case req.dealKind && e.DealKind == "":
		return missing("deal_kind")
	case req.oppCreated && e.OpportunityCreatedAt.IsZero():
		return missing("opportunity_created_at")
	case req.stages && e.Stage == "":
		return missing("stage")
	case req.stages && e.FromStage == "":
		return missing("from_stage")
	case req.stages && e.StageEnteredAt.IsZero():
		return missing("stage_entered_at")
	case req.leadCreated && e.LeadCreatedAt.IsZero():
		return missing("lead_created_at")
	case req.ticketOpened && e.TicketOpenedAt.IsZero():
		return missing("ticket_opened_at")
	case req.content && e.ContentID == "":
		return missing("content_id")
	case req.channel && e.Channel == "":
		return missing("channel")
	case req.scoreMax > 0 && e.Score == nil:
		return missing("score")
	}
	if req.scoreMax > 0 && (*e.Score < req.scoreMin || *e.Score > req.scoreMax) {
		return rallye.Invalid("score", "must be between %d and %d for %s", req.scoreMin, req.scoreMax, e.Type)
	}
	if hasAmount && e.Currency != currency {
		return rallye.Invalid("amount.currency", "must be the company's currency, %s", currency)
	}
	if e.Amount < 0 {
		return rallye.Invalid("amount.minor_units", "must not be negative")
	}
	for _, earlier := range []struct {
		field string
		at    time.Time
	}{
		{"opportunity_created_at", e.OpportunityCreatedAt},
		{"stage_entered_at", e.StageEnteredAt},
		{"lead_created_at", e.LeadCreatedAt},
		{"ticket_opened_at", e.TicketOpenedAt},
	} {
		if earlier.at.After(e.OccurredAt) {
			return rallye.Invalid(earlier.field, "must not be after occurred_at")
		}
	}
	return nil
}
