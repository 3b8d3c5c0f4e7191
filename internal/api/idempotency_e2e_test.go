package api_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// reusedRequestID reports whether err says that a request id was already
// used (what another caller must never learn).
func reusedRequestID(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return false
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok && info.Reason == "REQUEST_ID_REUSED" {
				return true
			}
		}
	}
	return false
}

// TestRequestIDsAreThePropertyOfTheirCaller replays one caller's request ids
// as another caller of the same company: B gets its own object or a
// refusal, never A's, and never learns that A used the id.
func TestRequestIDsAreThePropertyOfTheirCaller(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	north, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	south, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Sud"})
	if err != nil {
		t.Fatal(err)
	}
	_, managerA := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, north)
	_, managerB := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, south)
	repA, repAToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, north)
	repB, repBToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, north)
	repC, repCToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, north)
	proto := testserver.Protocols()[0]
	a, b := clientsFor(srv, proto, managerA), clientsFor(srv, proto, managerB)

	launch := func(team org.Team) *rallyev1.CreateChallengeFromTemplateRequest {
		return &rallyev1.CreateChallengeFromTemplateRequest{TemplateKey: "prospecting", TeamIds: []string{team.ID.String()},
			RequestId: "launch-1"}
	}
	mine, err := a.challenges.CreateChallengeFromTemplate(ctx, launch(north))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ManagerReplaysSameBody", func(t *testing.T) {
		// B may not launch for A's team: refused, not handed A's draft.
		res, err := b.challenges.CreateChallengeFromTemplate(ctx, launch(north))
		if res.GetChallenge().GetId() == mine.Challenge.Id {
			t.Fatal("manager B received manager A's challenge")
		}
		wantCode(t, err, connect.CodePermissionDenied)
	})
	t.Run("ManagerSameIDOtherBody", func(t *testing.T) {
		res, err := b.challenges.CreateChallengeFromTemplate(ctx, launch(south))
		if reusedRequestID(err) {
			t.Fatalf("manager B learnt that the id was used: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if res.Challenge.Id == mine.Challenge.Id || len(res.Challenge.TeamIds) != 1 || res.Challenge.TeamIds[0] != south.ID.String() {
			t.Fatalf("manager B got %v, want a challenge of their own for %s", res.Challenge, south.ID)
		}
		again, err := b.challenges.CreateChallengeFromTemplate(ctx, launch(south))
		if err != nil || again.Challenge.Id != res.Challenge.Id {
			t.Fatalf("B's own replay: %v %v, want %s", again.GetChallenge().GetId(), err, res.Challenge.Id)
		}
	})
	t.Run("OwnReplay", func(t *testing.T) {
		again, err := a.challenges.CreateChallengeFromTemplate(ctx, launch(north))
		if err != nil || again.Challenge.Id != mine.Challenge.Id {
			t.Fatalf("A's replay: %v %v, want %s", again.GetChallenge().GetId(), err, mine.Challenge.Id)
		}
	})

	// A running challenge with a manual mission every rep of the team takes.
	created, err := clientsFor(srv, proto, acme.AdminToken).challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{
			Name: &rallyev1.LocalizedText{Fr: "Preuves", En: "Evidence"},
			Missions: []*rallyev1.Mission{{Key: "case", Name: &rallyev1.LocalizedText{Fr: "Cas", En: "Case"}, Points: 5,
				Condition: &rallyev1.Mission_Manual{Manual: &rallyev1.ManualCondition{Kind: rallyev1.ManualKind_MANUAL_KIND_EVIDENCE}}}},
		},
		TeamIds: []string{north.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(evidence string) *rallyev1.SubmitMissionRequest {
		return &rallyev1.SubmitMissionRequest{ChallengeId: created.Challenge.Id, MissionId: created.Challenge.Definition.Missions[0].Id,
			EvidenceUrl: evidence, RequestId: "submit-1"}
	}
	var theirs *rallyev1.MissionSubmission
	eventually(t, "the challenge starts and rep A submits", func() error {
		res, err := clientsFor(srv, proto, repAToken).missions.SubmitMission(ctx, submit("https://drive.example/a-secret.pdf"))
		theirs = res.GetSubmission()
		return err
	})
	cases := []struct {
		name     string
		rep      org.User
		token    string
		evidence string
	}{
		{"RepReplaysSameBody", repB, repBToken, "https://drive.example/a-secret.pdf"},
		{"RepSameIDOtherBody", repC, repCToken, "https://drive.example/c.pdf"},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			res, err := clientsFor(srv, proto, tt.token).missions.SubmitMission(ctx, submit(tt.evidence))
			if reusedRequestID(err) {
				t.Fatalf("rep learnt that the id was used: %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			got := res.Submission
			if got.Id == theirs.Id || got.UserId != tt.rep.ID.String() || got.EvidenceUrl != tt.evidence {
				t.Fatalf("rep %s got submission %v; rep A's is %s (user %s)", tt.rep.ID, got, theirs.Id, repA.ID)
			}
		})
	}
}
