package api

import (
	"context"
	"slices"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// organizationHandler serves rallyev1connect.OrganizationServiceHandler.
type organizationHandler struct {
	org       *org.Service
	validator protovalidate.Validator
}

func (h *organizationHandler) GetTenant(ctx context.Context, _ *rallyev1.GetTenantRequest) (*rallyev1.GetTenantResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	t, err := h.org.Tenant(ctx, p)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetTenantResponse{Tenant: tenantToProto(t)}, nil
}

func (h *organizationHandler) UpdateTenant(ctx context.Context, req *rallyev1.UpdateTenantRequest) (*rallyev1.UpdateTenantResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	in := req.GetTenant()
	if err := checkMasked(h.validator, in, "tenant", req.GetUpdateMask().GetPaths()); err != nil {
		return nil, err
	}
	var patch org.TenantPatch
	for _, path := range req.GetUpdateMask().GetPaths() {
		switch path {
		case "name":
			patch.Name = &in.Name
		case "time_zone":
			patch.TimeZone = &in.TimeZone
		case "default_locale":
			l := localeFromProto(in.DefaultLocale)
			patch.DefaultLocale = &l
		}
	}
	t, err := h.org.UpdateTenant(ctx, p, patch)
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateTenantResponse{Tenant: tenantToProto(t)}, nil
}

func (h *organizationHandler) GetMe(ctx context.Context, _ *rallyev1.GetMeRequest) (*rallyev1.GetMeResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	u, t, err := h.org.Me(ctx, p)
	if err != nil {
		return nil, err
	}
	u.Roles = p.Roles // effective roles: those of the token the person still holds
	return &rallyev1.GetMeResponse{User: userToProto(u), Tenant: tenantToProto(t)}, nil
}

func (h *organizationHandler) CreateTeam(ctx context.Context, req *rallyev1.CreateTeamRequest) (*rallyev1.CreateTeamResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	parent, err := parseOptionalID("parent_id", req.GetParentId())
	if err != nil {
		return nil, err
	}
	t, err := h.org.CreateTeam(ctx, p, org.CreateTeamRequest{
		Name: req.GetName(), ParentID: parent, ExternalID: req.GetExternalId(), RequestID: req.GetRequestId(),
	})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateTeamResponse{Team: teamToProto(t)}, nil
}

func (h *organizationHandler) GetTeam(ctx context.Context, req *rallyev1.GetTeamRequest) (*rallyev1.GetTeamResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	t, err := h.org.Team(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetTeamResponse{Team: teamToProto(t)}, nil
}

func (h *organizationHandler) UpdateTeam(ctx context.Context, req *rallyev1.UpdateTeamRequest) (*rallyev1.UpdateTeamResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	in := req.GetTeam()
	if err := checkMasked(h.validator, in, "team", req.GetUpdateMask().GetPaths()); err != nil {
		return nil, err
	}
	var patch org.TeamPatch
	for _, path := range req.GetUpdateMask().GetPaths() {
		switch path {
		case "name":
			patch.Name = &in.Name
		case "parent_id":
			parent, err := parseOptionalID("team.parent_id", in.GetParentId())
			if err != nil {
				return nil, err
			}
			patch.ParentID = &parent
		case "external_id":
			patch.ExternalID = &in.ExternalId
		}
	}
	t, err := h.org.UpdateTeam(ctx, p, id, patch)
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateTeamResponse{Team: teamToProto(t)}, nil
}

func (h *organizationHandler) ListTeams(ctx context.Context, req *rallyev1.ListTeamsRequest) (*rallyev1.ListTeamsResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	teams, err := h.org.ListTeams(ctx, p, org.ListTeamsRequest{Size: size, Cursor: cursor, IncludeInactive: req.GetIncludeInactive()})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListTeamsResponse{Teams: mapSlice(teams, teamToProto)}
	if len(teams) > 0 {
		res.NextPageToken = page.Next(teams[len(teams)-1].ID, len(teams), size)
	}
	return res, nil
}

func (h *organizationHandler) DeactivateTeam(ctx context.Context, req *rallyev1.DeactivateTeamRequest) (*rallyev1.DeactivateTeamResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	t, err := h.org.DeactivateTeam(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.DeactivateTeamResponse{Team: teamToProto(t)}, nil
}

func (h *organizationHandler) CreateUser(ctx context.Context, req *rallyev1.CreateUserRequest) (*rallyev1.CreateUserResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	in, err := userInputFromProto(req.GetUser())
	if err != nil {
		return nil, err
	}
	u, err := h.org.CreateUser(ctx, p, org.CreateUserRequest{User: in, RequestID: req.GetRequestId()})
	if err != nil {
		return nil, err
	}
	return &rallyev1.CreateUserResponse{User: userToProto(u)}, nil
}

func (h *organizationHandler) GetUser(ctx context.Context, req *rallyev1.GetUserRequest) (*rallyev1.GetUserResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	u, err := h.org.User(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.GetUserResponse{User: userToProto(u)}, nil
}

func (h *organizationHandler) UpdateUser(ctx context.Context, req *rallyev1.UpdateUserRequest) (*rallyev1.UpdateUserResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	mask := req.GetUpdateMask().GetPaths()
	if err := checkMasked(h.validator, req.GetUser(), "user", mask); err != nil {
		return nil, err
	}
	in, err := userInputFromProto(req.GetUser())
	if err != nil {
		return nil, err
	}
	var patch org.UserPatch
	for _, path := range mask {
		switch path {
		case "display_name":
			patch.DisplayName = &in.DisplayName
		case "email":
			patch.Email = &in.Email
		case "locale":
			patch.Locale = &in.Locale
		case "time_zone":
			patch.TimeZone = &in.TimeZone
		case "external_id":
			patch.ExternalID = &in.ExternalID
		case "roles":
			patch.Roles = &in.Roles
		case "team_ids":
			patch.TeamIDs = &in.TeamIDs
		case "hire_date":
			patch.HireDate = &in.HireDate
		}
	}
	u, err := h.org.UpdateUser(ctx, p, id, patch)
	if err != nil {
		return nil, err
	}
	return &rallyev1.UpdateUserResponse{User: userToProto(u)}, nil
}

func (h *organizationHandler) ListUsers(ctx context.Context, req *rallyev1.ListUsersRequest) (*rallyev1.ListUsersResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	cursor, err := page.Decode(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	team, err := parseOptionalID("team_id", req.GetTeamId())
	if err != nil {
		return nil, err
	}
	size := page.Size(req.GetPageSize())
	users, err := h.org.ListUsers(ctx, p, org.ListUsersRequest{
		Size: size, Cursor: cursor, TeamID: team, IncludeInactive: req.GetIncludeInactive(),
	})
	if err != nil {
		return nil, err
	}
	res := &rallyev1.ListUsersResponse{Users: mapSlice(users, userToProto)}
	if len(users) > 0 {
		res.NextPageToken = page.Next(users[len(users)-1].ID, len(users), size)
	}
	return res, nil
}

func (h *organizationHandler) DeactivateUser(ctx context.Context, req *rallyev1.DeactivateUserRequest) (*rallyev1.DeactivateUserResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	id, err := parseID("user_id", req.GetUserId())
	if err != nil {
		return nil, err
	}
	u, err := h.org.DeactivateUser(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return &rallyev1.DeactivateUserResponse{User: userToProto(u)}, nil
}

func (h *organizationHandler) ImportUsers(ctx context.Context, req *rallyev1.ImportUsersRequest) (*rallyev1.ImportUsersResponse, error) {
	p, _ := rallye.PrincipalFrom(ctx)
	rows := make([]org.ImportRow, len(req.GetUsers()))
	for i, u := range req.GetUsers() {
		err := checkPart(h.validator, u, "", nil)
		var in org.UserInput
		if err == nil {
			in, err = userInputFromProto(u)
		}
		if e, ok := rallye.AsError(err); ok {
			rows[i].Invalid = &org.RowError{Index: i, Field: e.Field, Message: e.Message}
			continue
		} else if err != nil {
			return nil, err
		}
		rows[i].User = in
	}
	res, err := h.org.ImportUsers(ctx, p, rows)
	if err != nil {
		return nil, err
	}
	out := &rallyev1.ImportUsersResponse{
		Created: int32(res.Created), Updated: int32(res.Updated), Unchanged: int32(res.Unchanged),
	}
	slices.SortFunc(res.Rejected, func(a, b org.RowError) int { return a.Index - b.Index })
	for _, r := range res.Rejected {
		out.Rejected = append(out.Rejected, &rallyev1.RowError{Index: proto.Int32(int32(r.Index)), Field: r.Field, Message: r.Message})
	}
	return out, nil
}
