package api_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// oneEventCall is one IngestEvents call of TestConcurrentOneEventCallsMatchTheReference.
type oneEventCall struct {
	ev      *rallyev1.SalesEvent
	unknown bool // its rep is nobody: the call must be rejected, alone
	res     *rallyev1.IngestEventsResponse
	err     error
}

// TestConcurrentOneEventCallsMatchTheReference sends a company's events one
// per call from many connections at once, so that the server stores them in
// group transactions (group commit): new calls and deals, corrections
// (amounts, reps, retractions, sometimes before the version they correct),
// replays of the same event, and calls about nobody. Each caller must be
// answered about its own event only, every source event accepted exactly
// once, and the KPIs and the live ranking must equal a plain computation
// over the highest revision of each source event.
func TestConcurrentOneEventCallsMatchTheReference(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	c := newSalesCompany(t, srv)
	rep3, _ := testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleRep}, c.north)
	rep4, _ := testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleRep}, c.south)
	reps := []org.User{c.rep1, c.rep2, rep3, rep4}
	if _, err := kpiClient(srv, testserver.Protocols()[0], c.key).InstallModel(ctx, &rallyev1.InstallModelRequest{}); err != nil {
		t.Fatal(err)
	}
	const callPoints, dealPoints = 1, 10
	ch, err := srv.App.Challenges.Create(ctx, c.Operator, challenge.CreateRequest{
		Definition: challenge.Definition{
			Name: challenge.Text{FR: "Rafale", EN: "Burst"}, Kind: challenge.KindProspecting,
			Missions: []challenge.Mission{{Key: "calls", Name: challenge.Text{FR: "Appels", EN: "Calls"}, Points: 1,
				Aggregate: challenge.AggCount, EventTypes: []event.Type{event.CallLogged}, Target: 100_000}},
			Rules: []challenge.Rule{
				{EventTypes: []event.Type{event.CallLogged}, Points: callPoints, Label: challenge.Text{FR: "Appel", EN: "Call"}},
				{EventTypes: []event.Type{event.DealWon}, Points: dealPoints, Label: challenge.Text{FR: "Deal", EN: "Deal"}},
			},
		},
		TeamIDs: []uuid.UUID{c.north.ID, c.south.ID}, EndsAt: time.Now().Add(24 * time.Hour), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the challenge starts", func() error {
		got, err := srv.App.Challenges.Get(ctx, c.Operator, ch.ID)
		if err != nil {
			return err
		}
		if st := got.Challenge.StateAt(time.Now()); st != challenge.StateActive {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})

	// The calls: originals, corrections, replays and calls about nobody,
	// shuffled so that corrections may come first.
	at := time.Now()
	rng := rand.New(rand.NewPCG(11, 7))
	var calls []*oneEventCall
	var deals []*rallyev1.SalesEvent
	for i := range 150 {
		rep := reps[rng.IntN(len(reps))]
		occurred := timestamppb.New(at.Add(time.Duration(i) * time.Millisecond))
		id := fmt.Sprintf("g-%03d", i)
		var e *rallyev1.SalesEvent
		if rng.IntN(5) < 2 {
			e = &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "deal.won", OccurredAt: occurred, RepExternalId: rep.ExternalID,
				OpportunityId: "opp-" + id, DealKind: "new", Segment: "smb", OpportunityCreatedAt: timestamppb.New(at.Add(-72 * time.Hour)),
				Amount: &rallyev1.Money{MinorUnits: int64(100+rng.IntN(5000)) * 100, Currency: "EUR"}}
			deals = append(deals, e)
		} else {
			e = &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "call.logged", OccurredAt: occurred, RepExternalId: rep.ExternalID}
		}
		calls = append(calls, &oneEventCall{ev: e})
	}
	latest := map[string]*rallyev1.SalesEvent{}
	for _, d := range deals {
		latest[d.ExternalId] = d
	}
	for range 60 { // corrections, on top of the latest revision sent
		prev := latest[deals[rng.IntN(len(deals))].ExternalId]
		e := &rallyev1.SalesEvent{Source: prev.Source, ExternalId: prev.ExternalId, Type: prev.Type, OccurredAt: prev.OccurredAt,
			RepExternalId: prev.RepExternalId, OpportunityId: prev.OpportunityId, DealKind: prev.DealKind, Segment: prev.Segment,
			OpportunityCreatedAt: prev.OpportunityCreatedAt, Revision: prev.Revision + 1,
			Amount: &rallyev1.Money{MinorUnits: int64(100+rng.IntN(5000)) * 100, Currency: "EUR"}}
		switch rng.IntN(4) {
		case 0:
			e.Retracted = true
		case 1:
			e.RepExternalId = reps[rng.IntN(len(reps))].ExternalID
		}
		latest[e.ExternalId] = e
		calls = append(calls, &oneEventCall{ev: e})
	}
	sent := slices.Clone(calls)
	for range 60 { // replays of events already in the list
		calls = append(calls, &oneEventCall{ev: sent[rng.IntN(len(sent))].ev})
	}
	for i := range 6 {
		calls = append(calls, &oneEventCall{unknown: true, ev: &rallyev1.SalesEvent{Source: "crm", ExternalId: fmt.Sprintf("nobody-%d", i),
			Type: "call.logged", OccurredAt: timestamppb.New(at), RepExternalId: fmt.Sprintf("crm-nobody-%d", i)}})
	}
	rng.Shuffle(len(calls), func(i, j int) { calls[i], calls[j] = calls[j], calls[i] })

	// Many connections at once, one event per call.
	crm := eventClient(srv, testserver.Protocols()[0], c.key)
	next := make(chan *oneEventCall)
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			for call := range next {
				call.res, call.err = crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{call.ev}})
			}
		})
	}
	for _, call := range calls {
		next <- call
	}
	close(next)
	wg.Wait()

	// Each caller is told about its own event.
	acceptedBy := map[string]int{}
	corrected := map[string]int{}
	revisions := map[string]map[int64]bool{}
	for _, call := range calls {
		if call.err != nil {
			t.Fatalf("%s: %v", call.ev.ExternalId, call.err)
		}
		r := call.res
		if call.unknown {
			if r.Accepted+r.Corrected+r.Duplicates != 0 || len(r.Rejected) != 0 || len(r.Parked) != 1 || r.Parked[0].GetIndex() != 0 ||
				r.Parked[0].RepExternalId != call.ev.RepExternalId || !slices.Equal(r.UnknownRepExternalIds, []string{call.ev.RepExternalId}) {
				t.Fatalf("a call about nobody was answered %v", r)
			}
			continue
		}
		if r.Accepted+r.Corrected+r.Duplicates != 1 || len(r.Rejected) != 0 || len(r.UnknownRepExternalIds) != 0 {
			t.Fatalf("%s revision %d was answered %v", call.ev.ExternalId, call.ev.Revision, r)
		}
		acceptedBy[call.ev.ExternalId] += int(r.Accepted)
		corrected[call.ev.ExternalId] += int(r.Corrected)
		if revisions[call.ev.ExternalId] == nil {
			revisions[call.ev.ExternalId] = map[int64]bool{}
		}
		revisions[call.ev.ExternalId][call.ev.Revision] = true
	}
	for id, revs := range revisions {
		if acceptedBy[id] != 1 {
			t.Errorf("%s: %d calls answered accepted, want exactly 1", id, acceptedBy[id])
		}
		if corrected[id] > len(revs)-1 {
			t.Errorf("%s: %d calls answered corrected with %d revisions sent", id, corrected[id], len(revs))
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The group commit took place: fewer transactions than calls.
	transactions, grouped := groupCommitCounts(t, srv)
	if grouped != uint64(len(calls)) || transactions >= grouped {
		t.Fatalf("%d calls in %d transactions (%d calls sent)", grouped, transactions, len(calls))
	}
	t.Logf("%d one-event calls stored by %d transactions", grouped, transactions)

	// The reference: the highest revision of each source event counts,
	// unless it is retracted.
	final := map[string]*rallyev1.SalesEvent{}
	for _, call := range calls {
		if e := call.ev; !call.unknown && (final[e.ExternalId] == nil || e.Revision > final[e.ExternalId].Revision) {
			final[e.ExternalId] = e
		}
	}
	type figures struct {
		deals, calls int
		revenue      float64
		points       int64
	}
	want := map[string]*figures{}
	for _, rep := range reps {
		want[rep.ExternalID] = &figures{}
	}
	for _, e := range final {
		if e.Retracted {
			continue
		}
		f := want[e.RepExternalId]
		if e.Type == "deal.won" {
			f.deals++
			f.revenue += float64(e.Amount.MinorUnits) / 100
			f.points += dealPoints
		} else {
			f.calls++
			f.points += callPoints
		}
	}

	dash := dashClient(srv, testserver.Protocols()[0], c.AdminToken)
	value := func(cards []*rallyev1.KpiCard, key string) float64 {
		if card := cardOf(cards, key); card != nil && card.Value != nil {
			return card.GetValue()
		}
		return 0
	}
	for _, rep := range reps {
		f := want[rep.ExternalID]
		eventually(t, "the KPIs of "+rep.ExternalID, func() error {
			board, err := dash.GetLevel3(ctx, &rallyev1.GetLevel3Request{UserId: rep.ID.String(), At: timestamppb.New(at)})
			if err != nil {
				return err
			}
			got := [3]float64{value(board.Kpis, "deals_won"), value(board.Kpis, "won_revenue"), value(board.Kpis, "prospecting_activity")}
			if got[0] != float64(f.deals) || math.Abs(got[1]-f.revenue) > 1e-6 || got[2] != float64(f.calls) {
				return fmt.Errorf("deals won, revenue won, prospecting %v; want %d, %.2f, %d", got, f.deals, f.revenue, f.calls)
			}
			return nil
		})
	}
	wantPoints := map[string]int64{}
	for _, rep := range reps {
		if p := want[rep.ExternalID].points; p != 0 {
			wantPoints[rep.ID.String()] = p
		}
	}
	board := leaderboard.ChallengeBoardID(ch.ID, leaderboard.KindIndividual)
	boards := boardClient(srv, testserver.Protocols()[0], c.AdminToken)
	eventually(t, "the live ranking", func() error {
		res, err := boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board.String(), PageSize: 10})
		if err != nil {
			return err
		}
		got := map[string]int64{}
		for _, e := range res.Ranking.GetEntries() {
			if e.Points != 0 {
				got[e.ParticipantId] = e.Points
			}
		}
		if !maps.Equal(got, wantPoints) {
			return fmt.Errorf("points %v, want %v", got, wantPoints)
		}
		return nil
	})
}

// groupCommitCounts reads the server's group commit histogram: the group
// transactions it ran and the calls they stored.
func groupCommitCounts(t *testing.T, srv *testserver.Server) (transactions, calls uint64) {
	t.Helper()
	families, err := srv.App.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "rallye_ingest_group_calls" {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), uint64(h.GetSampleSum())
		}
	}
	t.Fatal("no rallye_ingest_group_calls metric")
	return 0, 0
}
