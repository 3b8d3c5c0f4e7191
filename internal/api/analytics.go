package api

import (
	"context"
	"time"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/rallye"
)

// analyticsHandler serves rallyev1connect.AnalyticsServiceHandler.
type analyticsHandler struct {
	svc *analytics.Service
}

func (h *analyticsHandler) GetParticipation(ctx context.Context, req *rallyev1.GetParticipationRequest) (*rallyev1.GetParticipationResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	ids, err := parseIDs("challenge_ids", req.GetChallengeIds())
	if err != nil {
		return nil, err
	}
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	var start, end time.Time
	if req.StartTime != nil {
		start = req.GetStartTime().AsTime()
	}
	if req.EndTime != nil {
		end = req.GetEndTime().AsTime()
	}
	part, err := h.svc.Participation(ctx, p, analytics.ParticipationRequest{
		ChallengeIDs: ids, TeamID: team, Start: start, End: end, IncludePeople: req.GetIncludePeople(),
	})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.GetParticipationResponse{
		StartTime: timestamp(part.Start), EndTime: timestamp(part.End), ChallengeIds: idStrings(part.ChallengeIDs),
		MinGroupSize: int32(part.MinGroupSize), Total: statsToProto(part.Total),
		People: mapSlice(part.People, personParticipationToProto),
	}
	for _, t := range part.ByTeam {
		res.ByTeam = append(res.ByTeam, &rallyev1.TeamParticipation{TeamId: idString(t.TeamID), TeamName: t.TeamName, Stats: statsToProto(t.Stats)})
	}
	for _, b := range part.ByTenure {
		res.ByTenure = append(res.ByTenure, &rallyev1.TenureParticipation{Band: rallyev1.TenureBand(b.Band), Stats: statsToProto(b.Stats)})
	}
	return res, nil
}

func statsToProto(s analytics.Stats) *rallyev1.ParticipationStats {
	out := &rallyev1.ParticipationStats{
		Invited: int32(s.Invited), OptedIn: int32(s.OptedIn), Active: int32(s.Active),
		MissionsCompleted: int32(s.MissionsCompleted), CompletionRate: s.CompletionRate,
		ActiveFirstWeek: int32(s.ActiveFirstWeek), DroppedOff: int32(s.DroppedOff), Withheld: s.Withheld,
	}
	if s.Points != nil {
		out.Points = &rallyev1.PointsDistribution{Min: s.Points.Min, P25: s.Points.P25, Median: s.Points.Median,
			P75: s.Points.P75, P90: s.Points.P90, Max: s.Points.Max, Mean: s.Points.Mean}
	}
	for _, d := range s.Daily {
		out.Daily = append(out.Daily, &rallyev1.DailyParticipation{Date: formatDay(d.Date), Active: int32(d.Active),
			Points: d.Points, MissionsCompleted: int32(d.MissionsCompleted), Withheld: d.Withheld})
	}
	return out
}

func personParticipationToProto(p analytics.Person) *rallyev1.PersonParticipation {
	return &rallyev1.PersonParticipation{
		UserId: p.UserID.String(), DisplayName: p.DisplayName, TeamId: idString(p.TeamID), Band: rallyev1.TenureBand(p.Band),
		Invited: p.Invited, OptedIn: p.OptedIn, Active: p.Active, MissionsCompleted: int32(p.MissionsCompleted),
		Points: p.Points, ActiveDays: int32(p.ActiveDays), LastActiveDate: formatDay(p.LastActive),
	}
}

