package api

import (
	"github.com/google/uuid"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/period"
)

var periodKinds = map[rallyev1.PeriodKind]period.Kind{
	rallyev1.PeriodKind_PERIOD_KIND_DAY:     period.Day,
	rallyev1.PeriodKind_PERIOD_KIND_WEEK:    period.Week,
	rallyev1.PeriodKind_PERIOD_KIND_MONTH:   period.Month,
	rallyev1.PeriodKind_PERIOD_KIND_QUARTER: period.Quarter,
	rallyev1.PeriodKind_PERIOD_KIND_YEAR:    period.Year,
}

func periodToProto(k period.Kind) rallyev1.PeriodKind {
	for p, d := range periodKinds {
		if d == k {
			return p
		}
	}
	return rallyev1.PeriodKind_PERIOD_KIND_UNSPECIFIED
}

var kpiUnits = map[rallyev1.KpiUnit]kpi.Unit{
	rallyev1.KpiUnit_KPI_UNIT_COUNT:   kpi.UnitCount,
	rallyev1.KpiUnit_KPI_UNIT_MONEY:   kpi.UnitMoney,
	rallyev1.KpiUnit_KPI_UNIT_PERCENT: kpi.UnitPercent,
	rallyev1.KpiUnit_KPI_UNIT_DAYS:    kpi.UnitDays,
	rallyev1.KpiUnit_KPI_UNIT_HOURS:   kpi.UnitHours,
	rallyev1.KpiUnit_KPI_UNIT_SCORE:   kpi.UnitScore,
}

var directions = map[rallyev1.KpiDirection]kpi.Direction{
	rallyev1.KpiDirection_KPI_DIRECTION_HIGHER_IS_BETTER: kpi.HigherIsBetter,
	rallyev1.KpiDirection_KPI_DIRECTION_LOWER_IS_BETTER:  kpi.LowerIsBetter,
}

var aggregations = map[rallyev1.Aggregation]kpi.Aggregation{
	rallyev1.Aggregation_AGGREGATION_COUNT:      kpi.Count,
	rallyev1.Aggregation_AGGREGATION_SUM:        kpi.Sum,
	rallyev1.Aggregation_AGGREGATION_AVERAGE:    kpi.Average,
	rallyev1.Aggregation_AGGREGATION_RATIO:      kpi.Ratio,
	rallyev1.Aggregation_AGGREGATION_MEDIAN:     kpi.Median,
	rallyev1.Aggregation_AGGREGATION_PERCENTILE: kpi.Percentile,
	rallyev1.Aggregation_AGGREGATION_DISTINCT:   kpi.Distinct,
	rallyev1.Aggregation_AGGREGATION_BALANCE:    kpi.Balance,
	rallyev1.Aggregation_AGGREGATION_COMPOSITE:  kpi.Composite,
}

var scopeKinds = map[rallyev1.ScopeKind]kpi.ScopeKind{
	rallyev1.ScopeKind_SCOPE_KIND_COMPANY: kpi.ScopeCompany,
	rallyev1.ScopeKind_SCOPE_KIND_TEAM:    kpi.ScopeTeam,
	rallyev1.ScopeKind_SCOPE_KIND_PERSON:  kpi.ScopePerson,
}

var criterionComparisons = map[rallyev1.CriterionComparison]string{
	rallyev1.CriterionComparison_CRITERION_COMPARISON_GREATER_OR_EQUAL: ">=",
	rallyev1.CriterionComparison_CRITERION_COMPARISON_GREATER:          ">",
	rallyev1.CriterionComparison_CRITERION_COMPARISON_LESS_OR_EQUAL:    "<=",
	rallyev1.CriterionComparison_CRITERION_COMPARISON_LESS:             "<",
}

var planStatuses = map[rallyev1.ActionPlanStatus]kpi.PlanStatus{
	rallyev1.ActionPlanStatus_ACTION_PLAN_STATUS_OPEN:      kpi.PlanOpen,
	rallyev1.ActionPlanStatus_ACTION_PLAN_STATUS_SUCCEEDED: kpi.PlanSucceeded,
	rallyev1.ActionPlanStatus_ACTION_PLAN_STATUS_FAILED:    kpi.PlanFailed,
	rallyev1.ActionPlanStatus_ACTION_PLAN_STATUS_NO_DATA:   kpi.PlanNoData,
}

// reverse finds the protobuf value of a domain value.
func reverse[P comparable, D comparable](m map[P]D, d D) P {
	for p, v := range m {
		if v == d {
			return p
		}
	}
	var zero P
	return zero
}

