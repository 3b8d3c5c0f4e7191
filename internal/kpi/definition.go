// Package kpi defines a company's KPIs and computes them from the event
// change feed.
//
// A KPI definition (key, names, unit, level, direction, owner, formula,
// scope, periods) is versioned: a period is read with the version in force
// at its end, so changing a formula today does not rewrite last quarter.
// Each version compiles into base measures (count and sum, value
// distributions, distinct keys) identified by a hash of their definition and
// shared between KPIs. A feed consumer rolls every change up into signed
// contributions per measure, scope (company, team set, person), breakdown
// value and local day (and month), so reads never scan raw events; ratios,
// averages, medians and composites are evaluated at read time from those
// roll-ups.
//
// On top of values the package keeps targets with thresholds, the status and
// projection they give, alerts raised once per crossing, and action plans
// evaluated at their deadline.
package kpi

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Unit is what a KPI's values measure.
type Unit string

// Units. Percent values are fractions (0.3 is 30 %); money is in major units
// of the company's currency.
const (
	UnitCount   Unit = "count"
	UnitMoney   Unit = "money"
	UnitPercent Unit = "percent"
	UnitDays    Unit = "days"
	UnitHours   Unit = "hours"
	UnitScore   Unit = "score"
)

// Direction tells whether higher or lower values are better.
type Direction string

// Directions.
const (
	HigherIsBetter Direction = "higher"
	LowerIsBetter  Direction = "lower"
)

// Aggregation is how a KPI turns events into a value.
type Aggregation string

// Aggregations.
const (
	// Count counts the selected events.
	Count Aggregation = "count"
	// Sum adds the selection's value.
	Sum Aggregation = "sum"
	// Average divides the sum of the value by the number of events.
	Average Aggregation = "average"
	// Ratio divides the selection (a count, a sum or a distinct count) by
	// the denominator selection.
	Ratio Aggregation = "ratio"
	// Median is the median of the value (the mean of the two middle values
	// for an even count).
	Median Aggregation = "median"
	// Percentile is a percentile of the value, interpolated linearly
	// between the closest ranks.
	Percentile Aggregation = "percentile"
	// Distinct counts distinct keys (reps, accounts...).
	Distinct Aggregation = "distinct"
	// Balance is a stock: the sum of the value over all time up to the end
	// of the period (or today for the current period), such as open
	// opportunities.
	Balance Aggregation = "balance"
	// Composite is a CEL expression over other KPIs' values, read for the
	// same scope and period.
	Composite Aggregation = "composite"
)

// Dimension is an event field a KPI can be broken down by.
type Dimension string

// Dimensions.
const (
	NoDimension   Dimension = ""
	DimSegment    Dimension = "segment"
	DimProduct    Dimension = "product"
	DimStage      Dimension = "stage"
	DimFromStage  Dimension = "from_stage"
	DimChannel    Dimension = "channel"
	DimDealKind   Dimension = "deal_kind"
	DimSource     Dimension = "source"
	DimContent    Dimension = "content_id"
	DimEventType  Dimension = "type"
	maxDimensions           = 200 // breakdown values kept in a read
)

// MaxBreakdownValues is how many values of its breakdown a KPI's read keeps
// (the first ones in order of value).
const MaxBreakdownValues = maxDimensions

var dimensions = []Dimension{DimSegment, DimProduct, DimStage, DimFromStage, DimChannel, DimDealKind, DimSource, DimContent, DimEventType}

// DistinctField is what a distinct count counts.
type DistinctField string

// Distinct fields.
const (
	DistinctRep         DistinctField = "rep"
	DistinctAccount     DistinctField = "account"
	DistinctOpportunity DistinctField = "opportunity"
	DistinctLead        DistinctField = "lead"
	DistinctContent     DistinctField = "content"
)

var distinctFields = []DistinctField{DistinctRep, DistinctAccount, DistinctOpportunity, DistinctLead, DistinctContent}

// Derived event types: the roll-up consumer derives them from each
// opportunity's counted events (see opportunity.go), and KPI selections may
// use them like the types sources send.
const (
	// PipelineEntered: an opportunity was created (it is open).
	PipelineEntered event.Type = "pipeline.entered"
	// PipelineLeft: an open opportunity was won or lost.
	PipelineLeft event.Type = "pipeline.left"
	// RiskEntered: an open opportunity has had no activity (creation, stage
	// change, quote) for RiskAfter.
	RiskEntered event.Type = "risk.entered"
	// RiskLeft: an at-risk opportunity had activity again, or closed.
	RiskLeft event.Type = "risk.left"
)

