package event

import (
	"strings"
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

// EarliestTime is the earliest time an event may carry (occurred_at and the
// other times of an event): anything older is a placeholder or a unit
// mistake (0001-01-01, a zero Unix time), not sales history.
var EarliestTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultMaxFuture is how far ahead of the server's clock occurred_at may be
// (clock drift between the CRM and Rallye); RALLYE_EVENT_MAX_FUTURE changes
// it. A later event would move its source's watermark into the future, and
// the source would count as having reached the end of every challenge.
const DefaultMaxFuture = 24 * time.Hour

// MaxMinorUnits bounds amount and gross_margin: 10^14 minor units, a
// trillion in the currency's major unit. Every amount below it stays exact
// in float64 (KPI sums, CEL's amount in major units) and a rule's points stay
// far from int64 limits, so no larger value can turn into a silent zero
// downstream.
const MaxMinorUnits int64 = 100_000_000_000_000

// Bounds are the limits of one ingestion call that depend on its time.
type Bounds struct {
	// Latest is the latest occurred_at accepted: the server's clock plus
	// MaxFuture.
	Latest    time.Time
	MaxFuture time.Duration
}

// BoundsAt returns the bounds of a call made at now.
func BoundsAt(now time.Time, maxFuture time.Duration) Bounds {
	return Bounds{Latest: now.Add(maxFuture), MaxFuture: maxFuture}
}

// TooEarly is the error of a time before EarliestTime, for field. Transports
// use it for a time they received but that reads as zero (0001-01-01), so
// that the message says what is wrong instead of "is required".
func TooEarly(field string, t time.Time) error {
	return rallye.Invalid(field, "%s is before %s, the earliest time accepted", t.UTC().Format(time.RFC3339), EarliestTime.Format(time.RFC3339))
}

// Validate checks the rules that depend on the type and on the time of the
// call (the proto rules have checked each field's shape). hasAmount tells
// whether an amount was sent. Field names are those of SalesEvent. A zero
// time is an absent one.
func Validate(e Event, hasAmount bool, currency string, b Bounds) error {
	req, ok := requirements[e.Type]
	if !ok {
		return rallye.Invalid("type", "%q is not an event type", e.Type)
	}
	switch {
	case e.OccurredAt.IsZero():
		return rallye.Invalid("occurred_at", "is required")
	case e.OccurredAt.Before(EarliestTime):
		return TooEarly("occurred_at", e.OccurredAt)
	case e.OccurredAt.After(b.Latest):
		return rallye.Invalid("occurred_at", "%s is more than %s ahead of the server's clock: send events once they happened (up to %s of clock difference is tolerated)",
			e.OccurredAt.UTC().Format(time.RFC3339), duration(b.MaxFuture), duration(b.MaxFuture))
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
	if e.Amount > MaxMinorUnits {
		return rallye.Invalid("amount.minor_units", "must be at most %d (a trillion in major units)", MaxMinorUnits)
	}
	if e.GrossMargin > MaxMinorUnits || e.GrossMargin < -MaxMinorUnits {
		return rallye.Invalid("gross_margin.minor_units", "must be between -%d and %d (a trillion in major units)", MaxMinorUnits, MaxMinorUnits)
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
		switch {
		case earlier.at.IsZero():
		case earlier.at.Before(EarliestTime):
			return TooEarly(earlier.field, earlier.at)
		case earlier.at.After(e.OccurredAt):
			return rallye.Invalid(earlier.field, "must not be after occurred_at")
		}
	}
	return nil
}

// duration writes d for people: "24h", "90m", "1h30m".
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
