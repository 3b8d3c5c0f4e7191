package api

import (
	"context"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

func (h *rewardHandler) ListBadges(ctx context.Context, req *rallyev1.ListBadgesRequest) (*rallyev1.ListBadgesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	bs, err := h.svc.ListBadges(ctx, p, req.GetIncludeInactive())
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListBadgesResponse{}
	for _, b := range bs {
		out.Badges = append(out.Badges, badgeToProto(b))
	}
	return out, nil
}

func (h *rewardHandler) CreateBadge(ctx context.Context, req *rallyev1.CreateBadgeRequest) (*rallyev1.CreateBadgeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	b, err := h.svc.CreateBadge(ctx, p, badgeInputFromProto(req.GetBadge()), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateBadgeResponse{Badge: badgeToProto(b)}, nil
}

func (h *rewardHandler) UpdateBadge(ctx context.Context, req *rallyev1.UpdateBadgeRequest) (*rallyev1.UpdateBadgeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("badge_id", req.GetBadgeId())
	if err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask().GetPaths()
	if err := checkMasked(h.validator, req.GetBadge(), "badge", mask); err != nil {
		return nil, err
	}
	b, err := h.svc.UpdateBadge(ctx, p, id, reward.BadgePatch{BadgeInput: badgeInputFromProto(req.GetBadge()), Mask: mask})
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateBadgeResponse{Badge: badgeToProto(b)}, nil
}

func (h *rewardHandler) ListUserBadges(ctx context.Context, req *rallyev1.ListUserBadgesRequest) (*rallyev1.ListUserBadgesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	user, err := parseOptionalID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	as, err := h.svc.UserBadges(ctx, p, user)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListUserBadgesResponse{}
	for _, a := range as {
		out.Awards = append(out.Awards, awardToProto(a))
	}
	return out, nil
}

func (h *rewardHandler) ListBadgeHolders(ctx context.Context, req *rallyev1.ListBadgeHoldersRequest) (*rallyev1.ListBadgeHoldersResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("badge_id", req.GetBadgeId())
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
	size := int(req.GetPageSize())
	if size == 0 {
		size = reward.DefaultHolders
	}
	b, as, err := h.svc.BadgeHolders(ctx, p, reward.BadgeHoldersRequest{BadgeID: id, TeamID: team, Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListBadgeHoldersResponse{Badge: badgeToProto(b)}
	for _, a := range as {
		aw := awardToProto(a)
		aw.Badge = nil // said once, at the top
		out.Holders = append(out.Holders, aw)
	}
	if len(as) > 0 {
		out.NextPageToken = page.Next(as[len(as)-1].UserID, len(as), size)
	}
	return out, nil
}

func (h *rewardHandler) ListStreakRules(ctx context.Context, _ *rallyev1.ListStreakRulesRequest) (*rallyev1.ListStreakRulesResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	rs, err := h.svc.ListStreakRules(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListStreakRulesResponse{}
	for _, r := range rs {
		out.Rules = append(out.Rules, streakRuleToProto(r))
	}
	return out, nil
}

func (h *rewardHandler) CreateStreakRule(ctx context.Context, req *rallyev1.CreateStreakRuleRequest) (*rallyev1.CreateStreakRuleResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	r, err := h.svc.CreateStreakRule(ctx, p, streakRuleInputFromProto(req.GetRule()), req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateStreakRuleResponse{Rule: streakRuleToProto(r)}, nil
}

func (h *rewardHandler) UpdateStreakRule(ctx context.Context, req *rallyev1.UpdateStreakRuleRequest) (*rallyev1.UpdateStreakRuleResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("rule_id", req.GetRuleId())
	if err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask().GetPaths()
	if err := checkMasked(h.validator, req.GetRule(), "rule", mask); err != nil {
		return nil, err
	}
	r, err := h.svc.UpdateStreakRule(ctx, p, id, reward.StreakRulePatch{StreakRuleInput: streakRuleInputFromProto(req.GetRule()), Mask: mask})
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateStreakRuleResponse{Rule: streakRuleToProto(r)}, nil
}

func (h *rewardHandler) GetStreaks(ctx context.Context, req *rallyev1.GetStreaksRequest) (*rallyev1.GetStreaksResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	user, err := parseOptionalID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	ss, err := h.svc.Streaks(ctx, p, user)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.GetStreaksResponse{}
	for _, s := range ss {
		out.Streaks = append(out.Streaks, streakToProto(s))
	}
	return out, nil
}

func (h *rewardHandler) UseStreakFreeze(ctx context.Context, req *rallyev1.UseStreakFreezeRequest) (*rallyev1.UseStreakFreezeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("rule_id", req.GetRuleId())
	if err != nil {
		return nil, err
	}
	day, err := parseDay("day", req.GetDay())
	if err != nil {
		return nil, err
	}
	s, err := h.svc.UseFreeze(ctx, p, id, day)
	if err != nil {
		return nil, err
	}
	return &rallyev1.UseStreakFreezeResponse{Streak: streakToProto(s)}, nil
}

func (h *rewardHandler) SendKudos(ctx context.Context, req *rallyev1.SendKudosRequest) (*rallyev1.SendKudosResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	to, err := parseID("recipient_id", req.GetRecipientId())
	if err != nil {
		return nil, err
	}
	win, err := parseOptionalID("win_id", req.GetWinId())
	if err != nil {
		return nil, err
	}
	k, err := h.svc.SendKudos(ctx, p, reward.KudosRequest{RecipientID: to, Message: req.GetMessage(), Points: req.GetPoints(),
		WinID: win, RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &rallyev1.SendKudosResponse{Kudos: &rallyev1.Kudos{Id: k.ID.String(), SenderId: k.SenderID.String(),
		RecipientId: k.RecipientID.String(), Message: k.Message, Points: k.Points, WinId: idString(k.WinID),
		SendTime: timestamp(k.SentAt), AllowanceLeft: k.AllowanceLeft}}, nil
}

func (h *rewardHandler) ListTeamFeed(ctx context.Context, req *rallyev1.ListTeamFeedRequest) (*rallyev1.ListTeamFeedResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = reward.DefaultFeedPage
	}
	items, err := h.svc.Feed(ctx, p, reward.ListFeedRequest{TeamID: team, Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListTeamFeedResponse{}
	for _, it := range items {
		out.Entries = append(out.Entries, feedItemToProto(it))
	}
	if len(items) > 0 {
		out.NextPageToken = page.Next(items[len(items)-1].ID, len(items), size)
	}
	return out, nil
}