func (h *analyticsHandler) ListNonParticipants(ctx context.Context, req *rallyev1.ListNonParticipantsRequest) (*rallyev1.ListNonParticipantsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	np, err := h.svc.NonParticipants(ctx, p, analytics.NonParticipantsRequest{
		Start: req.GetStartTime().AsTime(), End: req.GetEndTime().AsTime(), TeamID: team,
	})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListNonParticipantsResponse{MinGroupSize: int32(np.MinGroupSize)}
	for _, n := range np.People {
		res.People = append(res.People, &rallyev1.NonParticipant{UserId: n.UserID.String(), DisplayName: n.DisplayName,
			TeamId: idString(n.TeamID), Band: rallyev1.TenureBand(n.Band), InvitedChallenges: int32(n.InvitedChallenges)})
	}
	for _, c := range np.ByTeam {
		res.ByTeam = append(res.ByTeam, &rallyev1.NonParticipantCount{TeamId: idString(c.TeamID), TeamName: c.TeamName,
			Invited: int32(c.Invited), NeverParticipating: int32(c.NeverParticipating), Withheld: c.Withheld})
	}
	return res, nil
}

func (h *analyticsHandler) GetAnalyticsSettings(ctx context.Context, _ *rallyev1.GetAnalyticsSettingsRequest) (*rallyev1.GetAnalyticsSettingsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	st, err := h.svc.Settings(ctx, p)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetAnalyticsSettingsResponse{Settings: &rallyev1.AnalyticsSettings{MinGroupSize: int32(st.MinGroupSize)}}, nil
}

func (h *analyticsHandler) UpdateAnalyticsSettings(ctx context.Context, req *rallyev1.UpdateAnalyticsSettingsRequest) (*rallyev1.UpdateAnalyticsSettingsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	st, err := h.svc.UpdateSettings(ctx, p, analytics.Settings{MinGroupSize: int(req.GetSettings().GetMinGroupSize())})
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateAnalyticsSettingsResponse{Settings: &rallyev1.AnalyticsSettings{MinGroupSize: int32(st.MinGroupSize)}}, nil
}

func (h *analyticsHandler) GetImpact(ctx context.Context, req *rallyev1.GetImpactRequest) (*rallyev1.GetImpactResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	method := analytics.MethodBootstrap
	if req.GetMethod() == rallyev1.IntervalMethod_INTERVAL_METHOD_NORMAL {
		method = analytics.MethodNormal
	}
	imp, err := h.svc.Impact(ctx, p, analytics.ImpactRequest{ChallengeID: id, KPIKeys: req.GetKpiKeys(), Method: method, Seed: req.Seed})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.GetImpactResponse{
		ChallengeId: imp.ChallengeID.String(), Control: rallyev1.ControlGroup_CONTROL_GROUP_NON_PARTICIPANTS,
		HoldoutShare: imp.HoldoutShare, HoldoutSeed: imp.HoldoutSeed, BeforeStart: timestamp(imp.Before.Start),
		DuringStart: timestamp(imp.During.Start), DuringEnd: timestamp(imp.During.End), MinSample: int32(imp.MinSample),
	}
	if imp.Control == analytics.ControlHoldout {
		res.Control = rallyev1.ControlGroup_CONTROL_GROUP_HOLDOUT
	}
	for _, k := range imp.KPIs {
		e := k.Estimate
		out := &rallyev1.KpiImpact{KpiKey: k.Key, EnoughData: e.Enough,
			Participants: &rallyev1.GroupSample{Size: int32(e.Treated)}, Controls: &rallyev1.GroupSample{Size: int32(e.Control)}}
		if e.Enough {
			out.Estimate, out.Low, out.High = e.Effect, e.Low, e.High
			out.Participants.MeanBefore, out.Participants.MeanDuring = e.TreatedBefore, e.TreatedDuring
			out.Controls.MeanBefore, out.Controls.MeanDuring = e.ControlBefore, e.ControlDuring
			out.Method, out.Seed, out.Resamples = rallyev1.IntervalMethod_INTERVAL_METHOD_BOOTSTRAP, e.Seed, int32(e.Resamples)
			if e.Method == analytics.MethodNormal {
				out.Method = rallyev1.IntervalMethod_INTERVAL_METHOD_NORMAL
			}
		}
		res.Impacts = append(res.Impacts, out)
	}
	return res, nil
}
