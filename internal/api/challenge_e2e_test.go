package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

type challengeClients struct {
	challenges rallyev1connect.ChallengeServiceClient
	templates  rallyev1connect.ChallengeTemplateServiceClient
	missions   rallyev1connect.MissionServiceClient
}

func clientsFor(srv *testserver.Server, p testserver.Protocol, token string) challengeClients {
	opts := append([]connect.ClientOption{}, p.Opts...)
	opts = append(opts, testserver.Bearer(token), recordForeign(token))
	return challengeClients{
		challenges: rallyev1connect.NewChallengeServiceClient(p.Client, srv.URL, opts...),
		templates:  rallyev1connect.NewChallengeTemplateServiceClient(p.Client, srv.URL, opts...),
		missions:   rallyev1connect.NewMissionServiceClient(p.Client, srv.URL, opts...),
	}
}

// eventually polls check until it returns nil or the deadline passes: the
// server drains the feed and runs jobs on its own.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		<-tick.C
	}
}

func progressOf(me *rallyev1.Participation, key string) *rallyev1.MissionProgress {
	for _, m := range me.GetMissions() {
		if m.MissionKey == key {
			return m
		}
	}
	return nil
}

// TestChallengeEndToEnd is the scenario of the README: a manager launches an
// upsell challenge for a team from the template, CRM events arrive through
// ingestion, missions complete, points and ranks appear, the challenge ends
// and freezes once the CRM's data reaches its end.
func TestChallengeEndToEnd(t *testing.T) {
	srv := testserver.Start(t, func(c *config.Config) { c.ChallengeFinalizeCheck = 100 * time.Millisecond })
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	squad, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Upsell squad"})
	if err != nil {
		t.Fatal(err)
	}
	manager, managerToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, squad)
	camille, camilleToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, squad)
	lucas, lucasToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, squad)
	if _, err := srv.App.Org.UpdateUser(ctx, acme.Operator, lucas.ID, org.UserPatch{Locale: ptrTo(org.LocaleEN)}); err != nil {
		t.Fatal(err)
	}
	_, crmKey, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	connectProto := testserver.Protocols()[0]
	mgr := clientsFor(srv, connectProto, managerToken)
	rep := clientsFor(srv, connectProto, camilleToken)
	crm := eventClient(srv, connectProto, crmKey)

	// 1. The manager launches the upsell challenge from the template.
	tpl, err := mgr.templates.GetChallengeTemplate(ctx, &rallyev1.GetChallengeTemplateRequest{Key: "upsell"})
	if err != nil || len(tpl.Template.Definition.Missions) != 3 {
		t.Fatalf("upsell template: %v %v", tpl, err)
	}
	end := time.Now().Add(time.Hour)
	launch := &rallyev1.CreateChallengeFromTemplateRequest{
		TemplateKey: "upsell", TeamIds: []string{squad.ID.String()}, EndTime: timestamppb.New(end), Publish: true,
		RequestId: "launch-upsell-1",
		Overrides: &rallyev1.ChallengeDefinition{
			Name:        &rallyev1.LocalizedText{Fr: "Upsell de printemps", En: "Spring upsell"},
			GracePeriod: durationOf(time.Second), MaxDataWait: durationOf(time.Minute),
		},
		OverrideMask:       &fieldmaskpb.FieldMask{Paths: []string{"name", "grace_period", "max_data_wait"}},
		MissionAdjustments: []*rallyev1.MissionAdjustment{{Key: "upsell-revenue", Target: ptrTo(3000.0)}},
	}
	created, err := mgr.challenges.CreateChallengeFromTemplate(ctx, launch)
	if err != nil {
		t.Fatal(err)
	}
	again, err := mgr.challenges.CreateChallengeFromTemplate(ctx, launch)
	if err != nil || again.Challenge.Id != created.Challenge.Id {
		t.Fatalf("retried launch: %v %v", again, err)
	}
	// The challenge says how it breaks ties (issue 15 item 7): created
	// without a rule, earliest achiever first.
	if got := created.Challenge.GetDefinition().GetTieRule(); got != rallyev1.ChallengeTieRule_CHALLENGE_TIE_RULE_EARLIEST_ACHIEVER {
		t.Fatalf("tie rule %v", got)
	}
	id := created.Challenge.Id
	eventually(t, "the start job starts the challenge", func() error {
		got, err := rep.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		if err != nil {
			return err
		}
		if got.Challenge.State != rallyev1.ChallengeState_CHALLENGE_STATE_ACTIVE {
			return fmt.Errorf("state %v", got.Challenge.State)
		}
		return nil
	})

	// 2. CRM events arrive through ingestion.
	now := time.Now()
	deal := func(id string, rep org.User, euros int64, kind string) *rallyev1.SalesEvent {
		return &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "deal.won", OccurredAt: timestamppb.New(now),
			RepExternalId: rep.ExternalID, OpportunityId: "opp-" + id, Amount: &rallyev1.Money{MinorUnits: euros * 100, Currency: "EUR"},
			DealKind: kind, OpportunityCreatedAt: timestamppb.New(now.Add(-240 * time.Hour)), Product: "platform"}
	}
	meeting := func(id string, rep org.User) *rallyev1.SalesEvent {
		return &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "meeting.held", OccurredAt: timestamppb.New(now), RepExternalId: rep.ExternalID}
	}
	res, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{
		meeting("m-1", camille), meeting("m-2", camille), deal("d-1", camille, 1200, "upsell"), deal("d-2", camille, 2000, "upsell"),
		meeting("m-3", lucas), deal("d-3", lucas, 800, "upsell"),
	}})
	if err != nil || res.Accepted != 6 {
		t.Fatalf("ingest: %v %v", res, err)
	}

	// 3. Missions complete, points and ranks appear: Camille has 2 x 10 +
	// 12 + 20 points plus the 300 of the revenue mission (3,200 >= 3,000).
	var me *rallyev1.Participation
	eventually(t, "Camille's progress", func() error {
		got, err := rep.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		if err != nil {
			return err
		}
		me = got.Me
		if me.GetPoints() != 352 {
			return fmt.Errorf("points %d", me.GetPoints())
		}
		return nil
	})
	if rev := progressOf(me, "upsell-revenue"); !rev.Completed || rev.Percent != 100 || me.Rank != 1 || !me.Provisional {
		t.Fatalf("Camille: %+v", me)
	}
	if attach := progressOf(me, "attach-rate"); attach.Missing != "3 affaires gagnées de plus ; 30 points de plus (0\u00a0% actuellement)" {
		t.Fatalf("attach rate, in French: %q", attach.Missing)
	}
	lucasView, err := clientsFor(srv, connectProto, lucasToken).challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
	if err != nil {
		t.Fatal(err)
	}
	if rev := progressOf(lucasView.Me, "upsell-revenue"); lucasView.Me.Points != 18 || rev.Missing != "2,200\u00a0EUR more" || lucasView.Me.Rank != 2 {
		t.Fatalf("Lucas (English): points %d rank %d %q", lucasView.Me.Points, lucasView.Me.Rank, rev.Missing)
	}
	mine, err := rep.challenges.ListMyChallenges(ctx, &rallyev1.ListMyChallengesRequest{Window: rallyev1.ChallengeWindow_CHALLENGE_WINDOW_ACTIVE})
	if err != nil || len(mine.Challenges) != 1 || mine.Challenges[0].Me.Rank != 1 || !mine.Challenges[0].NextTime.AsTime().Equal(end.Truncate(time.Microsecond)) {
		t.Fatalf("my challenges: %v %v", mine, err)
	}
	team, err := mgr.challenges.ListChallengeParticipants(ctx, &rallyev1.ListChallengeParticipantsRequest{ChallengeId: id})
	if err != nil || len(team.Participants) != 2 {
		t.Fatalf("the manager's view of the team: %v %v", team, err)
	}
	overview, err := mgr.challenges.ListChallenges(ctx, &rallyev1.ListChallengesRequest{})
	if err != nil || len(overview.Challenges) != 1 || overview.Challenges[0].ParticipantCount != 2 || overview.Challenges[0].ScoringCount != 2 {
		t.Fatalf("the manager's list: %v %v", overview, err)
	}
	standings, err := rep.challenges.GetChallengeStandings(ctx, &rallyev1.GetChallengeStandingsRequest{ChallengeId: id})
	if err != nil || len(standings.People) != 2 || standings.People[0].UserId != camille.ID.String() || standings.Final {
		t.Fatalf("standings: %v %v", standings, err)
	}

	// The same points and ranks on the live leaderboard of the challenge.
	boards := rallyev1connect.NewLeaderboardServiceClient(connectProto.Client, srv.URL, testserver.Bearer(camilleToken))
	board := challengeBoard(t, boards, id)
	eventually(t, "the live ranking", func() error {
		return wantRanking(ctx, boards, board, camille.ID.String(), 352, lucas.ID.String(), 18, false)
	})

	// 4. A correction while it runs: the 2,000 deal is retracted; the
	// revenue mission un-completes and its points go back.
	retract := deal("d-2", camille, 2000, "upsell")
	retract.Revision, retract.Retracted = 1, true
	if _, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{retract}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the retraction", func() error {
		got, err := rep.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		if err != nil {
			return err
		}
		if got.Me.Points != 32 || progressOf(got.Me, "upsell-revenue").Completed {
			return fmt.Errorf("points %d", got.Me.Points)
		}
		return nil
	})

	// 5. The manager ends it now; a late event of the window still counts;
	// the CRM's data then passes the end and the results become final.
	ended, err := mgr.challenges.EndChallenge(ctx, &rallyev1.EndChallengeRequest{ChallengeId: id})
	if err != nil || ended.Challenge.State != rallyev1.ChallengeState_CHALLENGE_STATE_ENDED {
		t.Fatalf("end: %v %v", ended, err)
	}
	endAt := ended.Challenge.EndTime.AsTime()
	late := deal("d-4", camille, 2500, "upsell")
	// Inside the window however short the test ran: between start and end.
	startAt := ended.Challenge.StartTime.AsTime()
	late.OccurredAt = timestamppb.New(startAt.Add(endAt.Sub(startAt) / 2))
	if _, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{late}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the late deal counts during the grace period", func() error {
		got, err := rep.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		if err != nil {
			return err
		}
		if got.Challenge.Final || got.Completeness == nil || got.Completeness.Complete {
			return fmt.Errorf("final %v completeness %v", got.Challenge.Final, got.Completeness)
		}
		if got.Me.Points != 32+25+300 {
			return fmt.Errorf("points %d", got.Me.Points)
		}
		return nil
	})
	after := meeting("m-after", lucas)
	after.OccurredAt = timestamppb.New(endAt.Add(time.Second))
	if _, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{after}}); err != nil {
		t.Fatal(err)
	}
	var final *rallyev1.GetChallengeResponse
	eventually(t, "the challenge becomes final", func() error {
		final, err = rep.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		if err != nil {
			return err
		}
		if !final.Challenge.Final {
			return fmt.Errorf("not final: %v", final.Completeness)
		}
		return nil
	})
	if !final.Completeness.Complete || final.Me.Provisional || final.Me.Rank != 1 || final.Me.Points != 357 {
		t.Fatalf("final: %+v", final)
	}

	// 6. Frozen: nothing moves after final.
	undo := late
	undo.Revision, undo.Retracted = 1, true
	if _, err := crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{undo}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the feed applies the retraction", func() error {
		pending, err := srv.App.Feed.Drain(ctx, acme.Tenant.ID)
		if err == nil && pending {
			err = fmt.Errorf("changes pending")
		}
		return err
	})
	frozen, err := rep.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
	if err != nil || frozen.Me.Points != 357 {
		t.Fatalf("points moved after final: %v %v", frozen.GetMe().GetPoints(), err)
	}
	past, err := rep.challenges.ListMyChallenges(ctx, &rallyev1.ListMyChallengesRequest{Window: rallyev1.ChallengeWindow_CHALLENGE_WINDOW_PAST})
	if err != nil || len(past.Challenges) != 1 || past.Challenges[0].Me.Rank != 1 || past.Challenges[0].Me.Provisional {
		t.Fatalf("past challenges: %v %v", past, err)
	}

	if err := wantRanking(ctx, boards, board, camille.ID.String(), 357, lucas.ID.String(), 18, true); err != nil {
		t.Fatalf("the frozen leaderboard: %v", err)
	}

	// The same reads over gRPC and gRPC-Web.
	for _, p := range testserver.Protocols()[1:] {
		got, err := clientsFor(srv, p, camilleToken).challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: id})
		if err != nil || got.Me.Points != 357 {
			t.Fatalf("%s: %v %v", p.Name, got, err)
		}
	}
	_ = manager
}

