package challenge

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Text is a user-facing text in French and English.
type Text struct {
	FR string `json:"fr,omitempty"`
	EN string `json:"en,omitempty"`
}

// In returns the text in locale ("fr" or "en"), falling back to the other
// language when that one is empty.
func (t Text) In(locale string) string {
	if locale == "en" && t.EN != "" || t.FR == "" {
		return t.EN
	}
	return t.FR
}

// Kind is what a challenge is for.
type Kind string

// Challenge kinds.
const (
	KindOnboarding  Kind = "onboarding"
	KindUpsell      Kind = "upsell"
	KindProspecting Kind = "prospecting"
	KindCustom      Kind = "custom"
)

// Mode says whether people play alone or for their team.
type Mode string

// Modes.
const (
	ModeIndividual Mode = "individual"
	// ModeTeam: points also go to team boards, and team missions count the
	// events of the whole team.
	ModeTeam Mode = "team"
)

// Format is how a challenge is won.
type Format string

// Formats.
const (
	// FormatLeaderboard ranks participants on points.
	FormatLeaderboard Format = "leaderboard"
	// FormatRace: the first to reach RaceTarget points (by event time, ties
	// by arrival) wins; the others rank by points.
	FormatRace Format = "race"
	// FormatTeamBattle ranks teams on their total or their average per
	// member (TeamMetric).
	FormatTeamBattle Format = "team_battle"
	// FormatDuels: the system pairs participants of similar strength at the
	// start; each wins or loses their duel.
	FormatDuels Format = "duels"
	// FormatLeague ranks participants on the percentage of their own target,
	// so that juniors and seniors compete fairly.
	FormatLeague Format = "league"
)

// Enrollment says how people come to take part.
type Enrollment string

// Enrollments.
const (
	// EnrollAuto enrolls the reps of the challenge's teams (and the people
	// listed) at publication, and people who join those teams later.
	EnrollAuto Enrollment = "auto"
	// EnrollOptIn: eligible people join with JoinChallenge.
	EnrollOptIn Enrollment = "opt_in"
)

// TeamMetric is what a team battle compares.
type TeamMetric string

// Team metrics.
const (
	TeamTotal   TeamMetric = "total"
	TeamAverage TeamMetric = "average"
)

// TieRule says how equal scores rank, on the challenge's boards and in its
// standings.
type TieRule string

// Tie rules.
const (
	// TieEarliestAchiever gives distinct ranks: of two equal scores, the one
	// reached first (by event time, then arrival) ranks first. The default.
	TieEarliestAchiever TieRule = "earliest_achiever"
	// TieSharedRank gives equal scores the same rank (1, 2, 2, 4).
	TieSharedRank TieRule = "shared_rank"
)

// Duration is a time.Duration written as "72h" in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Definition is what a challenge or a template says: everything but the
// window and the participants.
type Definition struct {
	Name        Text       `json:"name"`
	Description Text       `json:"description"`
	Kind        Kind       `json:"kind"`
	Mode        Mode       `json:"mode"`
	Format      Format     `json:"format"`
	Enrollment  Enrollment `json:"enrollment"`
	// Sequential: mission n unlocks when mission n-1 is completed.
	Sequential bool `json:"sequential,omitempty"`
	// RaceTarget is the points to reach in a race.
	RaceTarget int64 `json:"race_target,omitempty"`
	// LeagueTarget is each participant's default target in points (league).
	LeagueTarget int64      `json:"league_target,omitempty"`
	TeamMetric   TeamMetric `json:"team_metric,omitempty"`
	// Duration is the default length of the window (start to end).
	Duration Duration `json:"duration,omitempty"`
	// Grace is how long after the end events of the window still count.
	Grace Duration `json:"grace,omitempty"`
	// MaxDataWait bounds how long after the end the results wait for every
	// source's data (see Final).
	MaxDataWait Duration `json:"max_data_wait,omitempty"`
	// TieRule orders equal scores (TieEarliestAchiever when created without
	// one; challenges stored before the rule existed read as shared ranks,
	// which is what their boards were created with).
	TieRule  TieRule   `json:"tie_rule,omitempty"`
	Missions []Mission `json:"missions"`
	Rules    []Rule    `json:"rules"`
	Rewards  []Reward  `json:"rewards"`
}

