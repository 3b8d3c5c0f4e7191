package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

func analyticsClient(srv *testserver.Server, p testserver.Protocol, token string) rallyev1connect.AnalyticsServiceClient {
	return rallyev1connect.NewAnalyticsServiceClient(p.Client, srv.URL, append(p.Opts, testserver.Bearer(token), recordForeign(token))...)
}

// TestParticipationEndToEnd is the README's scenario: hire dates come with
// the CRM import (and an update), a challenge runs, reps log calls; HR reads
// participation by team and tenure band, a rep reads only their own row,
// and a rep may not list who does not take part.
func TestParticipationEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	_, hrTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleHR})
	for _, proto := range testserver.Protocols()[:2] {
		t.Run(proto.Name, func(t *testing.T) {
			team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Île-de-France " + proto.Name})
			if err != nil {
				t.Fatal(err)
			}
			admin := orgClient(srv, proto, acme.AdminToken)
			var rows []*rallyev1.UserInput
			for i := range 6 {
				rows = append(rows, &rallyev1.UserInput{DisplayName: fmt.Sprintf("Rep %s %d", proto.Name, i),
					Email: fmt.Sprintf("rep-%s-%d@acme.test", proto.Name, i), Locale: rallyev1.Locale_LOCALE_FR,
					ExternalId: fmt.Sprintf("crm-%s-%d", proto.Name, i), Roles: []rallyev1.Role{rallyev1.Role_ROLE_REP},
					TeamIds: []string{team.ID.String()}, HireDate: time.Now().AddDate(0, 0, -30*i).Format(time.DateOnly)})
			}
			rows[5].HireDate = "1949-12-31"
			imp, err := admin.ImportUsers(ctx, &rallyev1.ImportUsersRequest{Users: rows})
			if err != nil || imp.Created != 5 || len(imp.Rejected) != 1 || imp.Rejected[0].Field != "hire_date" {
				t.Fatalf("import: %v, %v", imp, err)
			}
			list, err := admin.ListUsers(ctx, &rallyev1.ListUsersRequest{TeamId: team.ID.String(), PageSize: 500})
			if err != nil {
				t.Fatal(err)
			}
			var reps []*rallyev1.User
			for _, u := range list.Users {
				if strings.HasPrefix(u.ExternalId, "crm-"+proto.Name+"-") {
					reps = append(reps, u)
				}
			}
			if len(reps) != 5 || reps[0].HireDate == "" {
				t.Fatalf("imported reps: %v", reps)
			}
			upd, err := admin.UpdateUser(ctx, &rallyev1.UpdateUserRequest{UserId: reps[0].Id,
				User: &rallyev1.UserInput{HireDate: "2020-01-15"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"hire_date"}}})
			if err != nil || upd.User.HireDate != "2020-01-15" {
				t.Fatalf("update hire date: %v, %v", upd, err)
			}
			_, err = admin.UpdateUser(ctx, &rallyev1.UpdateUserRequest{UserId: reps[0].Id,
				User: &rallyev1.UserInput{HireDate: "2020-02-30"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"hire_date"}}})
			wantCode(t, err, connect.CodeInvalidArgument)

			created, err := clientsFor(srv, proto, acme.AdminToken).challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
				Definition: &rallyev1.ChallengeDefinition{Name: &rallyev1.LocalizedText{Fr: "Appels", En: "Calls"},
					ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"call.logged"}, Points: 10}}},
				TeamIds: []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)), Publish: true,
			})
			if err != nil {
				t.Fatal(err)
			}
			var events []*rallyev1.SalesEvent
			for i, r := range reps[:4] {
				events = append(events, &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("%s-call-%d", proto.Name, i),
					Type: "call.logged", OccurredAt: timestamppb.New(time.Now()), RepId: r.Id})
			}
			hr := analyticsClient(srv, proto, hrTok)
			req := &rallyev1.GetParticipationRequest{ChallengeIds: []string{created.Challenge.Id}, IncludePeople: true}
			eventually(t, "the calls count", func() error {
				if _, err := eventClient(srv, proto, acme.AdminToken).IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: events}); err != nil {
					return err
				}
				res, err := hr.GetParticipation(ctx, req)
				if err != nil {
					return err
				}
				if s := res.Total; s.Invited != 5 || s.OptedIn != 5 || s.Active != 4 || s.Points.GetMax() != 10 || s.Points.GetMin() != 0 {
					return fmt.Errorf("total %v", s)
				}
				return nil
			})
			res, err := hr.GetParticipation(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.MinGroupSize != 5 || len(res.People) != 5 || len(res.ByTeam) != 1 || res.ByTeam[0].TeamName != "Île-de-France "+proto.Name {
				t.Fatalf("participation: %v", res)
			}
			// Bands of 1 to 4 people out of 5: all withheld.
			for _, b := range res.ByTenure {
				if !b.Stats.Withheld {
					t.Fatalf("a band of fewer than 5 shown: %v", b)
				}
			}

			repTok := testserver.Token(t, org.User{TenantID: acme.Tenant.ID, ID: mustUUID(t, reps[1].Id), Roles: []rallye.Role{rallye.RoleRep}})
			mine, err := analyticsClient(srv, proto, repTok).GetParticipation(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if !mine.Total.Withheld || len(mine.People) != 1 || mine.People[0].UserId != reps[1].Id || len(mine.ByTeam) != 0 {
				t.Fatalf("a rep's view: %v", mine)
			}
			_, err = analyticsClient(srv, proto, repTok).ListNonParticipants(ctx, &rallyev1.ListNonParticipantsRequest{
				StartTime: timestamppb.New(time.Now().Add(-time.Hour)), EndTime: timestamppb.New(time.Now().Add(time.Hour))})
			wantCode(t, err, connect.CodePermissionDenied)
			np, err := hr.ListNonParticipants(ctx, &rallyev1.ListNonParticipantsRequest{
				StartTime: timestamppb.New(time.Now().Add(-time.Hour)), EndTime: timestamppb.New(time.Now().Add(2 * time.Hour))})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range np.People {
				if p.UserId == reps[4].Id {
					found = true
				}
			}
			if !found {
				t.Fatalf("the rep without a call is not listed: %v (%v)", np.People, np.ByTeam)
			}
		})
	}
}

