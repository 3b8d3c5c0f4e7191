package api_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func accessClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.AccessServiceClient {
	opts := append([]connect.ClientOption{}, p.Opts...)
	opts = append(opts, testserver.Bearer(token), recordForeign(token))
	return rallyev1connect.NewAccessServiceClient(p.Client, srv.URL, opts...)
}

// Another company's admin, on the company-wide RPCs of organisation, API
// keys and sources: what they name of the first company is NotFound, what
// they list or change is their own.
func TestOrganizationRPCsOtherTenant(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	proto := testserver.Protocols()[0]

	mine := orgClient(srv, proto, acme.AdminToken)
	region, err := mine.CreateTeam(ctx, &rallyev1.CreateTeamRequest{Name: "Région Nord", ExternalId: "team-north"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := accessClient(srv, proto, acme.AdminToken).CreateApiKey(ctx, &rallyev1.CreateApiKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	if res, err := eventClient(srv, proto, key.Secret).IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{{
		Source: "acme-crm", ExternalId: "c1", Type: "call.logged", OccurredAt: timestamppb.New(at), RepId: acme.Admin.ID.String(),
	}}}); err != nil || res.Accepted != 1 {
		t.Fatalf("ingest: %v, %v", res, err)
	}

	other := orgClient(srv, proto, foreign(globex.AdminToken))
	keys := accessClient(srv, proto, foreign(globex.AdminToken))
	mask := func(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

	t.Run("TeamsOfTheFirstCompanyAreNotFound", func(t *testing.T) {
		_, err := other.UpdateTeam(ctx, &rallyev1.UpdateTeamRequest{TeamId: region.Team.Id,
			Team: &rallyev1.TeamUpdate{Name: "Hijacked"}, UpdateMask: mask("name")})
		wantCode(t, err, connect.CodeNotFound)
		_, err = other.DeactivateTeam(ctx, &rallyev1.DeactivateTeamRequest{TeamId: region.Team.Id})
		wantCode(t, err, connect.CodeNotFound)
		_, err = other.CreateTeam(ctx, &rallyev1.CreateTeamRequest{Name: "Under theirs", ParentId: region.Team.Id})
		wantCode(t, err, connect.CodeNotFound)
		list, err := other.ListTeams(ctx, &rallyev1.ListTeamsRequest{IncludeInactive: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, tm := range list.Teams {
			if tm.Id == region.Team.Id {
				t.Fatal("another company's team is listed")
			}
		}
	})
	t.Run("UpdatesValidateOnlyTheMaskedFields", func(t *testing.T) {
		moved, err := mine.UpdateTeam(ctx, &rallyev1.UpdateTeamRequest{TeamId: region.Team.Id,
			Team: &rallyev1.TeamUpdate{ExternalId: "team-north-2"}, UpdateMask: mask("external_id")})
		if err != nil || moved.Team.Name != "Région Nord" || moved.Team.ExternalId != "team-north-2" {
			t.Fatalf("UpdateTeam external_id only: %v, %v", moved, err)
		}
		_, err = mine.UpdateTeam(ctx, &rallyev1.UpdateTeamRequest{TeamId: region.Team.Id,
			Team: &rallyev1.TeamUpdate{}, UpdateMask: mask("name")})
		wantField(t, err, "team.name")
		_, err = mine.UpdateTeam(ctx, &rallyev1.UpdateTeamRequest{TeamId: region.Team.Id, UpdateMask: mask("name")})
		wantField(t, err, "team")
		_, err = mine.UpdateTenant(ctx, &rallyev1.UpdateTenantRequest{Tenant: &rallyev1.TenantUpdate{}, UpdateMask: mask("default_locale")})
		wantField(t, err, "tenant.default_locale")
		zone, err := mine.UpdateTenant(ctx, &rallyev1.UpdateTenantRequest{Tenant: &rallyev1.TenantUpdate{TimeZone: "America/Montreal"},
			UpdateMask: mask("time_zone")})
		if err != nil || zone.Tenant.TimeZone != "America/Montreal" || zone.Tenant.Name != acme.Tenant.Name {
			t.Fatalf("UpdateTenant time_zone only: %v, %v", zone, err)
		}
	})
	t.Run("TenantAndMeAreTheirOwn", func(t *testing.T) {
		me, err := other.GetMe(ctx, &rallyev1.GetMeRequest{})
		if err != nil || me.Tenant.Id != globex.Tenant.ID.String() || me.User.Id != globex.Admin.ID.String() {
			t.Fatalf("GetMe = %v, %v", me, err)
		}
		got, err := other.GetTenant(ctx, &rallyev1.GetTenantRequest{})
		if err != nil || got.Tenant.Id != globex.Tenant.ID.String() {
			t.Fatalf("GetTenant = %v, %v", got, err)
		}
		if _, err := other.UpdateTenant(ctx, &rallyev1.UpdateTenantRequest{Tenant: &rallyev1.TenantUpdate{Name: "Renamed"},
			UpdateMask: mask("name")}); err != nil {
			t.Fatal(err)
		}
		first, err := mine.GetTenant(ctx, &rallyev1.GetTenantRequest{})
		if err != nil || first.Tenant.Name == "Renamed" || first.Tenant.Name != acme.Tenant.Name {
			t.Fatalf("the first company was renamed: %v, %v", first, err)
		}
	})
	t.Run("ImportCannotJoinTheFirstCompanysTeams", func(t *testing.T) {
		res, err := other.ImportUsers(ctx, &rallyev1.ImportUsersRequest{Users: []*rallyev1.UserInput{{
			DisplayName: "Mole", Email: "mole@globex.test", Locale: rallyev1.Locale_LOCALE_EN, ExternalId: "mole",
			Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP}, TeamIds: []string{region.Team.Id},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != 0 || len(res.Rejected) != 1 {
			t.Fatalf("import into another company's team: %v", res)
		}
		members, err := mine.ListUsers(ctx, &rallyev1.ListUsersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range members.Users {
			if u.ExternalId == "mole" {
				t.Fatal("the import reached the first company")
			}
		}
	})
	t.Run("ApiKeysAreTheirOwn", func(t *testing.T) {
		_, err := keys.RevokeApiKey(ctx, &rallyev1.RevokeApiKeyRequest{ApiKeyId: key.ApiKey.Id})
		wantCode(t, err, connect.CodeNotFound)
		theirs, err := keys.CreateApiKey(ctx, &rallyev1.CreateApiKeyRequest{Name: "globex-crm"})
		if err != nil {
			t.Fatal(err)
		}
		list, err := keys.ListApiKeys(ctx, &rallyev1.ListApiKeysRequest{})
		if err != nil || len(list.ApiKeys) != 1 || list.ApiKeys[0].Id != theirs.ApiKey.Id {
			t.Fatalf("ListApiKeys = %v, %v", list, err)
		}
		// The first company's key still works, and the new one does not
		// read the first company's sources.
		if _, err := eventClient(srv, proto, key.Secret).GetSourceWatermarks(ctx, &rallyev1.GetSourceWatermarksRequest{}); err != nil {
			t.Fatalf("the first company's key was revoked: %v", err)
		}
	})
	t.Run("SourcesAreTheirOwn", func(t *testing.T) {
		first, err := eventClient(srv, proto, acme.AdminToken).GetSourceWatermarks(ctx, &rallyev1.GetSourceWatermarksRequest{})
		if err != nil || len(first.Sources) != 1 || first.Sources[0].Source != "acme-crm" {
			t.Fatalf("the first company's sources: %v, %v", first, err)
		}
		theirs, err := eventClient(srv, proto, foreign(globex.AdminToken)).GetSourceWatermarks(ctx, &rallyev1.GetSourceWatermarksRequest{})
		if err != nil || len(theirs.Sources) != 0 {
			t.Fatalf("another company sees sources %v (%v)", theirs.GetSources(), err)
		}
	})
}