func scopeFromProto(field string, in *rallyev1.Scope) (kpi.ScopeRef, error) {
	id, err := parseOptionalID(field+".id", in.GetId())
	return kpi.ScopeRef{Kind: scopeKinds[in.GetKind()], ID: id}, err
}

func scopeToProto(s kpi.ScopeRef) *rallyev1.Scope {
	out := &rallyev1.Scope{Kind: reverse(scopeKinds, s.Kind)}
	if s.ID != uuid.Nil {
		out.Id = s.ID.String()
	}
	return out
}

func selectionFromProto(in *rallyev1.EventSelection) kpi.Selection {
	s := kpi.Selection{Filter: in.GetFilter(), Value: in.GetValue(), Distinct: kpi.DistinctField(in.GetDistinct())}
	for _, t := range in.GetEventTypes() {
		s.Types = append(s.Types, event.Type(t))
	}
	return s
}

func selectionToProto(s kpi.Selection) *rallyev1.EventSelection {
	out := &rallyev1.EventSelection{Filter: s.Filter, Value: s.Value, Distinct: string(s.Distinct)}
	for _, t := range s.Types {
		out.EventTypes = append(out.EventTypes, string(t))
	}
	return out
}

func kpiDefinitionFromProto(in *rallyev1.KpiDefinition) (kpi.Definition, error) {
	owner, err := parseOptionalID("kpi.owner_id", in.GetOwnerId())
	if err != nil {
		return kpi.Definition{}, err
	}
	team, err := parseOptionalID("kpi.scope.team_id", in.GetScope().GetTeamId())
	if err != nil {
		return kpi.Definition{}, err
	}
	f := in.GetFormula()
	d := kpi.Definition{
		Key:         in.GetKey(),
		Name:        kpi.Text{FR: in.GetName().GetFr(), EN: in.GetName().GetEn()},
		Description: kpi.Text{FR: in.GetDescription().GetFr(), EN: in.GetDescription().GetEn()},
		Unit:        kpiUnits[in.GetUnit()], Level: int(in.GetLevel()), Direction: directions[in.GetDirection()], OwnerID: owner,
		Formula: kpi.Formula{Aggregation: aggregations[f.GetAggregation()], Events: selectionFromProto(f.GetEvents()),
			Percentile: f.GetPercentile(), Expression: f.GetExpression(), Breakdown: kpi.Dimension(f.GetBreakdown())},
		Scope: kpi.Scope{Filter: in.GetScope().GetFilter(), Segment: in.GetScope().GetSegment(), TeamID: team},
	}
	if f.Denominator != nil {
		den := selectionFromProto(f.GetDenominator())
		d.Formula.Denominator = &den
	}
	for _, p := range in.GetPeriods() {
		d.Periods = append(d.Periods, periodKinds[p])
	}
	return d, nil
}

func kpiDefinitionToProto(d kpi.Definition) *rallyev1.KpiDefinition {
	out := &rallyev1.KpiDefinition{
		Key: d.Key, Name: &rallyev1.LocalizedText{Fr: d.Name.FR, En: d.Name.EN},
		Description: &rallyev1.LocalizedText{Fr: d.Description.FR, En: d.Description.EN},
		Unit:        reverse(kpiUnits, d.Unit), Level: int32(d.Level), Direction: reverse(directions, d.Direction),
		OwnerId: idString(d.OwnerID),
		Formula: &rallyev1.Formula{Aggregation: reverse(aggregations, d.Formula.Aggregation), Percentile: d.Formula.Percentile,
			Expression: d.Formula.Expression, Breakdown: string(d.Formula.Breakdown)},
		Scope: &rallyev1.KpiScope{Filter: d.Scope.Filter, Segment: d.Scope.Segment, TeamId: idString(d.Scope.TeamID)},
	}
	if d.Formula.Aggregation != kpi.Composite {
		out.Formula.Events = selectionToProto(d.Formula.Events)
	}
	if d.Formula.Denominator != nil {
		out.Formula.Denominator = selectionToProto(*d.Formula.Denominator)
	}
	for _, p := range d.Periods {
		out.Periods = append(out.Periods, periodToProto(p))
	}
	return out
}

