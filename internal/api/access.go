package api

import (
	"context"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// accessHandler serves rallyev1connect.AccessServiceHandler.
type accessHandler struct {
	keys *auth.APIKeys
}

func apiKeyToProto(k auth.APIKey) *rallyev1.ApiKey {
	return &rallyev1.ApiKey{
		Id: k.ID.String(), Name: k.Name, Prefix: k.Prefix, Roles: roleList(k.Roles), CreatedBy: idString(k.CreatedBy),
		CreateTime: timestamp(k.CreatedAt), LastUseTime: optionalTimestamp(k.LastUsedAt), RevokeTime: optionalTimestamp(k.RevokedAt),
	}
}

func (h *accessHandler) CreateApiKey(ctx context.Context, req *rallyev1.CreateApiKeyRequest) (*rallyev1.CreateApiKeyResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	key, secret, err := h.keys.Create(ctx, p, auth.CreateAPIKeyRequest{Name: req.GetName(), Roles: domainRoles(req.GetRoles())})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateApiKeyResponse{ApiKey: apiKeyToProto(key), Secret: secret}, nil
}

func (h *accessHandler) ListApiKeys(ctx context.Context, req *rallyev1.ListApiKeysRequest) (*rallyev1.ListApiKeysResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	keys, err := h.keys.List(ctx, p, size, cursor)
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListApiKeysResponse{ApiKeys: mapSlice(keys, apiKeyToProto)}
	if len(keys) > 0 {
		res.NextPageToken = page.Next(keys[len(keys)-1].ID, len(keys), size)
	}
	return res, nil
}

func (h *accessHandler) RevokeApiKey(ctx context.Context, req *rallyev1.RevokeApiKeyRequest) (*rallyev1.RevokeApiKeyResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("api_key_id", req.GetApiKeyId())
	if err != nil {
		return nil, err
	}
	key, err := h.keys.Revoke(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.RevokeApiKeyResponse{ApiKey: apiKeyToProto(key)}, nil
}