// DerivedTypes lists the derived event types.
var DerivedTypes = []event.Type{PipelineEntered, PipelineLeft, RiskEntered, RiskLeft}

// Text is a user-facing text in French and English.
type Text struct {
	FR string `json:"fr"`
	EN string `json:"en"`
}

// Selection picks events and what each contributes.
type Selection struct {
	// Types are the event types considered (required): a measure is only
	// evaluated for events of these types.
	Types []event.Type `json:"types"`
	// Filter is a CEL condition over the event (event.CompileFilter).
	Filter string `json:"filter,omitempty"`
	// Value is a CEL number per event (event.CompileValue); empty counts
	// each event as 1.
	Value string `json:"value,omitempty"`
	// Distinct, when set, counts distinct keys instead (distinct counts and
	// the sides of a ratio).
	Distinct DistinctField `json:"distinct,omitempty"`
}

// Formula is how a KPI is computed.
type Formula struct {
	Aggregation Aggregation `json:"aggregation"`
	// Events is the selection (the numerator of a ratio).
	Events Selection `json:"events"`
	// Denominator is the ratio's denominator.
	Denominator *Selection `json:"denominator,omitempty"`
	// Percentile is in (0, 1) for Percentile.
	Percentile float64 `json:"percentile,omitempty"`
	// Expression is the CEL expression of a Composite, over KPI keys.
	Expression string `json:"expression,omitempty"`
	// Breakdown also computes the KPI per value of this event field.
	Breakdown Dimension `json:"breakdown,omitempty"`
}

// Scope narrows the events a KPI counts.
type Scope struct {
	// Filter is a CEL condition added to every selection.
	Filter string `json:"filter,omitempty"`
	// Segment keeps the events of one customer segment.
	Segment string `json:"segment,omitempty"`
	// TeamID limits the KPI to a team and its sub-teams: its company value
	// is that team's.
	TeamID uuid.UUID `json:"team_id,omitzero"`
}

// Definition is one version of a KPI.
type Definition struct {
	Key         string    `json:"key"`
	Name        Text      `json:"name"`
	Description Text      `json:"description"`
	Unit        Unit      `json:"unit"`
	Level       int       `json:"level"`
	Direction   Direction `json:"direction"`
	OwnerID     uuid.UUID `json:"owner_id"`
	Formula     Formula   `json:"formula"`
	Scope       Scope     `json:"scope"`
	// Periods the KPI is read over; the first is its default.
	Periods []period.Kind `json:"periods"`
}

