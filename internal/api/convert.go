package api

import (
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

var rolesToProto = map[rallye.Role]rallyev1.Role{
	rallye.RoleRep:         rallyev1.Role_ROLE_REP,
	rallye.RoleManager:     rallyev1.Role_ROLE_MANAGER,
	rallye.RoleHR:          rallyev1.Role_ROLE_HR,
	rallye.RoleAdmin:       rallyev1.Role_ROLE_ADMIN,
	rallye.RoleIntegration: rallyev1.Role_ROLE_INTEGRATION,
}

var rolesFromProto = func() map[rallyev1.Role]rallye.Role {
	m := map[rallyev1.Role]rallye.Role{}
	for k, v := range rolesToProto {
		m[v] = k
	}
	return m
}()

func roleList(roles []rallye.Role) []rallyev1.Role {
	out := make([]rallyev1.Role, 0, len(roles))
	for _, r := range roles {
		out = append(out, rolesToProto[r])
	}
	return out
}

func domainRoles(roles []rallyev1.Role) []rallye.Role {
	out := make([]rallye.Role, 0, len(roles))
	for _, r := range roles {
		out = append(out, rolesFromProto[r])
	}
	return out
}

func localeToProto(l org.Locale) rallyev1.Locale {
	switch l {
	case org.LocaleFR:
		return rallyev1.Locale_LOCALE_FR
	case org.LocaleEN:
		return rallyev1.Locale_LOCALE_EN
	}
	return rallyev1.Locale_LOCALE_UNSPECIFIED
}

func localeFromProto(l rallyev1.Locale) org.Locale {
	switch l {
	case rallyev1.Locale_LOCALE_FR:
		return org.LocaleFR
	case rallyev1.Locale_LOCALE_EN:
		return org.LocaleEN
	}
	return ""
}

// parseID parses an id field; protovalidate has already checked its shape,
// so an error here means a rule is missing in the proto.
func parseID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, rallye.Invalid(field, "is not a UUID")
	}
	return id, nil
}

// parseOptionalID is parseID where "" means none.
func parseOptionalID(field, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	return parseID(field, s)
}

func parseIDs(field string, ss []string) ([]uuid.UUID, error) {
	out := make([]uuid.UUID, 0, len(ss))
	for _, s := range ss {
		id, err := parseID(field, s)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

func idString(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}

func idStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func optionalTimestamp(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

func tenantToProto(t org.Tenant) *rallyev1.Tenant {
	return &rallyev1.Tenant{
		Id: t.ID.String(), Name: t.Name, Slug: t.Slug, TimeZone: t.TimeZone,
		DefaultLocale: localeToProto(t.DefaultLocale), CreateTime: timestamp(t.CreatedAt), Currency: t.Currency,
	}
}

func teamToProto(t org.Team) *rallyev1.Team {
	return &rallyev1.Team{
		Id: t.ID.String(), Name: t.Name, ParentId: idString(t.ParentID), ExternalId: t.ExternalID,
		Active: t.Active, CreateTime: timestamp(t.CreatedAt), UpdateTime: timestamp(t.UpdatedAt),
	}
}

func userToProto(u org.User) *rallyev1.User {
	return &rallyev1.User{
		Id: u.ID.String(), DisplayName: u.DisplayName, Email: u.Email, Locale: localeToProto(u.Locale),
		TimeZone: u.TimeZone, ExternalId: u.ExternalID, Roles: roleList(u.Roles), TeamIds: idStrings(u.TeamIDs),
		Active: u.Active, CreateTime: timestamp(u.CreatedAt), UpdateTime: timestamp(u.UpdatedAt),
		HireDate: formatDay(u.HireDate),
	}
}

func userInputFromProto(in *rallyev1.UserInput) (org.UserInput, error) {
	teamIDs, err := parseIDs("team_ids", in.GetTeamIds())
	if err != nil {
		return org.UserInput{}, err
	}
	var hired time.Time
	if in.GetHireDate() != "" {
		if hired, err = parseDay("hire_date", in.GetHireDate()); err != nil {
			return org.UserInput{}, err
		}
	}
	return org.UserInput{
		DisplayName: in.GetDisplayName(), Email: in.GetEmail(), Locale: localeFromProto(in.GetLocale()),
		TimeZone: in.GetTimeZone(), ExternalID: in.GetExternalId(), Roles: domainRoles(in.GetRoles()),
		TeamIDs: teamIDs, HireDate: hired,
	}, nil
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