// TestAnalyticsRPCsOtherTenant: another company's admin names this
// company's challenge or team (NotFound) and reads or changes only their
// own settings.
func TestAnalyticsRPCsOtherTenant(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	proto := testserver.Protocols()[0]
	created, err := clientsFor(srv, proto, acme.AdminToken).challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{Name: &rallyev1.LocalizedText{Fr: "Appels", En: "Calls"},
			ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"call.logged"}, Points: 10}}},
		TeamIds: []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)),
	})
	if err != nil {
		t.Fatal(err)
	}
	mine := analyticsClient(srv, proto, acme.AdminToken)
	if _, err := mine.UpdateAnalyticsSettings(ctx, &rallyev1.UpdateAnalyticsSettingsRequest{
		Settings: &rallyev1.AnalyticsSettings{MinGroupSize: 7}}); err != nil {
		t.Fatal(err)
	}
	other := analyticsClient(srv, proto, foreign(globex.AdminToken))
	window := func() (*timestamppb.Timestamp, *timestamppb.Timestamp) {
		return timestamppb.New(time.Now().Add(-time.Hour)), timestamppb.New(time.Now().Add(time.Hour))
	}
	t.Run("GetParticipation", func(t *testing.T) {
		_, err := other.GetParticipation(ctx, &rallyev1.GetParticipationRequest{ChallengeIds: []string{created.Challenge.Id}})
		wantCode(t, err, connect.CodeNotFound)
		_, err = other.GetParticipation(ctx, &rallyev1.GetParticipationRequest{TeamId: team.ID.String()})
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("GetImpact", func(t *testing.T) {
		_, err := other.GetImpact(ctx, &rallyev1.GetImpactRequest{ChallengeId: created.Challenge.Id})
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("ListNonParticipants", func(t *testing.T) {
		from, to := window()
		_, err := other.ListNonParticipants(ctx, &rallyev1.ListNonParticipantsRequest{StartTime: from, EndTime: to, TeamId: team.ID.String()})
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("GetAnalyticsSettings", func(t *testing.T) {
		res, err := other.GetAnalyticsSettings(ctx, &rallyev1.GetAnalyticsSettingsRequest{})
		if err != nil || res.Settings.MinGroupSize != 5 {
			t.Fatalf("%v, %v: another company's settings", res, err)
		}
	})
	t.Run("UpdateAnalyticsSettings", func(t *testing.T) {
		if _, err := other.UpdateAnalyticsSettings(ctx, &rallyev1.UpdateAnalyticsSettingsRequest{
			Settings: &rallyev1.AnalyticsSettings{MinGroupSize: 9}}); err != nil {
			t.Fatal(err)
		}
		res, err := mine.GetAnalyticsSettings(ctx, &rallyev1.GetAnalyticsSettingsRequest{})
		if err != nil || res.Settings.MinGroupSize != 7 {
			t.Fatalf("%v, %v: acme's settings changed", res, err)
		}
	})
	t.Run("ErrInvalidMinGroupSize", func(t *testing.T) {
		_, err := mine.UpdateAnalyticsSettings(ctx, &rallyev1.UpdateAnalyticsSettingsRequest{Settings: &rallyev1.AnalyticsSettings{MinGroupSize: 1}})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}
