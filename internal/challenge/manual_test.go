package challenge_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// manualChallenge has a sequential pair: an evidence mission, then a quiz,
// then an automatic one.
func manualChallenge(t *testing.T, b *bundle) *challenge.Challenge {
	t.Helper()
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.Create(context.Background(), principal(b.manager), challenge.CreateRequest{
		Definition: challenge.Definition{
			Name: challenge.Text{FR: "Certification", EN: "Certification"}, Kind: challenge.KindOnboarding, Sequential: true,
			Missions: []challenge.Mission{
				{Key: "case-study", Name: challenge.Text{FR: "Étude de cas", EN: "Case study"}, Manual: challenge.ManualEvidence, Points: 40},
				{Key: "quiz", Name: challenge.Text{FR: "Quiz produit", EN: "Product quiz"}, Manual: challenge.ManualQuiz, Points: 60},
				{Key: "first-call", Name: challenge.Text{FR: "Premier appel", EN: "First call"}, Points: 10,
					Aggregate: challenge.AggCount, EventTypes: []event.Type{event.CallLogged}, Target: 1},
			},
		},
		TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start, EndsAt: start.Add(24 * time.Hour), Publish: true, RequestID: "cert-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestManualMissions(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := manualChallenge(t, b)
	rep := b.reps[0]
	caseStudy, quiz := c.Missions[0].ID, c.Missions[1].ID
	submit := func(mission uuid.UUID, url, answer, reqID string) (challenge.Submission, error) {
		return b.svc.Submit(ctx, principal(rep), challenge.SubmitRequest{ChallengeID: c.ID, MissionID: mission,
			EvidenceURL: url, Answer: answer, RequestID: reqID})
	}

	t.Run("ErrNotActive", func(t *testing.T) {
		_, err := submit(caseStudy, "https://drive.example/case.pdf", "", "")
		wantCode(t, err, rallye.CodeFailedPrecondition)
	})
	b.start(t, c)
	t.Run("ErrLocked", func(t *testing.T) {
		_, err := submit(quiz, "", "42", "")
		wantCode(t, err, rallye.CodeFailedPrecondition)
	})
	t.Run("ErrEvidenceRequired", func(t *testing.T) {
		_, err := submit(caseStudy, "", "", "")
		wantCode(t, err, rallye.CodeInvalid)
	})
	b.clock.Set(c.StartsAt.Add(time.Hour))
	sub, err := submit(caseStudy, "https://drive.example/case.pdf", "", "sub-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := submit(caseStudy, "https://drive.example/case.pdf", "", "sub-1")
	if err != nil || again.ID != sub.ID {
		t.Fatalf("retried submission: %v %v", again.ID, err)
	}
	_, err = submit(caseStudy, "https://drive.example/other.pdf", "", "sub-2")
	wantCode(t, err, rallye.CodeFailedPrecondition)
	if m := mission(t, b.get(t, principal(rep), c.ID), "case-study"); m.Submission != "pending" || m.Missing != "en attente de validation par un manager" {
		t.Fatalf("pending mission %+v", m)
	}

	t.Run("ErrOtherManager", func(t *testing.T) {
		south := b.person(t, "south-manager", org.LocaleEN, []rallye.Role{rallye.RoleManager}, b.south)
		_, err := b.svc.Review(ctx, principal(south), challenge.ReviewRequest{SubmissionID: sub.ID, Approve: true, Note: ""})
		wantCode(t, err, rallye.CodePermissionDenied)
	})
	t.Run("ErrRepReviews", func(t *testing.T) {
		_, err := b.svc.Review(ctx, principal(rep), challenge.ReviewRequest{SubmissionID: sub.ID, Approve: true, Note: ""})
		wantCode(t, err, rallye.CodePermissionDenied)
	})
	for range 2 { // the same approval twice awards once
		got, err := b.svc.Review(ctx, principal(b.manager), challenge.ReviewRequest{SubmissionID: sub.ID, Approve: true, Note: "bravo"})
		if err != nil || got.State != "approved" {
			t.Fatalf("approve: %+v %v", got, err)
		}
	}
	d := b.get(t, principal(rep), c.ID)
	if m := mission(t, d, "case-study"); !m.Completed || d.Me.Points != 40 || b.boards.points(t, c.ID, rep.ID) != 40 {
		t.Fatalf("after approval: %+v points %d board %d", m, d.Me.Points, b.boards.points(t, c.ID, rep.ID))
	}
	_, err = b.svc.Review(ctx, principal(b.manager), challenge.ReviewRequest{SubmissionID: sub.ID, Approve: false, Note: ""})
	wantCode(t, err, rallye.CodeFailedPrecondition)

	// The quiz is unlocked now; a rejection lets the rep try again.
	qs, err := submit(quiz, "", "B, C", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Review(ctx, principal(b.manager), challenge.ReviewRequest{SubmissionID: qs.ID, Approve: false, Note: "question 2"}); err != nil {
		t.Fatal(err)
	}
	if m := mission(t, b.get(t, principal(rep), c.ID), "quiz"); m.Completed || m.Missing != "refusée : à soumettre de nouveau" {
		t.Fatalf("rejected quiz %+v", m)
	}
	// A call logged before the quiz passes waits for it.
	b.ingest(t, ev(event.CallLogged, rep, c.StartsAt.Add(2*time.Hour)))
	if m := mission(t, b.get(t, principal(rep), c.ID), "first-call"); m.Completed || !m.Locked {
		t.Fatalf("first call while the quiz is not passed: %+v", m)
	}
	qs2, err := submit(quiz, "", "B, D", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.svc.Review(ctx, b.admin, challenge.ReviewRequest{SubmissionID: qs2.ID, Approve: true, Note: ""}); err != nil {
		t.Fatal(err)
	}
	d = b.get(t, principal(rep), c.ID)
	if d.Me.Points != 110 || !mission(t, d, "first-call").Completed {
		t.Fatalf("after the quiz: points %d %+v", d.Me.Points, d.Me.Missions)
	}

	list, err := b.svc.ListSubmissions(ctx, principal(b.manager), challenge.ListSubmissionsRequest{ChallengeID: c.ID, Size: 10})
	if err != nil || len(list) != 3 {
		t.Fatalf("manager lists %d submissions, %v", len(list), err)
	}
	mine, err := b.svc.ListSubmissions(ctx, principal(b.reps[1]), challenge.ListSubmissionsRequest{Size: 10})
	if err != nil || len(mine) != 0 {
		t.Fatalf("another rep lists %d submissions", len(mine))
	}
}