// MissionScope says whose events a mission counts.
type MissionScope string

// Mission scopes.
const (
	ScopeIndividual MissionScope = "individual"
	// ScopeTeam missions aggregate the events of the participant's team.
	ScopeTeam MissionScope = "team"
)

// Aggregate is how an automatic mission reduces the events it reads.
type Aggregate string

// Aggregates. Value is the mission's numeric expression.
const (
	AggCount   Aggregate = "count"   // matching events
	AggSum     Aggregate = "sum"     // sum of Value
	AggRate    Aggregate = "rate"    // % of matching events that also match HitFilter, from MinVolume events
	AggAverage Aggregate = "average" // mean of Value
	AggMedian  Aggregate = "median"  // median of Value
	AggMin     Aggregate = "min"     // smallest Value ("at least one deal closed in under d days")
	AggMax     Aggregate = "max"     // largest Value
)

// Comparison says which side of the target completes a mission.
type Comparison string

// Comparisons.
const (
	AtLeast Comparison = "at_least"
	AtMost  Comparison = "at_most"
)

// Unit says how a mission's numbers read.
type Unit string

// Units.
const (
	UnitCount   Unit = "count"   // a number of events ("2 more meetings")
	UnitMoney   Unit = "money"   // major units of the company's currency
	UnitPercent Unit = "percent" // rates
	UnitDays    Unit = "days"
	UnitNumber  Unit = "number"
)

// ManualKind is what a manual mission asks for.
type ManualKind string

// Manual kinds.
const (
	ManualQuiz     ManualKind = "quiz"
	ManualTraining ManualKind = "training"
	ManualEvidence ManualKind = "evidence"
)

// Mission is one mission of a challenge: automatic (a condition over the
// events of the window) or manual (submitted, then approved by a manager).
type Mission struct {
	Key         string       `json:"key"`
	Name        Text         `json:"name"`
	Description Text         `json:"description"`
	Scope       MissionScope `json:"scope"`
	Points      int64        `json:"points"`
	// Manual is set for manual missions; the fields below are then unused.
	Manual ManualKind `json:"manual,omitempty"`

	Aggregate  Aggregate    `json:"aggregate,omitempty"`
	EventTypes []event.Type `json:"event_types,omitempty"`
	// Filter (CEL, see event.CompileFilter) selects the events counted.
	Filter string `json:"filter,omitempty"`
	// Value (CEL, numeric) is the number each event contributes to sums,
	// averages, medians, minimums and maximums.
	Value string `json:"value,omitempty"`
	// HitFilter selects, among the counted events, those a rate counts as
	// hits.
	HitFilter string `json:"hit_filter,omitempty"`
	// MinVolume is the number of counted events below which rates, averages
	// and medians do not count yet.
	MinVolume  int64      `json:"min_volume,omitempty"`
	Comparison Comparison `json:"comparison,omitempty"`
	// Target is compared with the aggregate; rates are in percent.
	Target float64 `json:"target,omitempty"`
	Unit   Unit    `json:"unit,omitempty"`
	// UpliftPercent, with BaselineDays, makes the target personal: the
	// participant's own average over the BaselineDays before the start,
	// raised by UpliftPercent (never below Target).
	UpliftPercent float64 `json:"uplift_percent,omitempty"`
	BaselineDays  int     `json:"baseline_days,omitempty"`
}

// IsManual reports whether the mission is submitted and approved.
func (m Mission) IsManual() bool { return m.Manual != "" }

// Rule gives points for events: floor(Value / Per) × Points per matching
// event, e.g. 1 point per 100 EUR of upsell revenue (Value "amount", Per
// 100, Points 1) or 10 points per meeting held (Value "", Per 1, Points 10).
type Rule struct {
	EventTypes []event.Type `json:"event_types"`
	Filter     string       `json:"filter,omitempty"`
	// Value defaults to 1 per event.
	Value  string  `json:"value,omitempty"`
	Per    float64 `json:"per,omitempty"`
	Points int64   `json:"points"`
	Label  Text    `json:"label"`
}