func kpiToProto(k kpi.KPI, versions bool) *rallyev1.Kpi {
	cur := k.Current()
	out := &rallyev1.Kpi{Id: k.ID.String(), Key: k.Key, Archived: k.Archived, Definition: kpiDefinitionToProto(cur.Definition),
		Version: int32(cur.Number), CreateTime: timestamp(k.CreatedAt), UpdateTime: timestamp(k.UpdatedAt)}
	if versions {
		for _, v := range k.Versions {
			out.Versions = append(out.Versions, &rallyev1.KpiVersion{Version: int32(v.Number), EffectiveTime: timestamp(v.EffectiveFrom),
				Definition: kpiDefinitionToProto(v.Definition), CreatedBy: idString(v.CreatedBy), CreateTime: timestamp(v.CreatedAt)})
		}
	}
	return out
}

func targetToProto(t *kpi.Target) *rallyev1.Target {
	if t == nil {
		return nil
	}
	return &rallyev1.Target{Id: t.ID.String(), KpiKey: t.KPIKey, Period: periodToProto(t.PeriodKind), Scope: scopeToProto(t.Scope),
		Target: t.Target, AtRisk: t.AtRisk, OffTrack: t.OffTrack, CreateTime: timestamp(t.CreatedAt), UpdateTime: timestamp(t.UpdatedAt)}
}

func statusToProto(s kpi.Status) rallyev1.KpiStatus { return rallyev1.KpiStatus(s) }

func alertToProto(a kpi.Alert) *rallyev1.Alert {
	return &rallyev1.Alert{Id: a.ID.String(), TargetId: a.TargetID.String(), KpiKey: a.KPIKey, Period: periodToProto(a.PeriodKind),
		PeriodKey: a.PeriodKey, PeriodStartTime: timestamp(a.PeriodStart), PeriodEndTime: timestamp(a.PeriodEnd),
		Scope: scopeToProto(a.Scope), Level: statusToProto(a.Level), Value: a.Value, Projection: a.Projection, Target: a.Target,
		OwnerId: a.OwnerID.String(), RaiseTime: timestamp(a.RaisedAt), AcknowledgeTime: timestamp(a.AcknowledgedAt),
		AcknowledgedBy: idString(a.AcknowledgedBy)}
}

func planToProto(p kpi.ActionPlan) *rallyev1.ActionPlan {
	return &rallyev1.ActionPlan{Id: p.ID.String(), KpiKey: p.KPIKey, Question: p.Question, Action: p.Action, Hypotheses: p.Hypotheses,
		OwnerId: p.OwnerID.String(), Deadline: timestamp(p.Deadline),
		Criterion: &rallyev1.SuccessCriterion{Scope: scopeToProto(p.Criterion.Scope), Comparison: reverse(criterionComparisons, p.Criterion.Operator),
			Threshold: p.Criterion.Threshold, Period: periodToProto(p.Criterion.PeriodKind)},
		AlertId: idString(p.AlertID), Status: reverse(planStatuses, p.Status), MeasuredValue: p.MeasuredValue,
		EvaluateTime: timestamp(p.EvaluatedAt), Learnings: p.Learnings, CreatedBy: idString(p.CreatedBy),
		CreateTime: timestamp(p.CreatedAt)}
}

func cardToProto(c kpi.Card) *rallyev1.KpiCard {
	d := c.KPI.Current().Definition
	out := &rallyev1.KpiCard{
		Key: c.KPI.Key, Name: &rallyev1.LocalizedText{Fr: d.Name.FR, En: d.Name.EN},
		Description: &rallyev1.LocalizedText{Fr: d.Description.FR, En: d.Description.EN},
		Unit:        reverse(kpiUnits, d.Unit), Direction: reverse(directions, d.Direction), Level: int32(d.Level), OwnerId: idString(d.OwnerID),
		Period: periodToProto(c.Period.Kind), PeriodKey: c.Period.Key(), PeriodStartTime: timestamp(c.Period.Start),
		PeriodEndTime: timestamp(c.Period.End), Version: int32(c.Version), Value: c.Value.Value, PreviousValue: c.Previous,
		Target: targetToProto(c.Target), Status: statusToProto(c.Status), Projection: c.Projection.Value, Trend: c.Projection.Trend,
		WillMeetTarget: c.WillMeetTarget, BreakdownDimension: string(d.Formula.Breakdown), Computing: c.Value.Computing,
		NotApplicable: c.Value.NotApplicable, UnavailableForPeriod: c.Unavailable,
	}
	for _, p := range c.Series {
		out.Series = append(out.Series, &rallyev1.SeriesPoint{PeriodKey: p.Period.Key(), StartTime: timestamp(p.Period.Start),
			EndTime: timestamp(p.Period.End), Value: p.Value})
	}
	for _, b := range c.Value.Breakdown {
		out.Breakdown = append(out.Breakdown, &rallyev1.BreakdownValue{ValueKey: b.Dim, Value: b.Value})
	}
	return out
}