func ptrTo[T any](v T) *T { return &v }

// challengeBoard returns the id of a challenge's individual board.
func challengeBoard(t *testing.T, boards rallyev1connect.LeaderboardServiceClient, challengeID string) string {
	t.Helper()
	res, err := boards.ListBoards(context.Background(), &rallyev1.ListBoardsRequest{ChallengeId: challengeID})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range res.Boards {
		if b.Kind == rallyev1.BoardKind_BOARD_KIND_INDIVIDUAL && b.ChallengeId == challengeID {
			return b.Id
		}
	}
	t.Fatalf("no individual board for challenge %s in %v", challengeID, res.Boards)
	return ""
}

// wantRanking checks a two-person board: first and second with their
// points, and whether it is final.
func wantRanking(ctx context.Context, boards rallyev1connect.LeaderboardServiceClient, board, first string, firstPoints int64,
	second string, secondPoints int64, final bool) error {
	res, err := boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board, Around: 1})
	if err != nil {
		return err
	}
	r := res.Ranking
	if len(r.Entries) != 2 || r.Board.Final != final {
		return fmt.Errorf("ranking %v", r)
	}
	e0, e1 := r.Entries[0], r.Entries[1]
	if e0.ParticipantId != first || e0.Points != firstPoints || e0.Rank != 1 || e1.ParticipantId != second || e1.Points != secondPoints || e1.Rank != 2 {
		return fmt.Errorf("ranking %v", r.Entries)
	}
	if r.Placement.GetEntry().GetParticipantId() != first {
		return fmt.Errorf("placement %v", r.Placement)
	}
	return nil
}

func durationOf(d time.Duration) *durationpb.Duration { return durationpb.New(d) }
