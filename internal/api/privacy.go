package api

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/types/known/structpb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/privacy"
	"github.com/rallyehq/rallye/internal/rallye"
)

// privacyHandler serves rallyev1connect.PrivacyServiceHandler.
type privacyHandler struct {
	svc *privacy.Service
}

func privacyRequestToProto(r privacy.Request) *rallyev1.PrivacyRequest {
	out := &rallyev1.PrivacyRequest{Id: r.ID.String(), Kind: r.Kind, SubjectId: r.SubjectID.String(),
		RequestedBy: idString(r.RequestedBy), Reason: r.Reason, RequestTime: timestamp(r.At)}
	if s, err := structpb.NewStruct(r.Summary); err == nil {
		out.Summary = s
	}
	return out
}

func (h *privacyHandler) ExportPersonData(ctx context.Context, req *rallyev1.ExportPersonDataRequest) (*rallyev1.ExportPersonDataResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	doc, r, err := h.svc.Export(ctx, p, id)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encode the export: %w", err)
	}
	data := &structpb.Struct{}
	if err := data.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("encode the export: %w", err)
	}
	return &rallyev1.ExportPersonDataResponse{Data: data, Request: privacyRequestToProto(r)}, nil
}

func (h *privacyHandler) ErasePerson(ctx context.Context, req *rallyev1.ErasePersonRequest) (*rallyev1.ErasePersonResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	r, err := h.svc.Erase(ctx, p, id, req.GetReason())
	if err != nil {
		return nil, err
	}
	return &rallyev1.ErasePersonResponse{Request: privacyRequestToProto(r)}, nil
}

func (h *privacyHandler) ListPrivacyRequests(ctx context.Context, req *rallyev1.ListPrivacyRequestsRequest) (*rallyev1.ListPrivacyRequestsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	subject, err := parseOptionalID("subject_id", req.GetSubjectId())
	if err != nil {
		return nil, err
	}
	rs, err := h.svc.List(ctx, p, subject)
	if err != nil {
		return nil, err
	}
	return &rallyev1.ListPrivacyRequestsResponse{Requests: mapSlice(rs, privacyRequestToProto)}, nil
}
