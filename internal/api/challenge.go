package api

import (
	"context"
	"slices"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// challengeHandler serves rallyev1connect.ChallengeServiceHandler,
// ChallengeTemplateServiceHandler and MissionServiceHandler.
type challengeHandler struct {
	svc       *challenge.Service
	validator protovalidate.Validator
}

// definitionFields are the mask paths that name ChallengeDefinition fields
// (the others name the request's own fields).
var definitionFields = []string{"name", "description", "kind", "mode", "format", "enrollment", "sequential",
	"race_target_points", "league_target_points", "team_metric", "duration", "grace_period", "max_data_wait",
	"missions", "scoring_rules", "rewards"}

// maskedDefinition validates and converts the definition fields a mask
// names (the others are neither read nor validated).
func (h *challengeHandler) maskedDefinition(in *rallyev1.ChallengeDefinition, prefix string, paths []string) (challenge.Definition, error) {
	var only []string
	for _, p := range paths {
		if slices.Contains(definitionFields, p) {
			only = append(only, p)
		}
	}
	if len(only) == 0 {
		return challenge.Definition{}, nil
	}
	if in == nil {
		return challenge.Definition{}, rallye.Invalid(prefix[:len(prefix)-1], "is required for the fields of the mask")
	}
	if err := checkPart(h.validator, in, prefix, only); err != nil {
		return challenge.Definition{}, err
	}
	return definitionFromProto(in), nil
}

func (h *challengeHandler) CreateChallenge(ctx context.Context, req *rallyev1.CreateChallengeRequest) (*rallyev1.CreateChallengeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	teams, err := parseIDs("team_ids", req.GetTeamIds())
	if err != nil {
		return nil, err
	}
	users, err := parseIDs("user_ids", req.GetUserIds())
	if err != nil {
		return nil, err
	}
	c, err := h.svc.Create(ctx, p, challenge.CreateRequest{
		Definition: definitionFromProto(req.GetDefinition()), TeamIDs: teams, UserIDs: users,
		StartsAt: timeOf(req.GetStartTime()), EndsAt: timeOf(req.GetEndTime()), Publish: req.GetPublish(), RequestID: req.GetRequestId(),
		Holdout: holdoutFromProto(req.GetHoldout()),
	})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateChallengeResponse{Challenge: challengeToProto(c)}, nil
}

func (h *challengeHandler) CreateChallengeFromTemplate(ctx context.Context, req *rallyev1.CreateChallengeFromTemplateRequest) (*rallyev1.CreateChallengeFromTemplateResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	teams, err := parseIDs("team_ids", req.GetTeamIds())
	if err != nil {
		return nil, err
	}
	users, err := parseIDs("user_ids", req.GetUserIds())
	if err != nil {
		return nil, err
	}
	mask := req.GetOverrideMask().GetPaths()
	overrides, err := h.maskedDefinition(req.GetOverrides(), "overrides.", mask)
	if err != nil {
		return nil, err
	}
	var adj []challenge.MissionAdjustment
	for _, a := range req.GetMissionAdjustments() {
		adj = append(adj, challenge.MissionAdjustment{Key: a.GetKey(), Target: a.Target, Points: a.Points, MinVolume: a.MinVolume, Remove: a.GetRemove()})
	}
	c, err := h.svc.CreateFromTemplate(ctx, p, challenge.FromTemplateRequest{
		TemplateKey: req.GetTemplateKey(), TeamIDs: teams, UserIDs: users, StartsAt: timeOf(req.GetStartTime()),
		EndsAt: timeOf(req.GetEndTime()), Overrides: overrides, Mask: mask, Adjustments: adj, Publish: req.GetPublish(),
		RequestID: req.GetRequestId(),
	})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateChallengeFromTemplateResponse{Challenge: challengeToProto(c)}, nil
}

func (h *challengeHandler) GetChallenge(ctx context.Context, req *rallyev1.GetChallengeRequest) (*rallyev1.GetChallengeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	d, err := h.svc.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetChallengeResponse{
		Challenge: challengeToProto(d.Challenge), Me: participationToProto(d.Me), Completeness: completenessToProto(d.Completeness),
		CanManage: d.CanManage, CanJoin: d.CanJoin, ParticipantCount: int32(d.Participants),
	}, nil
}

func (h *challengeHandler) UpdateChallenge(ctx context.Context, req *rallyev1.UpdateChallengeRequest) (*rallyev1.UpdateChallengeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask().GetPaths()
	def, err := h.maskedDefinition(req.GetDefinition(), "definition.", mask)
	if err != nil {
		return nil, err
	}
	teams, err := parseIDs("team_ids", req.GetTeamIds())
	if err != nil {
		return nil, err
	}
	users, err := parseIDs("user_ids", req.GetUserIds())
	if err != nil {
		return nil, err
	}
	if slices.Contains(mask, "end_time") && req.GetEndTime() == nil {
		return nil, rallye.Invalid("end_time", "is required when the mask names it")
	}
	c, err := h.svc.Update(ctx, p, id, challenge.Patch{Definition: def, TeamIDs: teams, UserIDs: users,
		StartsAt: timeOf(req.GetStartTime()), EndsAt: timeOf(req.GetEndTime()), Mask: mask})
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateChallengeResponse{Challenge: challengeToProto(c)}, nil
}

// lifecycle runs one of the lifecycle calls that take a challenge id.
func (h *challengeHandler) lifecycle(ctx context.Context, rawID string, fn func(context.Context, rallye.Principal, uuid.UUID) (*challenge.Challenge, error)) (*rallyev1.Challenge, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", rawID)
	if err != nil {
		return nil, err
	}
	c, err := fn(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return challengeToProto(c), nil
}

func (h *challengeHandler) PublishChallenge(ctx context.Context, req *rallyev1.PublishChallengeRequest) (*rallyev1.PublishChallengeResponse, error) {
	c, err := h.lifecycle(ctx, req.GetChallengeId(), h.svc.Publish)
	if err != nil {
		return nil, err
	}
	return &rallyev1.PublishChallengeResponse{Challenge: c}, nil
}

func (h *challengeHandler) ExtendChallenge(ctx context.Context, req *rallyev1.ExtendChallengeRequest) (*rallyev1.ExtendChallengeResponse, error) {
	c, err := h.lifecycle(ctx, req.GetChallengeId(), func(ctx context.Context, p rallye.Principal, id uuid.UUID) (*challenge.Challenge, error) {
		return h.svc.Extend(ctx, p, id, req.GetEndTime().AsTime())
	})
	if err != nil {
		return nil, err
	}
	return &rallyev1.ExtendChallengeResponse{Challenge: c}, nil
}

func (h *challengeHandler) EndChallenge(ctx context.Context, req *rallyev1.EndChallengeRequest) (*rallyev1.EndChallengeResponse, error) {
	c, err := h.lifecycle(ctx, req.GetChallengeId(), h.svc.EndNow)
	if err != nil {
		return nil, err
	}
	return &rallyev1.EndChallengeResponse{Challenge: c}, nil
}

func (h *challengeHandler) CancelChallenge(ctx context.Context, req *rallyev1.CancelChallengeRequest) (*rallyev1.CancelChallengeResponse, error) {
	c, err := h.lifecycle(ctx, req.GetChallengeId(), h.svc.Cancel)
	if err != nil {
		return nil, err
	}
	return &rallyev1.CancelChallengeResponse{Challenge: c}, nil
}

func (h *challengeHandler) JoinChallenge(ctx context.Context, req *rallyev1.JoinChallengeRequest) (*rallyev1.JoinChallengeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	if err := h.svc.Join(ctx, p, id); err != nil {
		return nil, err
	}
	d, err := h.svc.Get(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.JoinChallengeResponse{Me: participationToProto(d.Me)}, nil
}

func (h *challengeHandler) SetParticipantTarget(ctx context.Context, req *rallyev1.SetParticipantTargetRequest) (*rallyev1.SetParticipantTargetResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	user, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	if err := h.svc.SetTarget(ctx, p, challenge.TargetRequest{ChallengeID: id, UserID: user, Points: req.GetTargetPoints()}); err != nil {
		return nil, err
	}
	return &rallyev1.SetParticipantTargetResponse{}, nil
}

// sizeOf turns a requested page size into the effective one.
func sizeOf(requested int32, def, maxSize int) int {
	switch {
	case requested <= 0:
		return def
	case int(requested) > maxSize:
		return maxSize
	}
	return int(requested)
}

func (h *challengeHandler) ListMyChallenges(ctx context.Context, req *rallyev1.ListMyChallengesRequest) (*rallyev1.ListMyChallengesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	window := map[rallyev1.ChallengeWindow]challenge.Window{
		rallyev1.ChallengeWindow_CHALLENGE_WINDOW_UNSPECIFIED: challenge.WindowActive, // the documented default
		rallyev1.ChallengeWindow_CHALLENGE_WINDOW_ACTIVE:      challenge.WindowActive,
		rallyev1.ChallengeWindow_CHALLENGE_WINDOW_UPCOMING:    challenge.WindowUpcoming,
		rallyev1.ChallengeWindow_CHALLENGE_WINDOW_PAST:        challenge.WindowPast,
	}[req.GetWindow()]
	size := sizeOf(req.GetPageSize(), 20, 50)
	list, err := h.svc.ListMine(ctx, p, challenge.ListMineRequest{Window: window, Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListMyChallengesResponse{}
	for _, s := range list {
		res.Challenges = append(res.Challenges, &rallyev1.ChallengeSummary{Challenge: challengeToProto(s.Challenge),
			Me: participationToProto(s.Me), NextTime: timestamp(s.Next)})
	}
	if len(list) > 0 {
		res.NextPageToken = page.Next(list[len(list)-1].Challenge.ID, len(list), size)
	}
	return res, nil
}

func (h *challengeHandler) ListChallenges(ctx context.Context, req *rallyev1.ListChallengesRequest) (*rallyev1.ListChallengesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	var sts []challenge.State
	for _, st := range req.GetStates() {
		sts = append(sts, states.fromProto[st])
	}
	size := sizeOf(req.GetPageSize(), 50, 100)
	list, err := h.svc.List(ctx, p, challenge.ListRequest{States: sts, TeamID: team, Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListChallengesResponse{}
	for _, o := range list {
		res.Challenges = append(res.Challenges, &rallyev1.ChallengeOverview{Challenge: challengeToProto(o.Challenge),
			ParticipantCount: int32(o.Participants), ScoringCount: int32(o.Scoring), CompletedMissions: int32(o.Completions),
			NextTime: timestamp(o.Next)})
	}
	if len(list) > 0 {
		res.NextPageToken = page.Next(list[len(list)-1].Challenge.ID, len(list), size)
	}
	return res, nil
}

func (h *challengeHandler) GetChallengeStandings(ctx context.Context, req *rallyev1.GetChallengeStandingsRequest) (*rallyev1.GetChallengeStandingsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	c, st, err := h.svc.Standings(ctx, p, id)
	if err != nil {
		return nil, err
	}
	res := &rallyev1.GetChallengeStandingsResponse{Format: formats.toProto[c.Definition.Format], Final: st.Final}
	for _, r := range st.People {
		res.People = append(res.People, &rallyev1.Standing{Rank: int32(r.Rank), UserId: r.UserID.String(), TeamId: idString(r.TeamID),
			Points: r.Points, TargetPoints: r.Target, TargetPercent: r.Percent, TargetReachTime: timestamp(r.Reached)})
	}
	for _, t := range st.Teams {
		res.Teams = append(res.Teams, &rallyev1.TeamStanding{Rank: int32(t.Rank), TeamId: t.TeamID.String(), Points: t.Points,
			Members: int32(t.Members), AveragePoints: t.Average})
	}
	for i := range st.Duels {
		res.Duels = append(res.Duels, duelToProto(&st.Duels[i], st.Duels[i].A))
	}
	return res, nil
}

func (h *challengeHandler) ListChallengeParticipants(ctx context.Context, req *rallyev1.ListChallengeParticipantsRequest) (*rallyev1.ListChallengeParticipantsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := sizeOf(req.GetPageSize(), 50, 200)
	rows, err := h.svc.Participants(ctx, p, challenge.ParticipantsRequest{ChallengeID: id, TeamID: team, Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListChallengeParticipantsResponse{}
	for i := range rows {
		res.Participants = append(res.Participants, &rallyev1.ParticipantProgress{DisplayName: rows[i].DisplayName,
			Participation: participationToProto(&rows[i].Participation)})
	}
	if len(rows) > 0 {
		res.NextPageToken = page.Next(rows[len(rows)-1].UserID, len(rows), size)
	}
	return res, nil
}

func (h *challengeHandler) ListChallengeTemplates(ctx context.Context, _ *rallyev1.ListChallengeTemplatesRequest) (*rallyev1.ListChallengeTemplatesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	ts, err := h.svc.Templates(ctx, p)
	if err != nil {
		return nil, err
	}
	return &rallyev1.ListChallengeTemplatesResponse{Templates: mapSlice(ts, templateToProto)}, nil
}

func (h *challengeHandler) GetChallengeTemplate(ctx context.Context, req *rallyev1.GetChallengeTemplateRequest) (*rallyev1.GetChallengeTemplateResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	t, err := h.svc.Template(ctx, p, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetChallengeTemplateResponse{Template: templateToProto(t)}, nil
}

func (h *challengeHandler) UpdateChallengeTemplate(ctx context.Context, req *rallyev1.UpdateChallengeTemplateRequest) (*rallyev1.UpdateChallengeTemplateResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	t, err := h.svc.UpdateTemplate(ctx, p, req.GetKey(), definitionFromProto(req.GetDefinition()))
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateChallengeTemplateResponse{Template: templateToProto(t)}, nil
}

func (h *challengeHandler) ResetChallengeTemplate(ctx context.Context, req *rallyev1.ResetChallengeTemplateRequest) (*rallyev1.ResetChallengeTemplateResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	t, err := h.svc.ResetTemplate(ctx, p, req.GetKey())
	if err != nil {
		return nil, err
	}
	return &rallyev1.ResetChallengeTemplateResponse{Template: templateToProto(t)}, nil
}

// missionHandler serves rallyev1connect.MissionServiceHandler.
type missionHandler struct {
	svc *challenge.Service
}

func (h *missionHandler) SubmitMission(ctx context.Context, req *rallyev1.SubmitMissionRequest) (*rallyev1.SubmitMissionResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cid, err := parseID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	mid, err := parseID("mission_id", req.GetMissionId())
	if err != nil {
		return nil, err
	}
	s, err := h.svc.Submit(ctx, p, challenge.SubmitRequest{ChallengeID: cid, MissionID: mid, EvidenceURL: req.GetEvidenceUrl(),
		Answer: req.GetAnswer(), RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &rallyev1.SubmitMissionResponse{Submission: submissionToProto(s)}, nil
}

func (h *missionHandler) review(ctx context.Context, rawID, note string, approve bool) (*rallyev1.MissionSubmission, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("submission_id", rawID)
	if err != nil {
		return nil, err
	}
	s, err := h.svc.Review(ctx, p, challenge.ReviewRequest{SubmissionID: id, Approve: approve, Note: note})
	if err != nil {
		return nil, err
	}
	return submissionToProto(s), nil
}

func (h *missionHandler) ApproveSubmission(ctx context.Context, req *rallyev1.ApproveSubmissionRequest) (*rallyev1.ApproveSubmissionResponse, error) {
	s, err := h.review(ctx, req.GetSubmissionId(), req.GetNote(), true)
	if err != nil {
		return nil, err
	}
	return &rallyev1.ApproveSubmissionResponse{Submission: s}, nil
}

func (h *missionHandler) RejectSubmission(ctx context.Context, req *rallyev1.RejectSubmissionRequest) (*rallyev1.RejectSubmissionResponse, error) {
	s, err := h.review(ctx, req.GetSubmissionId(), req.GetNote(), false)
	if err != nil {
		return nil, err
	}
	return &rallyev1.RejectSubmissionResponse{Submission: s}, nil
}

func (h *missionHandler) ListSubmissions(ctx context.Context, req *rallyev1.ListSubmissionsRequest) (*rallyev1.ListSubmissionsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cid, err := parseOptionalID("challenge_id", req.GetChallengeId())
	if err != nil {
		return nil, err
	}
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := sizeOf(req.GetPageSize(), 50, 200)
	list, err := h.svc.ListSubmissions(ctx, p, challenge.ListSubmissionsRequest{ChallengeID: cid,
		State: submissionStates.fromProto[req.GetState()], Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListSubmissionsResponse{Submissions: mapSlice(list, submissionToProto)}
	if len(list) > 0 {
		res.NextPageToken = page.Next(list[len(list)-1].ID, len(list), size)
	}
	return res, nil
}