// RewardKind says when a reward is granted.
type RewardKind string

// Reward kinds.
const (
	// RewardRank: to the participants (teams in team mode) whose final rank
	// is between FromRank and ToRank.
	RewardRank RewardKind = "rank"
	// RewardThreshold: to every participant with at least MinPoints.
	RewardThreshold RewardKind = "threshold"
)

// Reward is granted when the challenge is final, through the Rewards hook,
// and delivered by the rewards area: Points bonus points in the wallet and
// the badge named Badge.
type Reward struct {
	Kind      RewardKind `json:"kind"`
	FromRank  int        `json:"from_rank,omitempty"`
	ToRank    int        `json:"to_rank,omitempty"`
	MinPoints int64      `json:"min_points,omitempty"`
	// Ref identifies the reward rule ("upsell-podium").
	Ref string `json:"ref"`
	// Points are the bonus points (0 for none).
	Points int64 `json:"points,omitempty"`
	// Badge is the key of the company's badge awarded ("" for none); a key
	// the company has not defined becomes a badge named after Label.
	Badge string `json:"badge,omitempty"`
	Label Text   `json:"label"`
}

// MaxRewardPoints bounds a reward's bonus points.
const MaxRewardPoints = 1_000_000

// Limits of a definition.
const (
	MaxMissions = 20
	MaxRules    = 20
	MaxRewards  = 20
	// MaxWindow bounds a challenge's length.
	MaxWindow = 366 * 24 * time.Hour
	// DefaultGrace and DefaultMaxDataWait apply when a definition leaves
	// them at zero.
	DefaultGrace       = 24 * time.Hour
	DefaultMaxDataWait = 72 * time.Hour
)

var keyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// compiled is a definition with its expressions compiled, as the progress
// consumer uses it.
type compiled struct {
	missions []compiledMission
	rules    []compiledRule
	types    map[event.Type]bool
}

type compiledMission struct {
	Mission
	filter, hit *event.Expr
	value       *event.Expr
	types       map[event.Type]bool
}

type compiledRule struct {
	Rule
	filter, value *event.Expr
	types         map[event.Type]bool
}

// Ties is the rule the challenge ranks equal scores with.
func (d Definition) Ties() TieRule {
	if d.TieRule == "" {
		return TieSharedRank // stored before the rule existed
	}
	return d.TieRule
}

// withDefaults fills the fields a definition may leave empty.
func (d Definition) withDefaults() Definition {
	if d.Kind == "" {
		d.Kind = KindCustom
	}
	if d.Mode == "" {
		d.Mode = ModeIndividual
	}
	if d.Format == "" {
		d.Format = FormatLeaderboard
	}
	if d.Format == FormatTeamBattle {
		d.Mode = ModeTeam
	}
	if d.Enrollment == "" {
		d.Enrollment = EnrollAuto
	}
	if d.TieRule == "" {
		d.TieRule = TieEarliestAchiever
	}
	if d.Format == FormatTeamBattle && d.TeamMetric == "" {
		d.TeamMetric = TeamTotal
	}
	if d.Grace == 0 {
		d.Grace = Duration(DefaultGrace)
	}
	if d.MaxDataWait == 0 {
		d.MaxDataWait = Duration(DefaultMaxDataWait)
	}
	if d.Missions == nil {
		d.Missions = []Mission{}
	}
	if d.Rules == nil {
		d.Rules = []Rule{}
	}
	if d.Rewards == nil {
		d.Rewards = []Reward{}
	}
	for i := range d.Missions {
		m := &d.Missions[i]
		if m.Scope == "" {
			m.Scope = ScopeIndividual
		}
		if m.IsManual() {
			continue
		}
		if m.Comparison == "" {
			m.Comparison = AtLeast
		}
		if m.Unit == "" {
			switch m.Aggregate {
			case AggCount:
				m.Unit = UnitCount
			case AggRate:
				m.Unit = UnitPercent
			default:
				m.Unit = UnitNumber
			}
		}
	}
	for i := range d.Rules {
		if d.Rules[i].Per == 0 {
			d.Rules[i].Per = 1
		}
	}
	return d
}

