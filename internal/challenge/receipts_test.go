package challenge_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
)

// countingScores is the leaderboard seam with a count of the receipts it
// handed out and of their publications.
type countingScores struct {
	inner                          challenge.Scores
	recorded, published, republish atomic.Int64
}

func (c *countingScores) Record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []challenge.Entry) (challenge.Receipt, error) {
	r, err := c.inner.Record(ctx, tx, tenantID, entries)
	if err != nil {
		return nil, err
	}
	c.recorded.Add(1)
	return &countedReceipt{r: r, c: c}, nil
}

type countedReceipt struct {
	r    challenge.Receipt
	c    *countingScores
	done atomic.Bool
}

func (r *countedReceipt) Publish(ctx context.Context) {
	if r.done.Swap(true) {
		r.c.republish.Add(1)
	}
	r.c.published.Add(1)
	r.r.Publish(ctx)
}

// TestScoringPathsPublishTheirReceipts drives every path that records
// points (the feed's progress consumer, a manual mission's approval, a
// cancellation) and checks after each that the live ranking in Redis equals
// the ledger in PostgreSQL and that every receipt was published once. The
// test runs no repair job, so only Publish moves Redis: a path that
// recorded points and forgot its receipts leaves the live ranking behind.
func TestScoringPathsPublishTheirReceipts(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	const perCall, missionPoints, evidencePoints = 3, 10, 40
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.Create(ctx, principal(b.manager), challenge.CreateRequest{
		Definition: challenge.Definition{
			Name: challenge.Text{FR: "Appels", EN: "Calls"}, Kind: challenge.KindProspecting,
			Missions: []challenge.Mission{
				{Key: "case-study", Name: challenge.Text{FR: "Étude de cas", EN: "Case study"}, Manual: challenge.ManualEvidence, Points: evidencePoints},
				{Key: "two-calls", Name: challenge.Text{FR: "Deux appels", EN: "Two calls"}, Points: missionPoints,
					Aggregate: challenge.AggCount, EventTypes: []event.Type{event.CallLogged}, Target: 2},
			},
			Rules: []challenge.Rule{{EventTypes: []event.Type{event.CallLogged}, Points: perCall,
				Label: challenge.Text{FR: "3 points par appel", EN: "3 points per call"}}},
		},
		TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start, EndsAt: start.Add(24 * time.Hour), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.start(t, c)
	b.clock.Set(start.Add(time.Hour))
	north := []org.User{b.reps[0], b.reps[1]}
	board := leaderboard.ChallengeBoardID(c.ID, leaderboard.KindIndividual)
	live := func(t *testing.T) map[uuid.UUID]int64 {
		t.Helper()
		r, err := b.lb.Ranking(ctx, b.admin, leaderboard.RankingRequest{BoardID: board, PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		out := map[uuid.UUID]int64{}
		for _, e := range r.Entries {
			out[e.ParticipantID] = e.Points
		}
		return out
	}
	live(t) // the board is in Redis from here on: only Publish moves it
	check := func(t *testing.T, want map[uuid.UUID]int64) {
		t.Helper()
		got := live(t)
		for _, rep := range north {
			if ledger := b.boards.points(t, c.ID, rep.ID); ledger != want[rep.ID] {
				t.Fatalf("%s: ledger %d points, want %d", rep.DisplayName, ledger, want[rep.ID])
			}
			if got[rep.ID] != want[rep.ID] {
				t.Fatalf("%s: live ranking %d points, ledger %d: a receipt was not published", rep.DisplayName, got[rep.ID], want[rep.ID])
			}
		}
		rec, pub, again := b.scores.recorded.Load(), b.scores.published.Load(), b.scores.republish.Load()
		if rec == 0 || pub != rec || again != 0 {
			t.Fatalf("%d receipts recorded, %d published (%d twice)", rec, pub, again)
		}
	}
	want := map[uuid.UUID]int64{}

	t.Run("Feed", func(t *testing.T) {
		b.ingest(t, ev(event.CallLogged, north[0], b.clock.Now()), ev(event.CallLogged, north[0], b.clock.Now()))
		want[north[0].ID] = 2*perCall + missionPoints
		check(t, want)
	})
	t.Run("Approval", func(t *testing.T) {
		sub, err := b.svc.Submit(ctx, principal(north[1]), challenge.SubmitRequest{ChallengeID: c.ID, MissionID: c.Missions[0].ID,
			EvidenceURL: "https://drive.example/case.pdf"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.svc.Review(ctx, principal(b.manager), challenge.ReviewRequest{SubmissionID: sub.ID, Approve: true}); err != nil {
			t.Fatal(err)
		}
		want[north[1].ID] = evidencePoints
		check(t, want)
	})
	t.Run("Cancel", func(t *testing.T) {
		if _, err := b.svc.Cancel(ctx, principal(b.manager), c.ID); err != nil {
			t.Fatal(err)
		}
		want = map[uuid.UUID]int64{}
		check(t, want)
	})
}