// KPI is a KPI with its versions, oldest first.
type KPI struct {
	ID        uuid.UUID
	Key       string
	Archived  bool
	Versions  []Version
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Version is one version of a KPI's definition.
type Version struct {
	Number        int
	EffectiveFrom time.Time
	Definition    Definition
	CreatedBy     uuid.UUID
	CreatedAt     time.Time
}

// Current returns the newest version.
func (k KPI) Current() Version { return k.Versions[len(k.Versions)-1] }

// VersionFor returns the version a period is read with: the newest one in
// force before the period ends, or the first one for periods that ended
// before the KPI existed (its history is computed with its first formula).
func (k KPI) VersionFor(end time.Time) Version {
	for i := len(k.Versions) - 1; i > 0; i-- {
		if k.Versions[i].EffectiveFrom.Before(end) {
			return k.Versions[i]
		}
	}
	return k.Versions[0]
}

// Cumulative reports whether values add up over a period (counts and
// sums), so that the period-end value is projected from the pace so far.
func (a Aggregation) Cumulative() bool { return a == Count || a == Sum }

var keyPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{1,62}$`)

// validate checks a definition's own rules; composites are checked against
// the other KPIs by the caller. Fields are named as in KpiDefinition with
// prefix.
func (d *Definition) validate(prefix string) error {
	f := func(name string) string { return prefix + name }
	if d.Key == "" {
		return rallye.Invalid(f("key"), "is required")
	}
	if !keyPattern.MatchString(d.Key) {
		return rallye.Invalid(f("key"), "must be lower-case letters, digits and underscores, starting with a letter (2 to 63)")
	}
	if strings.TrimSpace(d.Name.FR) == "" {
		return rallye.Invalid(f("name.fr"), "is required")
	}
	if strings.TrimSpace(d.Name.EN) == "" {
		return rallye.Invalid(f("name.en"), "is required")
	}
	switch d.Unit {
	case UnitCount, UnitMoney, UnitPercent, UnitDays, UnitHours, UnitScore:
	default:
		return rallye.Invalid(f("unit"), "is required")
	}
	if d.Level < 1 || d.Level > 3 {
		return rallye.Invalid(f("level"), "must be 1, 2 or 3")
	}
	if d.Direction != HigherIsBetter && d.Direction != LowerIsBetter {
		return rallye.Invalid(f("direction"), "is required")
	}
	if len(d.Periods) == 0 {
		return rallye.Invalid(f("periods"), "name at least one period")
	}
	for i, k := range d.Periods {
		if !k.Valid() {
			return rallye.Invalid(f(fmt.Sprintf("periods[%d]", i)), "%q is not a period", k)
		}
		if slices.Index(d.Periods, k) != i {
			return rallye.Invalid(f(fmt.Sprintf("periods[%d]", i)), "%s is listed twice", k)
		}
	}
	if d.Scope.Segment != "" && len(d.Scope.Segment) > 100 {
		return rallye.Invalid(f("scope.segment"), "is too long")
	}
	if _, err := event.CompileFilter(f("scope.filter"), d.Scope.Filter); err != nil {
		return err
	}
	return d.Formula.validate(f("formula."))
}

func (fm *Formula) validate(prefix string) error {
	f := func(name string) string { return prefix + name }
	if fm.Breakdown != NoDimension && !slices.Contains(dimensions, fm.Breakdown) {
		return rallye.Invalid(f("breakdown"), "%q is not a dimension", fm.Breakdown)
	}
	switch fm.Aggregation {
	case Composite:
		if strings.TrimSpace(fm.Expression) == "" {
			return rallye.Invalid(f("expression"), "is required for a composite")
		}
		if fm.Breakdown != NoDimension {
			return rallye.Invalid(f("breakdown"), "a composite has no breakdown")
		}
		return nil
	case Count, Distinct:
	case Sum, Average, Median, Balance:
		if fm.Events.Value == "" {
			return rallye.Invalid(f("events.value"), "is required for %s", fm.Aggregation)
		}
	case Percentile:
		if fm.Events.Value == "" {
			return rallye.Invalid(f("events.value"), "is required for %s", fm.Aggregation)
		}
		if fm.Percentile <= 0 || fm.Percentile >= 1 {
			return rallye.Invalid(f("percentile"), "must be between 0 and 1, exclusive")
		}
	case Ratio:
		if fm.Denominator == nil {
			return rallye.Invalid(f("denominator"), "is required for a ratio")
		}
		if err := fm.Denominator.validate(f("denominator."), true); err != nil {
			return err
		}
	default:
		return rallye.Invalid(f("aggregation"), "is required")
	}
	if fm.Expression != "" {
		return rallye.Invalid(f("expression"), "is only for composites")
	}
	if fm.Aggregation != Ratio && fm.Denominator != nil {
		return rallye.Invalid(f("denominator"), "is only for ratios")
	}
	if fm.Aggregation == Distinct && fm.Events.Distinct == "" {
		return rallye.Invalid(f("events.distinct"), "is required for a distinct count")
	}
	if fm.Aggregation != Distinct && fm.Aggregation != Ratio && fm.Events.Distinct != "" {
		return rallye.Invalid(f("events.distinct"), "is only for distinct counts and ratios")
	}
	if fm.Aggregation == Count && fm.Events.Value != "" {
		return rallye.Invalid(f("events.value"), "a count has no value; use sum")
	}
	return fm.Events.validate(f("events."), fm.Aggregation == Ratio || fm.Aggregation == Distinct)
}

func (s *Selection) validate(prefix string, distinctAllowed bool) error {
	if len(s.Types) == 0 {
		return rallye.Invalid(prefix+"types", "name at least one event type")
	}
	known := append(event.Types(), DerivedTypes...)
	for i, t := range s.Types {
		if !slices.Contains(known, t) {
			return rallye.Invalid(fmt.Sprintf("%stypes[%d]", prefix, i), "%q is not an event type", t)
		}
	}
	if _, err := event.CompileFilter(prefix+"filter", s.Filter); err != nil {
		return err
	}
	if s.Value != "" {
		if _, err := event.CompileValue(prefix+"value", s.Value); err != nil {
			return err
		}
	}
	if s.Distinct != "" {
		if !distinctAllowed {
			return rallye.Invalid(prefix+"distinct", "is only for distinct counts and ratios")
		}
		if !slices.Contains(distinctFields, s.Distinct) {
			return rallye.Invalid(prefix+"distinct", "%q is not a distinct field", s.Distinct)
		}
		if s.Value != "" {
			return rallye.Invalid(prefix+"value", "a distinct count has no value")
		}
	}
	return nil
}
