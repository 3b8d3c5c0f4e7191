package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/holdout"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestHoldoutEndToEnd: a manager launches a challenge keeping a quarter of
// the team out (seed 42). The held-out people are exactly those the
// recorded seed draws again, they are not enrolled and do not even see the
// challenge; participation counts only the others; the impact compares
// against the holdout and, with no sales yet, says "not enough data"
// without a number; reps may not read it.
func TestHoldoutEndToEnd(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	_, mgrTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, team)
	_, hrTok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleHR})
	var members []holdout.Member
	tokens := map[uuid.UUID]string{}
	for range 20 {
		u, tok := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, team)
		members = append(members, holdout.Member{ID: u.ID, Stratum: team.ID})
		tokens[u.ID] = tok
	}
	proto := testserver.Protocols()[0]
	if _, err := kpiClient(srv, proto, acme.AdminToken).InstallModel(ctx, &rallyev1.InstallModelRequest{}); err != nil {
		t.Fatal(err)
	}
	seed := int64(42)
	created, err := clientsFor(srv, proto, mgrTok).challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{Name: &rallyev1.LocalizedText{Fr: "Appels", En: "Calls"},
			ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"call.logged"}, Points: 10}}},
		TeamIds: []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)), Publish: true,
		Holdout: &rallyev1.HoldoutRequest{Share: 0.25, Seed: &seed},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := created.Challenge.Holdout
	if h.GetShare() != 0.25 || h.GetSeed() != 42 || h.GetSize() != 5 {
		t.Fatalf("holdout %v", h)
	}
	held := holdout.Draw(42, 0.25, members)
	id := created.Challenge.Id
	admin := clientsFor(srv, proto, acme.AdminToken)
	eventually(t, "the others are enrolled", func() error {
		res, err := admin.challenges.ListChallengeParticipants(ctx, &rallyev1.ListChallengeParticipantsRequest{ChallengeId: id, PageSize: 200})
		if err != nil {
			return err
		}
		enrolled := 0
		for _, p := range res.Participants {
			if !p.Participation.Enrolled {
				continue
			}
			enrolled++
			if holdout.Contains(held, uuid.MustParse(p.Participation.UserId)) {
				return fmt.Errorf("held-out %s is enrolled", p.Participation.UserId)
			}
		}
		if enrolled != 15 {
			return fmt.Errorf("%d enrolled, want 15", enrolled)
		}
		return nil
	})
	for _, u := range held {
		_, err := clientsFor(srv, proto, tokens[u]).challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		wantCode(t, err, connect.CodeNotFound)
		_, err = clientsFor(srv, proto, tokens[u]).challenges.JoinChallenge(ctx, &rallyev1.JoinChallengeRequest{ChallengeId: id})
		if err == nil {
			t.Fatal("a held-out person joined")
		}
	}
	part, err := analyticsClient(srv, proto, hrTok).GetParticipation(ctx, &rallyev1.GetParticipationRequest{ChallengeIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if part.Total.Invited != 15 || part.Total.OptedIn != 15 {
		t.Fatalf("participation %v", part.Total)
	}
	imp, err := analyticsClient(srv, proto, mgrTok).GetImpact(ctx, &rallyev1.GetImpactRequest{ChallengeId: id})
	if err != nil {
		t.Fatal(err)
	}
	if imp.Control != rallyev1.ControlGroup_CONTROL_GROUP_HOLDOUT || imp.HoldoutSeed != 42 || len(imp.Impacts) != 3 || imp.MinSample != 10 {
		t.Fatalf("impact %v", imp)
	}
	for _, k := range imp.Impacts {
		if k.EnoughData || k.Estimate != 0 || k.Low != 0 || k.High != 0 {
			t.Fatalf("a number without data: %v", k)
		}
	}
	_, err = analyticsClient(srv, proto, tokens[members[0].ID]).GetImpact(ctx, &rallyev1.GetImpactRequest{ChallengeId: id})
	wantCode(t, err, connect.CodePermissionDenied)
	_, err = analyticsClient(srv, proto, mgrTok).GetImpact(ctx, &rallyev1.GetImpactRequest{ChallengeId: id, KpiKeys: []string{"no_such_kpi"}})
	wantCode(t, err, connect.CodeNotFound)
}
