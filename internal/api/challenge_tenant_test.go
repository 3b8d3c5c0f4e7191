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
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestChallengeRPCsOtherTenant calls every challenge, template and mission
// procedure with another company's admin token on this company's objects:
// ids are NotFound, lists show nothing of this company, template changes
// stay in their company. A procedure without a case fails the test.
func TestChallengeRPCsOtherTenant(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	globex := testserver.NewCompany(t, srv.App.Org)
	team, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	_, repToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, team)
	proto := testserver.Protocols()[0]
	mine := clientsFor(srv, proto, acme.AdminToken)
	created, err := mine.challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{
			Name: &rallyev1.LocalizedText{Fr: "Preuves", En: "Evidence"},
			Missions: []*rallyev1.Mission{{Key: "case", Name: &rallyev1.LocalizedText{Fr: "Cas", En: "Case"}, Points: 5,
				Condition: &rallyev1.Mission_Manual{Manual: &rallyev1.ManualCondition{Kind: rallyev1.ManualKind_MANUAL_KIND_EVIDENCE}}}},
		},
		TeamIds: []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	id, mission := created.Challenge.Id, created.Challenge.Definition.Missions[0].Id
	rep := clientsFor(srv, proto, repToken)
	var submission string
	eventually(t, "the challenge starts and the rep submits", func() error {
		s, err := rep.missions.SubmitMission(ctx, &rallyev1.SubmitMissionRequest{ChallengeId: id, MissionId: mission,
			EvidenceUrl: "https://drive.example/case.pdf"})
		if err != nil {
			return err
		}
		submission = s.Submission.Id
		return nil
	})
	draft, err := mine.challenges.CreateChallengeFromTemplate(ctx, &rallyev1.CreateChallengeFromTemplateRequest{
		TemplateKey: "prospecting", TeamIds: []string{team.ID.String()}})
	if err != nil {
		t.Fatal(err)
	}

	other := clientsFor(srv, proto, foreign(globex.AdminToken))
	notFound := func(_ any, err error) error {
		if connect.CodeOf(err) != connect.CodeNotFound {
			return fmt.Errorf("got %v (%v), want not_found", connect.CodeOf(err), err)
		}
		return nil
	}
	name := &rallyev1.LocalizedText{Fr: "x", En: "x"}
	cases := map[string]func() error{
		"CreateChallenge": func() error {
			return notFound(other.challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
				Definition: &rallyev1.ChallengeDefinition{Name: name, ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"call.logged"}, Points: 1}}},
				TeamIds:    []string{team.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour))}))
		},
		"CreateChallengeFromTemplate": func() error {
			return notFound(other.challenges.CreateChallengeFromTemplate(ctx, &rallyev1.CreateChallengeFromTemplateRequest{
				TemplateKey: "upsell", TeamIds: []string{team.ID.String()}}))
		},
		"GetChallenge": func() error {
			return notFound(other.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id}))
		},
		"UpdateChallenge": func() error {
			return notFound(other.challenges.UpdateChallenge(ctx, &rallyev1.UpdateChallengeRequest{ChallengeId: id,
				Definition: &rallyev1.ChallengeDefinition{Name: name}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"name"}}}))
		},
		"PublishChallenge": func() error {
			return notFound(other.challenges.PublishChallenge(ctx, &rallyev1.PublishChallengeRequest{ChallengeId: draft.Challenge.Id}))
		},
		"ExtendChallenge": func() error {
			return notFound(other.challenges.ExtendChallenge(ctx, &rallyev1.ExtendChallengeRequest{ChallengeId: id,
				EndTime: timestamppb.New(time.Now().Add(2 * time.Hour))}))
		},
		"EndChallenge": func() error {
			return notFound(other.challenges.EndChallenge(ctx, &rallyev1.EndChallengeRequest{ChallengeId: id}))
		},
		"CancelChallenge": func() error {
			return notFound(other.challenges.CancelChallenge(ctx, &rallyev1.CancelChallengeRequest{ChallengeId: id}))
		},
		"JoinChallenge": func() error {
			return notFound(other.challenges.JoinChallenge(ctx, &rallyev1.JoinChallengeRequest{ChallengeId: id}))
		},
		"SetParticipantTarget": func() error {
			return notFound(other.challenges.SetParticipantTarget(ctx, &rallyev1.SetParticipantTargetRequest{ChallengeId: id,
				UserId: acme.Admin.ID.String(), TargetPoints: 10}))
		},
		"ListMyChallenges": func() error {
			res, err := other.challenges.ListMyChallenges(ctx, &rallyev1.ListMyChallengesRequest{Window: rallyev1.ChallengeWindow_CHALLENGE_WINDOW_ACTIVE})
			if err != nil || len(res.Challenges) != 0 {
				return fmt.Errorf("%d challenges, %v", len(res.GetChallenges()), err)
			}
			return nil
		},
		"ListChallenges": func() error {
			res, err := other.challenges.ListChallenges(ctx, &rallyev1.ListChallengesRequest{})
			if err != nil || len(res.Challenges) != 0 {
				return fmt.Errorf("%d challenges, %v", len(res.GetChallenges()), err)
			}
			return nil
		},
		"GetChallengeStandings": func() error {
			return notFound(other.challenges.GetChallengeStandings(ctx, &rallyev1.GetChallengeStandingsRequest{ChallengeId: id}))
		},
		"ListChallengeParticipants": func() error {
			return notFound(other.challenges.ListChallengeParticipants(ctx, &rallyev1.ListChallengeParticipantsRequest{ChallengeId: id}))
		},
		"ListChallengeTemplates": func() error {
			res, err := other.templates.ListChallengeTemplates(ctx, &rallyev1.ListChallengeTemplatesRequest{})
			if err != nil || len(res.Templates) != 3 {
				return fmt.Errorf("%v %v", res, err)
			}
			return nil
		},
		"GetChallengeTemplate": func() error {
			_, err := other.templates.GetChallengeTemplate(ctx, &rallyev1.GetChallengeTemplateRequest{Key: "acme-only"})
			return notFound(nil, err)
		},
		"UpdateChallengeTemplate": func() error {
			tpl, err := mine.templates.GetChallengeTemplate(ctx, &rallyev1.GetChallengeTemplateRequest{Key: "upsell"})
			if err != nil {
				return err
			}
			def := tpl.Template.Definition
			def.Name = &rallyev1.LocalizedText{Fr: "Upsell Globex", En: "Globex upsell"}
			if _, err := other.templates.UpdateChallengeTemplate(ctx, &rallyev1.UpdateChallengeTemplateRequest{Key: "upsell", Definition: def}); err != nil {
				return err
			}
			again, err := mine.templates.GetChallengeTemplate(ctx, &rallyev1.GetChallengeTemplateRequest{Key: "upsell"})
			if err != nil || again.Template.Overridden || again.Template.Definition.Name.En != "Upsell challenge" {
				return fmt.Errorf("another company's override leaked: %v %v", again, err)
			}
			return nil
		},
		"ResetChallengeTemplate": func() error {
			_, err := other.templates.ResetChallengeTemplate(ctx, &rallyev1.ResetChallengeTemplateRequest{Key: "acme-only"})
			return notFound(nil, err)
		},
		"SubmitMission": func() error {
			return notFound(other.missions.SubmitMission(ctx, &rallyev1.SubmitMissionRequest{ChallengeId: id, MissionId: mission,
				EvidenceUrl: "https://x.example/y"}))
		},
		"ApproveSubmission": func() error {
			return notFound(other.missions.ApproveSubmission(ctx, &rallyev1.ApproveSubmissionRequest{SubmissionId: submission}))
		},
		"RejectSubmission": func() error {
			return notFound(other.missions.RejectSubmission(ctx, &rallyev1.RejectSubmissionRequest{SubmissionId: submission}))
		},
		"ListSubmissions": func() error {
			res, err := other.missions.ListSubmissions(ctx, &rallyev1.ListSubmissionsRequest{})
			if err != nil || len(res.Submissions) != 0 {
				return fmt.Errorf("%d submissions, %v", len(res.GetSubmissions()), err)
			}
			return nil
		},
	}
	// The acme-only template exists in acme only.
	tpl, err := mine.templates.GetChallengeTemplate(ctx, &rallyev1.GetChallengeTemplateRequest{Key: "prospecting"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mine.templates.UpdateChallengeTemplate(ctx, &rallyev1.UpdateChallengeTemplateRequest{Key: "acme-only",
		Definition: tpl.Template.Definition}); err != nil {
		t.Fatal(err)
	}

	for _, m := range procedures(t) {
		svc := string(m.Parent().Name())
		if svc != "ChallengeService" && svc != "ChallengeTemplateService" && svc != "MissionService" {
			continue
		}
		name := string(m.Name())
		t.Run(name, func(t *testing.T) {
			check, ok := cases[name]
			if !ok {
				t.Fatalf("%s has no other-company case", name)
			}
			if err := check(); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Nothing of acme changed.
	got, err := mine.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
	running := got.GetChallenge().GetState() == rallyev1.ChallengeState_CHALLENGE_STATE_ACTIVE ||
		got.GetChallenge().GetState() == rallyev1.ChallengeState_CHALLENGE_STATE_SCHEDULED // its start job may not have run yet
	if err != nil || !running || strings.Contains(got.Challenge.Definition.Name.Fr, "x") {
		t.Fatalf("acme's challenge changed: %v %v", got, err)
	}
}
