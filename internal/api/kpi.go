package api

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/dashboard"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// kpiHandler serves rallyev1connect.KpiServiceHandler.
type kpiHandler struct {
	kpi *kpi.Service
}

func (h *kpiHandler) CreateKpi(ctx context.Context, req *rallyev1.CreateKpiRequest) (*rallyev1.CreateKpiResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	d, err := kpiDefinitionFromProto(req.GetKpi())
	if err != nil {
		return nil, err
	}
	k, err := h.kpi.Create(ctx, p, kpi.CreateRequest{Definition: d, RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateKpiResponse{Kpi: kpiToProto(k, true)}, nil
}

func (h *kpiHandler) UpdateKpi(ctx context.Context, req *rallyev1.UpdateKpiRequest) (*rallyev1.UpdateKpiResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	d, err := kpiDefinitionFromProto(req.GetKpi())
	if err != nil {
		return nil, err
	}
	r := kpi.UpdateRequest{Key: req.GetKey(), Definition: d}
	if req.EffectiveTime != nil {
		r.EffectiveFrom = req.GetEffectiveTime().AsTime()
	}
	k, err := h.kpi.Update(ctx, p, r)
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateKpiResponse{Kpi: kpiToProto(k, true)}, nil
}

func (h *kpiHandler) GetKpi(ctx context.Context, req *rallyev1.GetKpiRequest) (*rallyev1.GetKpiResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	k, err := h.kpi.Get(ctx, p, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetKpiResponse{Kpi: kpiToProto(k, true)}, nil
}

func (h *kpiHandler) ListKpis(ctx context.Context, req *rallyev1.ListKpisRequest) (*rallyev1.ListKpisResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	ks, err := h.kpi.List(ctx, p, kpi.ListRequest{Level: int(req.GetLevel()), IncludeArchived: req.GetIncludeArchived()})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListKpisResponse{}
	for _, k := range ks {
		out.Kpis = append(out.Kpis, kpiToProto(k, false))
	}
	return out, nil
}

func (h *kpiHandler) ArchiveKpi(ctx context.Context, req *rallyev1.ArchiveKpiRequest) (*rallyev1.ArchiveKpiResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	k, err := h.kpi.SetArchived(ctx, p, req.GetKey(), req.GetArchived())
	if err != nil {
		return nil, err
	}
	return &rallyev1.ArchiveKpiResponse{Kpi: kpiToProto(k, false)}, nil
}

func (h *kpiHandler) InstallModel(ctx context.Context, req *rallyev1.InstallModelRequest) (*rallyev1.InstallModelResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	owner, err := parseOptionalID("owner_id", req.GetOwnerId())
	if err != nil {
		return nil, err
	}
	res, err := h.kpi.InstallModel(ctx, p, owner)
	if err != nil {
		return nil, err
	}
	return &rallyev1.InstallModelResponse{Created: res.Created, Kept: res.Kept}, nil
}

func (h *kpiHandler) SetTarget(ctx context.Context, req *rallyev1.SetTargetRequest) (*rallyev1.SetTargetResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	scope, err := scopeFromProto("scope", req.GetScope())
	if err != nil {
		return nil, err
	}
	t, err := h.kpi.SetTarget(ctx, p, kpi.SetTargetRequest{KPIKey: req.GetKpiKey(), PeriodKind: periodKinds[req.GetPeriod()],
		Scope: scope, Target: req.GetTarget(), AtRisk: req.AtRisk, OffTrack: req.OffTrack})
	if err != nil {
		return nil, err
	}
	return &rallyev1.SetTargetResponse{Target: targetToProto(&t)}, nil
}

func (h *kpiHandler) ListTargets(ctx context.Context, req *rallyev1.ListTargetsRequest) (*rallyev1.ListTargetsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	ts, err := h.kpi.ListTargets(ctx, p, kpi.ListTargetsRequest{KPIKey: req.GetKpiKey()})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListTargetsResponse{}
	for i := range ts {
		out.Targets = append(out.Targets, targetToProto(&ts[i]))
	}
	return out, nil
}

func (h *kpiHandler) DeleteTarget(ctx context.Context, req *rallyev1.DeleteTargetRequest) (*rallyev1.DeleteTargetResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	return &rallyev1.DeleteTargetResponse{}, h.kpi.DeleteTarget(ctx, p, id)
}

func (h *kpiHandler) ListAlerts(ctx context.Context, req *rallyev1.ListAlertsRequest) (*rallyev1.ListAlertsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	alerts, err := h.kpi.ListAlerts(ctx, p, kpi.ListAlertsRequest{Size: size, Cursor: cursor, Open: req.GetOpenOnly(), KPIKey: req.GetKpiKey()})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListAlertsResponse{}
	for _, a := range alerts {
		out.Alerts = append(out.Alerts, alertToProto(a))
	}
	if len(alerts) > 0 {
		out.NextPageToken = page.Next(alerts[len(alerts)-1].ID, len(alerts), size)
	}
	return out, nil
}

func (h *kpiHandler) AcknowledgeAlert(ctx context.Context, req *rallyev1.AcknowledgeAlertRequest) (*rallyev1.AcknowledgeAlertResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	a, err := h.kpi.AcknowledgeAlert(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.AcknowledgeAlertResponse{Alert: alertToProto(a)}, nil
}

func (h *kpiHandler) CreateActionPlan(ctx context.Context, req *rallyev1.CreateActionPlanRequest) (*rallyev1.CreateActionPlanResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	owner, err := parseOptionalID("owner_id", req.GetOwnerId())
	if err != nil {
		return nil, err
	}
	if owner == uuid.Nil {
		if !p.IsPerson() {
			return nil, rallye.Invalid("owner_id", "is required for an API key")
		}
		owner = p.UserID
	}
	alert, err := parseOptionalID("alert_id", req.GetAlertId())
	if err != nil {
		return nil, err
	}
	scope, err := scopeFromProto("criterion.scope", req.GetCriterion().GetScope())
	if err != nil {
		return nil, err
	}
	plan, err := h.kpi.CreatePlan(ctx, p, kpi.CreatePlanRequest{
		KPIKey: req.GetKpiKey(), Question: req.GetQuestion(), Action: req.GetAction(), Hypotheses: req.GetHypotheses(),
		OwnerID: owner, Deadline: req.GetDeadline().AsTime(), AlertID: alert, RequestID: req.GetRequestId(),
		Criterion: kpi.Criterion{Scope: scope, Operator: criterionComparisons[req.GetCriterion().GetComparison()],
			Threshold: req.GetCriterion().GetThreshold(), PeriodKind: periodKinds[req.GetCriterion().GetPeriod()]},
	})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateActionPlanResponse{Plan: planToProto(plan)}, nil
}

func (h *kpiHandler) GetActionPlan(ctx context.Context, req *rallyev1.GetActionPlanRequest) (*rallyev1.GetActionPlanResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	plan, err := h.kpi.GetPlan(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetActionPlanResponse{Plan: planToProto(plan)}, nil
}

func (h *kpiHandler) ListActionPlans(ctx context.Context, req *rallyev1.ListActionPlansRequest) (*rallyev1.ListActionPlansResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	plans, err := h.kpi.ListPlans(ctx, p, kpi.ListPlansRequest{Size: size, Cursor: cursor,
		Status: planStatuses[req.GetStatus()], KPIKey: req.GetKpiKey()})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListActionPlansResponse{}
	for _, pl := range plans {
		out.Plans = append(out.Plans, planToProto(pl))
	}
	if len(plans) > 0 {
		out.NextPageToken = page.Next(plans[len(plans)-1].ID, len(plans), size)
	}
	return out, nil
}

func (h *kpiHandler) RecordLearnings(ctx context.Context, req *rallyev1.RecordLearningsRequest) (*rallyev1.RecordLearningsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	plan, err := h.kpi.RecordLearnings(ctx, p, id, req.GetLearnings())
	if err != nil {
		return nil, err
	}
	return &rallyev1.RecordLearningsResponse{Plan: planToProto(plan)}, nil
}

// dashboardHandler serves rallyev1connect.DashboardServiceHandler.
type dashboardHandler struct {
	dash *dashboard.Service
}

func boardRequest(kind rallyev1.PeriodKind, at interface{ AsTime() time.Time }, hasAt bool, series int32) dashboard.Request {
	r := dashboard.Request{Kind: periodKinds[kind], SeriesLength: int(series)}
	if hasAt {
		r.At = at.AsTime()
	}
	return r
}

func cardsToProto(cards []kpi.Card) []*rallyev1.KpiCard {
	out := make([]*rallyev1.KpiCard, len(cards))
	for i, c := range cards {
		out[i] = cardToProto(c)
	}
	return out
}

func rowValues(vs []dashboard.RowValue) []*rallyev1.KpiValue {
	out := make([]*rallyev1.KpiValue, len(vs))
	for i, v := range vs {
		out[i] = &rallyev1.KpiValue{Key: v.Key, Value: v.Value, PreviousValue: v.Previous, Status: statusToProto(v.Status),
			NotApplicable: v.NotApplicable, Period: periodToProto(v.Period.Kind), PeriodKey: v.Period.Key(),
			PeriodStartTime: timestamp(v.Period.Start), PeriodEndTime: timestamp(v.Period.End), UnavailableForPeriod: v.Unavailable}
	}
	return out
}

func (h *dashboardHandler) GetLevel1(ctx context.Context, req *rallyev1.GetLevel1Request) (*rallyev1.GetLevel1Response, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	b, err := h.dash.Level1(ctx, p, boardRequest(req.GetPeriod(), req.GetAt(), req.At != nil, req.GetSeriesLength()))
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetLevel1Response{Kpis: cardsToProto(b.Cards), TimeZone: b.TimeZone, Currency: b.Currency,
		AsOfTime: timestamp(b.Freshness.AsOf), CaughtUp: b.Freshness.CaughtUp}, nil
}

func (h *dashboardHandler) GetLevel2(ctx context.Context, req *rallyev1.GetLevel2Request) (*rallyev1.GetLevel2Response, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	r := boardRequest(req.GetPeriod(), req.GetAt(), req.At != nil, req.GetSeriesLength())
	var err error
	if r.TeamID, err = parseOptionalID("team_id", req.GetTeamId()); err != nil {
		return nil, err
	}
	b, err := h.dash.Level2(ctx, p, r)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.GetLevel2Response{Scope: scopeToProto(b.Scope), Kpis: cardsToProto(b.Cards), TimeZone: b.TimeZone, Currency: b.Currency,
		AsOfTime: timestamp(b.Freshness.AsOf), CaughtUp: b.Freshness.CaughtUp}
	for _, t := range b.Teams {
		out.Teams = append(out.Teams, &rallyev1.TeamRow{TeamId: t.ID.String(), Name: t.Name, Values: rowValues(t.Values)})
	}
	return out, nil
}

func (h *dashboardHandler) GetLevel3(ctx context.Context, req *rallyev1.GetLevel3Request) (*rallyev1.GetLevel3Response, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	r := boardRequest(req.GetPeriod(), req.GetAt(), req.At != nil, req.GetSeriesLength())
	var err error
	if r.TeamID, err = parseOptionalID("team_id", req.GetTeamId()); err != nil {
		return nil, err
	}
	if r.UserID, err = parseOptionalID("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	b, err := h.dash.Level3(ctx, p, r)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.GetLevel3Response{Kpis: cardsToProto(b.Cards), TimeZone: b.TimeZone, Currency: b.Currency,
		AsOfTime: timestamp(b.Freshness.AsOf), CaughtUp: b.Freshness.CaughtUp}
	if b.Scope.Kind == kpi.ScopePerson {
		out.UserId = b.Scope.ID.String()
	}
	for _, u := range b.People {
		out.People = append(out.People, &rallyev1.PersonRow{UserId: u.ID.String(), DisplayName: u.Name, Values: rowValues(u.Values)})
	}
	return out, nil
}

func (h *dashboardHandler) Watch(ctx context.Context, req *rallyev1.WatchRequest, stream *connect.ServerStream[rallyev1.WatchResponse]) error {
	p, _ := rallye.PrincipalFrom(ctx)
	r := dashboard.Request{Kind: periodKinds[req.GetPeriod()]}
	var err error
	if r.TeamID, err = parseOptionalID("team_id", req.GetTeamId()); err != nil {
		return err
	}
	if r.UserID, err = parseOptionalID("user_id", req.GetUserId()); err != nil {
		return err
	}
	return h.dash.Watch(ctx, p, int(req.GetLevel()), r, func(u dashboard.Update) error {
		return stream.Send(&rallyev1.WatchResponse{Kpis: cardsToProto(u.Board.Cards), Snapshot: u.Snapshot, Time: timestamp(u.At),
			AsOfTime: timestamp(u.Board.Freshness.AsOf), CaughtUp: u.Board.Freshness.CaughtUp})
	})
}
