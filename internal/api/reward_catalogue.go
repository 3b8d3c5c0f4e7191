package api

import (
	"context"
	"time"

	"connectrpc.com/connect"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

func (h *rewardHandler) CreateRewardItem(ctx context.Context, req *rallyev1.CreateRewardItemRequest) (*rallyev1.CreateRewardItemResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	in, err := itemInputFromProto(req.GetItem())
	if err != nil {
		return nil, err
	}
	it, err := h.svc.CreateItem(ctx, p, in, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateRewardItemResponse{Item: itemToProto(it, time.Now())}, nil
}

func (h *rewardHandler) UpdateRewardItem(ctx context.Context, req *rallyev1.UpdateRewardItemRequest) (*rallyev1.UpdateRewardItemResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("item_id", req.GetItemId())
	if err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask().GetPaths()
	if err := checkMasked(h.validator, req.GetItem(), "item", mask); err != nil {
		return nil, err
	}
	in, err := itemInputFromProto(req.GetItem())
	if err != nil {
		return nil, err
	}
	it, err := h.svc.UpdateItem(ctx, p, id, reward.ItemPatch{ItemInput: in, Archived: req.GetItem().GetArchived(), Mask: mask})
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateRewardItemResponse{Item: itemToProto(it, time.Now())}, nil
}

func (h *rewardHandler) GetRewardItem(ctx context.Context, req *rallyev1.GetRewardItemRequest) (*rallyev1.GetRewardItemResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("item_id", req.GetItemId())
	if err != nil {
		return nil, err
	}
	it, err := h.svc.GetItem(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetRewardItemResponse{Item: itemToProto(it, time.Now())}, nil
}

func (h *rewardHandler) ListRewardItems(ctx context.Context, req *rallyev1.ListRewardItemsRequest) (*rallyev1.ListRewardItemsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = reward.DefaultItemsPage
	}
	items, err := h.svc.ListItems(ctx, p, reward.ListItemsRequest{IncludeUnavailable: req.GetIncludeArchived(), Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListRewardItemsResponse{}
	now := time.Now()
	for _, it := range items {
		out.Items = append(out.Items, itemToProto(it, now))
	}
	if len(items) > 0 {
		out.NextPageToken = page.Next(items[len(items)-1].ID, len(items), size)
	}
	return out, nil
}

func (h *rewardHandler) RedeemReward(ctx context.Context, req *rallyev1.RedeemRewardRequest) (*rallyev1.RedeemRewardResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("item_id", req.GetItemId())
	if err != nil {
		return nil, err
	}
	r, err := h.svc.Redeem(ctx, p, reward.RedeemRequest{ItemID: id, RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &rallyev1.RedeemRewardResponse{Redemption: redemptionToProto(r)}, nil
}

func (h *rewardHandler) ListRedemptions(ctx context.Context, req *rallyev1.ListRedemptionsRequest) (*rallyev1.ListRedemptionsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	user, err := parseOptionalID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = reward.DefaultItemsPage
	}
	rs, err := h.svc.ListRedemptions(ctx, p, reward.ListRedemptionsRequest{UserID: user, State: redemptionStates.fromProto[req.GetState()],
		Size: size, Cursor: cursor})
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ListRedemptionsResponse{}
	for _, r := range rs {
		out.Redemptions = append(out.Redemptions, redemptionToProto(r))
	}
	if len(rs) > 0 {
		out.NextPageToken = page.Next(rs[len(rs)-1].ID, len(rs), size)
	}
	return out, nil
}

func (h *rewardHandler) decide(ctx context.Context, rawID, note string, d reward.Decision) (*rallyev1.Redemption, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("redemption_id", rawID)
	if err != nil {
		return nil, err
	}
	r, err := h.svc.Decide(ctx, p, id, d, note)
	if err != nil {
		return nil, err
	}
	return redemptionToProto(r), nil
}

func (h *rewardHandler) ApproveRedemption(ctx context.Context, req *rallyev1.ApproveRedemptionRequest) (*rallyev1.ApproveRedemptionResponse, error) {
	r, err := h.decide(ctx, req.GetRedemptionId(), req.GetNote(), reward.Approve)
	if err != nil {
		return nil, err
	}
	return &rallyev1.ApproveRedemptionResponse{Redemption: r}, nil
}

func (h *rewardHandler) RejectRedemption(ctx context.Context, req *rallyev1.RejectRedemptionRequest) (*rallyev1.RejectRedemptionResponse, error) {
	r, err := h.decide(ctx, req.GetRedemptionId(), req.GetNote(), reward.Reject)
	if err != nil {
		return nil, err
	}
	return &rallyev1.RejectRedemptionResponse{Redemption: r}, nil
}

func (h *rewardHandler) CancelRedemption(ctx context.Context, req *rallyev1.CancelRedemptionRequest) (*rallyev1.CancelRedemptionResponse, error) {
	r, err := h.decide(ctx, req.GetRedemptionId(), req.GetNote(), reward.Cancel)
	if err != nil {
		return nil, err
	}
	return &rallyev1.CancelRedemptionResponse{Redemption: r}, nil
}

func (h *rewardHandler) FulfillRedemption(ctx context.Context, req *rallyev1.FulfillRedemptionRequest) (*rallyev1.FulfillRedemptionResponse, error) {
	r, err := h.decide(ctx, req.GetRedemptionId(), req.GetNote(), reward.Fulfill)
	if err != nil {
		return nil, err
	}
	return &rallyev1.FulfillRedemptionResponse{Redemption: r}, nil
}

func (h *rewardHandler) ExportRedemptions(ctx context.Context, req *rallyev1.ExportRedemptionsRequest, stream *connect.ServerStream[rallyev1.ExportRedemptionsResponse]) error {
	p, _ := rallye.PrincipalFrom(ctx)
	return h.svc.ExportFulfilled(ctx, p, timeOf(req.GetFromTime()), timeOf(req.GetToTime()), func(r reward.ExportRow) error {
		return stream.Send(exportRowToProto(r))
	})
}

func exportRowToProto(r reward.ExportRow) *rallyev1.ExportRedemptionsResponse {
	return &rallyev1.ExportRedemptionsResponse{RedemptionId: r.RedemptionID.String(), FulfillTime: timestamp(r.FulfilledAt),
		CrmId: r.PersonCRMID, DisplayName: r.Person, Email: r.Email, ItemName: rtextToProto(r.Item), Cost: r.Cost,
		MoneyValue: r.MoneyValue, Currency: r.Currency, ApprovedBy: r.ApprovedBy}
}
