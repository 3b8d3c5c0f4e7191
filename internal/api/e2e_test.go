package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func orgClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.OrganizationServiceClient {
	opts := append([]connect.ClientOption{}, p.Opts...)
	if token != "" {
		opts = append(opts, testserver.Bearer(token), recordForeign(token))
	}
	return rallyev1connect.NewOrganizationServiceClient(p.Client, srv.URL, opts...)
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("got %v (%v), want %v", connect.CodeOf(err), err, code)
	}
}

// wantField checks that err is InvalidArgument naming field.
func wantField(t *testing.T, err error, field string) {
	t.Helper()
	wantCode(t, err, connect.CodeInvalidArgument)
	var ce *connect.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Message(), field) {
		t.Fatalf("error does not name %s: %v", field, err)
	}
}

// TestOrganizationEndToEnd drives the real server with the generated client
// over Connect, gRPC and gRPC-Web.
func TestOrganizationEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)

	for _, proto := range testserver.Protocols() {
		t.Run(proto.Name, func(t *testing.T) {
			ctx := context.Background()
			admin := orgClient(srv, proto, acme.AdminToken)

			region, err := admin.CreateTeam(ctx, &rallyev1.CreateTeamRequest{Name: "Région Nord " + proto.Name, RequestId: "north-" + proto.Name})
			if err != nil {
				t.Fatal(err)
			}
			again, err := admin.CreateTeam(ctx, &rallyev1.CreateTeamRequest{Name: "Région Nord " + proto.Name, RequestId: "north-" + proto.Name})
			if err != nil {
				t.Fatal(err)
			}
			if again.Team.Id != region.Team.Id {
				t.Fatalf("replayed CreateTeam made a second team %s (first %s)", again.Team.Id, region.Team.Id)
			}
			_, err = admin.CreateTeam(ctx, &rallyev1.CreateTeamRequest{Name: "Another name", RequestId: "north-" + proto.Name})
			wantCode(t, err, connect.CodeInvalidArgument)

			rep, err := admin.CreateUser(ctx, &rallyev1.CreateUserRequest{User: &rallyev1.UserInput{
				DisplayName: "Camille Dubois", Email: "camille." + proto.Name + "@acme.test", Locale: rallyev1.Locale_LOCALE_FR,
				ExternalId: "crm-" + proto.Name, Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP}, TeamIds: []string{region.Team.Id},
			}})
			if err != nil {
				t.Fatal(err)
			}
			repUser, err := srv.App.Org.User(ctx, acme.Operator, mustUUID(t, rep.User.Id))
			if err != nil {
				t.Fatal(err)
			}
			repClient := orgClient(srv, proto, testserver.Token(t, repUser))
			me, err := repClient.GetMe(ctx, &rallyev1.GetMeRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if me.User.Id != rep.User.Id || len(me.User.TeamIds) != 1 || me.User.TeamIds[0] != region.Team.Id {
				t.Fatalf("GetMe = %v", me.User)
			}

			t.Run("ErrPermissionDenied", func(t *testing.T) {
				_, err := repClient.CreateTeam(ctx, &rallyev1.CreateTeamRequest{Name: "Rogue"})
				wantCode(t, err, connect.CodePermissionDenied)
			})
			t.Run("ErrUnauthenticated", func(t *testing.T) {
				_, err := orgClient(srv, proto, "").GetMe(ctx, &rallyev1.GetMeRequest{})
				wantCode(t, err, connect.CodeUnauthenticated)
			})
			t.Run("ErrOtherTenant", func(t *testing.T) {
				other := orgClient(srv, proto, foreign(globex.AdminToken))
				_, err := other.GetTeam(ctx, &rallyev1.GetTeamRequest{TeamId: region.Team.Id})
				wantCode(t, err, connect.CodeNotFound)
				_, err = other.GetUser(ctx, &rallyev1.GetUserRequest{UserId: rep.User.Id})
				wantCode(t, err, connect.CodeNotFound)
				_, err = other.UpdateUser(ctx, &rallyev1.UpdateUserRequest{UserId: rep.User.Id,
					User: &rallyev1.UserInput{DisplayName: "Hijacked"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
				wantCode(t, err, connect.CodeNotFound)
				_, err = other.DeactivateUser(ctx, &rallyev1.DeactivateUserRequest{UserId: rep.User.Id})
				wantCode(t, err, connect.CodeNotFound)
				_, err = other.CreateUser(ctx, &rallyev1.CreateUserRequest{User: &rallyev1.UserInput{
					DisplayName: "X", Email: "x-" + proto.Name + "@globex.test", Locale: rallyev1.Locale_LOCALE_EN,
					Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP}, TeamIds: []string{region.Team.Id}}})
				wantCode(t, err, connect.CodeNotFound)
				list, err := other.ListUsers(ctx, &rallyev1.ListUsersRequest{})
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range list.Users {
					if u.Id == rep.User.Id {
						t.Fatal("another company's person is listed")
					}
				}
			})
			t.Run("ErrInvalidNamesField", func(t *testing.T) {
				_, err := admin.CreateUser(ctx, &rallyev1.CreateUserRequest{User: &rallyev1.UserInput{
					DisplayName: "Bad", Email: "not-an-email", Locale: rallyev1.Locale_LOCALE_FR, Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP}}})
				wantField(t, err, "user.email")
				_, err = admin.UpdateUser(ctx, &rallyev1.UpdateUserRequest{UserId: rep.User.Id,
					User: &rallyev1.UserInput{TimeZone: "Mars/Olympus"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"time_zone"}}})
				wantField(t, err, "user.time_zone")
			})
			t.Run("DeactivatedPersonIsLockedOut", func(t *testing.T) {
				if _, err := admin.DeactivateUser(ctx, &rallyev1.DeactivateUserRequest{UserId: rep.User.Id}); err != nil {
					t.Fatal(err)
				}
				_, err := repClient.GetMe(ctx, &rallyev1.GetMeRequest{})
				wantCode(t, err, connect.CodeUnauthenticated)
			})
		})
	}
}

func TestDemotedManagerLosesRightsAtOnce(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	hr, token := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleHR})
	proto := testserver.Protocols()[0]
	client := orgClient(srv, proto, token)
	if _, err := client.ListUsers(ctx, &rallyev1.ListUsersRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := orgClient(srv, proto, acme.AdminToken).UpdateUser(ctx, &rallyev1.UpdateUserRequest{UserId: hr.ID.String(),
		User: &rallyev1.UserInput{Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"roles"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.ListUsers(ctx, &rallyev1.ListUsersRequest{})
	wantCode(t, err, connect.CodePermissionDenied)
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatal("not a connect error")
	}
}