// Negative durations ("grace: -1h") are errors, not defaults.
func checkDuration(field string, d Duration, max time.Duration) error {
	if d < 0 || time.Duration(d) > max {
		return rallye.Invalid(field, "must be between 0 and %s", max)
	}
	return nil
}

// compile checks a definition (with defaults applied) and compiles its
// expressions. Errors name the field under prefix ("definition."), with the
// API's field paths (missions[0].auto.filter, scoring_rules[1].points).
func compile(d Definition, prefix string) (*compiled, error) {
	f := func(s string, args ...any) string { return prefix + fmt.Sprintf(s, args...) }
	if err := checkText(f("name"), d.Name, true, 200); err != nil {
		return nil, err
	}
	if err := checkText(f("description"), d.Description, false, 4000); err != nil {
		return nil, err
	}
	if d.TieRule != TieEarliestAchiever && d.TieRule != TieSharedRank {
		return nil, rallye.Invalid(f("tie_rule"), "must be earliest_achiever or shared_rank")
	}
	switch d.Kind {
	case KindOnboarding, KindUpsell, KindProspecting, KindCustom:
	default:
		return nil, rallye.Invalid(f("kind"), "must be onboarding, upsell, prospecting or custom")
	}
	switch d.Mode {
	case ModeIndividual, ModeTeam:
	default:
		return nil, rallye.Invalid(f("mode"), "must be individual or team")
	}
	switch d.Enrollment {
	case EnrollAuto, EnrollOptIn:
	default:
		return nil, rallye.Invalid(f("enrollment"), "must be auto or opt_in")
	}
	switch d.Format {
	case FormatLeaderboard, FormatDuels:
	case FormatRace:
		if d.RaceTarget <= 0 {
			return nil, rallye.Invalid(f("race_target_points"), "a race needs a positive target in points")
		}
	case FormatLeague:
		if d.LeagueTarget <= 0 {
			return nil, rallye.Invalid(f("league_target_points"), "a league needs a positive default target in points")
		}
	case FormatTeamBattle:
		if d.Mode != ModeTeam {
			return nil, rallye.Invalid(f("mode"), "a team battle is played in team mode")
		}
		if d.TeamMetric != TeamTotal && d.TeamMetric != TeamAverage {
			return nil, rallye.Invalid(f("team_metric"), "must be total or average")
		}
	default:
		return nil, rallye.Invalid(f("format"), "must be leaderboard, race, team_battle, duels or league")
	}
	if err := checkDuration(f("duration"), d.Duration, MaxWindow); err != nil {
		return nil, err
	}
	if err := checkDuration(f("grace_period"), d.Grace, 30*24*time.Hour); err != nil {
		return nil, err
	}
	if err := checkDuration(f("max_data_wait"), d.MaxDataWait, 60*24*time.Hour); err != nil {
		return nil, err
	}
	if d.MaxDataWait < d.Grace {
		return nil, rallye.Invalid(f("max_data_wait"), "must not be shorter than the grace period")
	}
	if len(d.Missions) > MaxMissions {
		return nil, rallye.Invalid(f("missions"), "at most %d missions", MaxMissions)
	}
	if len(d.Rules) > MaxRules {
		return nil, rallye.Invalid(f("scoring_rules"), "at most %d scoring rules", MaxRules)
	}
	if len(d.Rewards) > MaxRewards {
		return nil, rallye.Invalid(f("rewards"), "at most %d rewards", MaxRewards)
	}
	if len(d.Missions) == 0 && len(d.Rules) == 0 {
		return nil, rallye.Invalid(f("missions"), "a challenge needs at least one mission or scoring rule")
	}
	c := &compiled{types: map[event.Type]bool{}}
	keys := map[string]bool{}
	for i, m := range d.Missions {
		cm, err := compileMission(m, d, f("missions[%d].", i))
		if err != nil {
			return nil, err
		}
		if keys[m.Key] {
			return nil, rallye.Invalid(f("missions[%d].key", i), "%q is used by another mission", m.Key)
		}
		keys[m.Key] = true
		for t := range cm.types {
			c.types[t] = true
		}
		c.missions = append(c.missions, cm)
	}
	for i, r := range d.Rules {
		cr, err := compileRule(r, f("scoring_rules[%d].", i))
		if err != nil {
			return nil, err
		}
		for t := range cr.types {
			c.types[t] = true
		}
		c.rules = append(c.rules, cr)
	}
	for i, r := range d.Rewards {
		if err := checkReward(r, f("rewards[%d].", i)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func checkText(field string, t Text, required bool, maxLen int) error {
	if required && (strings.TrimSpace(t.FR) == "" || strings.TrimSpace(t.EN) == "") {
		return rallye.Invalid(field, "is required in French and English")
	}
	if len(t.FR) > maxLen || len(t.EN) > maxLen {
		return rallye.Invalid(field, "must be at most %d bytes", maxLen)
	}
	return nil
}

func checkTypes(field string, types []event.Type) (map[event.Type]bool, error) {
	if len(types) == 0 {
		return nil, rallye.Invalid(field, "name at least one event type")
	}
	known := event.Types()
	out := map[event.Type]bool{}
	for _, t := range types {
		if !slices.Contains(known, t) {
			return nil, rallye.Invalid(field, "%q is not an event type", t)
		}
		if t == event.DealReopened {
			return nil, rallye.Invalid(field, "deal.reopened withdraws a win or a loss; it is not counted itself")
		}
		out[t] = true
	}
	return out, nil
}

func compileMission(m Mission, d Definition, prefix string) (compiledMission, error) {
	cm := compiledMission{Mission: m}
	if !keyPattern.MatchString(m.Key) {
		return cm, rallye.Invalid(prefix+"key", "must be 1 to 63 lowercase letters, digits or dashes")
	}
	if err := checkText(prefix+"name", m.Name, true, 200); err != nil {
		return cm, err
	}
	if err := checkText(prefix+"description", m.Description, false, 2000); err != nil {
		return cm, err
	}
	if m.Points < 0 || m.Points > 1_000_000 {
		return cm, rallye.Invalid(prefix+"points", "must be between 0 and 1,000,000")
	}
	switch m.Scope {
	case ScopeIndividual:
	case ScopeTeam:
		if d.Mode != ModeTeam {
			return cm, rallye.Invalid(prefix+"scope", "team missions need a challenge in team mode")
		}
		if d.Sequential {
			return cm, rallye.Invalid(prefix+"scope", "a sequential challenge has individual missions only")
		}
	default:
		return cm, rallye.Invalid(prefix+"scope", "must be individual or team")
	}
	if m.IsManual() {
		switch m.Manual {
		case ManualQuiz, ManualTraining, ManualEvidence:
		default:
			return cm, rallye.Invalid(prefix+"manual.kind", "must be quiz, training or evidence")
		}
		if m.Scope != ScopeIndividual {
			return cm, rallye.Invalid(prefix+"scope", "manual missions are individual")
		}
		return cm, nil
	}
	auto := prefix + "auto."
	var err error
	if cm.types, err = checkTypes(auto+"event_types", m.EventTypes); err != nil {
		return cm, err
	}
	if cm.filter, err = event.CompileFilter(auto+"filter", m.Filter); err != nil {
		return cm, err
	}
	switch m.Aggregate {
	case AggCount:
	case AggRate:
		if strings.TrimSpace(m.HitFilter) == "" {
			return cm, rallye.Invalid(auto+"hit_filter", "a rate needs the filter of its hits")
		}
		if cm.hit, err = event.CompileFilter(auto+"hit_filter", m.HitFilter); err != nil {
			return cm, err
		}
		if m.Target < 0 || m.Target > 100 {
			return cm, rallye.Invalid(auto+"target", "a rate is between 0 and 100 percent")
		}
	case AggSum, AggAverage, AggMedian, AggMin, AggMax:
		if strings.TrimSpace(m.Value) == "" {
			return cm, rallye.Invalid(auto+"value", "a %s needs a value expression", m.Aggregate)
		}
		if cm.value, err = event.CompileValue(auto+"value", m.Value); err != nil {
			return cm, err
		}
	default:
		return cm, rallye.Invalid(auto+"aggregate", "must be count, sum, rate, average, median, min or max")
	}
	if m.Comparison != AtLeast && m.Comparison != AtMost {
		return cm, rallye.Invalid(auto+"comparison", "must be at_least or at_most")
	}
	if m.Comparison == AtMost && (m.Aggregate == AggCount || m.Aggregate == AggSum) {
		return cm, rallye.Invalid(auto+"comparison", "a count or a sum only grows: use at_least")
	}
	if math.IsNaN(m.Target) || math.IsInf(m.Target, 0) || m.Target < 0 || m.Target > 1e12 {
		return cm, rallye.Invalid(auto+"target", "must be a number between 0 and 10^12")
	}
	if (m.Aggregate == AggCount || m.Aggregate == AggSum) && m.Target <= 0 {
		return cm, rallye.Invalid(auto+"target", "must be positive")
	}
	if m.MinVolume < 0 || m.MinVolume > 1_000_000 {
		return cm, rallye.Invalid(auto+"min_volume", "must be between 0 and 1,000,000")
	}
	switch m.Unit {
	case UnitCount, UnitMoney, UnitPercent, UnitDays, UnitNumber:
	default:
		return cm, rallye.Invalid(auto+"unit", "must be count, money, percent, days or number")
	}
	if m.UpliftPercent != 0 || m.BaselineDays != 0 {
		if m.Aggregate != AggAverage || m.Scope != ScopeIndividual || m.Comparison != AtLeast {
			return cm, rallye.Invalid(auto+"uplift_percent", "an uplift applies to an individual average, at least")
		}
		if m.UpliftPercent <= 0 || m.UpliftPercent > 1000 {
			return cm, rallye.Invalid(auto+"uplift_percent", "must be between 0 and 1000")
		}
		if m.BaselineDays < 7 || m.BaselineDays > 365 {
			return cm, rallye.Invalid(auto+"baseline_days", "must be between 7 and 365")
		}
	}
	return cm, nil
}

func compileRule(r Rule, prefix string) (compiledRule, error) {
	cr := compiledRule{Rule: r}
	var err error
	if cr.types, err = checkTypes(prefix+"event_types", r.EventTypes); err != nil {
		return cr, err
	}
	if cr.filter, err = event.CompileFilter(prefix+"filter", r.Filter); err != nil {
		return cr, err
	}
	if strings.TrimSpace(r.Value) != "" {
		if cr.value, err = event.CompileValue(prefix+"value", r.Value); err != nil {
			return cr, err
		}
	}
	if math.IsNaN(r.Per) || r.Per <= 0 || r.Per > 1e9 {
		return cr, rallye.Invalid(prefix+"per", "must be positive")
	}
	if r.Points == 0 || r.Points < -1_000_000 || r.Points > 1_000_000 {
		return cr, rallye.Invalid(prefix+"points", "must be non-zero, between -1,000,000 and 1,000,000")
	}
	return cr, checkText(prefix+"label", r.Label, false, 200)
}

func checkReward(r Reward, prefix string) error {
	switch r.Kind {
	case RewardRank:
		if r.FromRank < 1 || r.ToRank < r.FromRank || r.ToRank > 1000 {
			return rallye.Invalid(prefix+"from_rank", "ranks must satisfy 1 <= from_rank <= to_rank <= 1000")
		}
	case RewardThreshold:
		if r.MinPoints <= 0 {
			return rallye.Invalid(prefix+"min_points", "must be positive")
		}
	default:
		return rallye.Invalid(prefix+"kind", "must be rank or threshold")
	}
	if !keyPattern.MatchString(r.Ref) {
		return rallye.Invalid(prefix+"reward_ref", "must name the reward (lowercase letters, digits, dashes)")
	}
	if r.Points < 0 || r.Points > MaxRewardPoints {
		return rallye.Invalid(prefix+"points", "must be between 0 and %d", MaxRewardPoints)
	}
	if r.Badge != "" && !keyPattern.MatchString(r.Badge) {
		return rallye.Invalid(prefix+"badge", "must be a badge key (lowercase letters, digits, dashes)")
	}
	if r.Points == 0 && r.Badge == "" {
		return rallye.Invalid(prefix+"points", "a reward gives points, a badge or both")
	}
	return checkText(prefix+"label", r.Label, false, 200)
}

// maxEventPoints bounds what one event may give through one rule. Points
// add up in int64 and, on the live boards, in Redis scores (float64, exact
// below 2^53): a rule whose value or "per" would give more is reported as a
// rule error rather than silently giving nothing or overflowing. With
// amounts bounded at ingestion (event.MaxMinorUnits), "1 point per 100 EUR"
// of the largest amount gives 10^10.
const maxEventPoints = 1e12

// maxMissionValue bounds one event's value for a mission: values are kept
// in 1/10,000 units in int64.
const maxMissionValue = 1e12

// points returns what a rule gives for e and whether it applies; err reports
// an expression that could not be evaluated or a result out of bounds (the
// rule then gives nothing, and the caller reports it).
func (r compiledRule) points(e event.Event, loc *time.Location) (int64, bool, error) {
	if !r.types[e.Type] {
		return 0, false, nil
	}
	if ok, err := r.filter.Matches(e, loc); !ok {
		return 0, false, err
	}
	v := 1.0
	if r.value != nil {
		var err error
		if v, err = r.value.Value(e, loc); err != nil {
			return 0, false, err
		}
	}
	units := math.Floor(v/r.Per + 1e-9) // 2900/100 is 29, not 28.999...
	if pts := units * float64(r.Points); math.Abs(pts) > maxEventPoints {
		return 0, false, fmt.Errorf("the rule would give %.4g points for one event, beyond the %.0e one event may give", pts, maxEventPoints)
	}
	return int64(units) * r.Points, true, nil
}

// contribution is what one event gives one mission's accumulators.
type contribution struct {
	Mission string `json:"m"`
	// Value is the event's value in 1/10,000 units (1 for a count).
	Value int64 `json:"v"`
	// Sample is the value as a sample (medians, minimums, maximums).
	Sample float64 `json:"s,omitempty"`
	Hit    bool    `json:"h,omitempty"`
}

// valueScale turns values into exact integers: 1/10,000 of a unit.
const valueScale = 10000

// contribute returns what e gives m, and whether m counts it; err reports
// an expression that could not be evaluated or a value out of bounds (a
// hit filter that fails leaves the event counted, not as a hit).
func (m compiledMission) contribute(e event.Event, loc *time.Location) (contribution, bool, error) {
	if m.IsManual() || !m.types[e.Type] {
		return contribution{}, false, nil
	}
	if ok, err := m.filter.Matches(e, loc); !ok {
		return contribution{}, false, err
	}
	c := contribution{Value: valueScale}
	if m.value != nil {
		v, err := m.value.Value(e, loc)
		if err != nil {
			return contribution{}, false, err
		}
		if math.Abs(v) > maxMissionValue {
			return contribution{}, false, fmt.Errorf("the mission value %.4g of one event is beyond %.0e", v, maxMissionValue)
		}
		c.Value = int64(math.Round(v * valueScale))
		c.Sample = v
	}
	var err error
	if m.hit != nil {
		c.Hit, err = m.hit.Matches(e, loc)
	}
	return c, true, err
}

// eventTypes lists the types a compiled definition reads, sorted.
func (c *compiled) eventTypes() []string {
	out := make([]string, 0, len(c.types))
	for t := range c.types {
		out = append(out, string(t))
	}
	slices.Sort(out)
	return out
}
