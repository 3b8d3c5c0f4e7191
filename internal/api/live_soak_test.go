package api_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// soakCycles is the size of TestLiveRankingSoak: twelve cycles (every
// combination of ingesting instance, watching instance and protocol once)
// in CI, RALLYE_SOAK_CYCLES for a longer run.
func soakCycles(t *testing.T) int {
	t.Helper()
	v := os.Getenv("RALLYE_SOAK_CYCLES")
	if v == "" {
		return 12
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("RALLYE_SOAK_CYCLES=%q: want a positive number", v)
	}
	return n
}

// soakWatcher is one WatchRanking stream and the points it last showed.
type soakWatcher struct {
	name    string
	cancel  context.CancelFunc
	changed chan struct{}
	done    chan struct{}

	mu       sync.Mutex
	last     map[string]int64
	messages int
	err      error
}

func openSoakWatcher(t *testing.T, srv *testserver.Server, p testserver.Protocol, name, token string, board uuid.UUID, size int) *soakWatcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := boardClient(srv, p, token).WatchRanking(ctx, &rallyev1.WatchRankingRequest{BoardId: board.String(), PageSize: int32(size)})
	if err != nil {
		cancel()
		t.Fatalf("%s: %v", name, err)
	}
	w := &soakWatcher{name: name, cancel: cancel, changed: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer stream.Close()
		for stream.Receive() {
			points := map[string]int64{}
			for _, e := range stream.Msg().Ranking.GetEntries() {
				if e.Points != 0 {
					points[e.ParticipantId] = e.Points
				}
			}
			w.mu.Lock()
			w.last, w.messages = points, w.messages+1
			w.mu.Unlock()
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
		w.mu.Lock()
		w.err = stream.Err()
		w.mu.Unlock()
	}()
	t.Cleanup(w.close)
	return w
}

func (w *soakWatcher) close() {
	w.cancel()
	<-w.done
}

// await waits until the stream shows want, and returns when it did.
func (w *soakWatcher) await(want map[string]int64, deadline time.Time) (time.Time, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		w.mu.Lock()
		last, n := w.last, w.messages
		w.mu.Unlock()
		if n > 0 && maps.Equal(last, want) {
			return time.Now(), nil
		}
		select {
		case <-w.changed:
		case <-w.done:
			w.mu.Lock()
			last, err := w.last, w.err
			w.mu.Unlock()
			if maps.Equal(last, want) {
				return time.Now(), nil
			}
			return time.Time{}, fmt.Errorf("%s: the stream ended (%v) showing %v, want %v", w.name, err, last, want)
		case <-timer.C:
			return time.Time{}, fmt.Errorf("%s: after %d messages the stream shows %v, want %v", w.name, n, last, want)
		}
	}
}

// TestLiveRankingSoak runs watch → ingest → expect-the-update cycles
// against two server instances sharing PostgreSQL and Redis, over Connect,
// gRPC and gRPC-Web, with the safety nets that would hide a lost wake-up
// (the streams' periodic re-read, the feed's periodic sweep) pushed out to
// an hour: an update must travel the whole path (ingestion, the feed's
// notification, the progress consumer, the leaderboard's publish, Redis
// pub/sub, the hub's fan-out, the stream's throttle) or the cycle stalls
// and the test fails, saying where the points stopped.
//
// Each cycle opens a fresh stream (its first message must already show
// every earlier update) and twelve streams stay open for the whole run, on
// the challenge's board and on the company's all-time board (virtual until
// the first points: nothing of it is in Redis when they open); each
// cycle's events arrive one at a time, two in a batch, in two batches less
// than a throttle interval apart, or for two reps at once through both
// instances. The reference is a plain count of the calls sent per rep.
func TestLiveRankingSoak(t *testing.T) {
	cycles := soakCycles(t)
	noSafetyNets := func(c *config.Config) {
		c.WatchRefresh, c.FeedSweep, c.LeaderboardRepairDelay = time.Hour, time.Hour, time.Hour
	}
	a := testserver.Start(t, noSafetyNets)
	b := testserver.Start(t, testserver.Sharing(a), noSafetyNets)
	servers := []*testserver.Server{a, b}
	names := []string{"A", "B"}
	protocols := testserver.Protocols()
	ctx := context.Background()

	company := testserver.NewCompany(t, a.App.Org)
	team, err := a.App.Org.CreateTeam(ctx, company.Operator, org.CreateTeamRequest{Name: "Soak"})
	if err != nil {
		t.Fatal(err)
	}
	var reps []org.User
	for range 4 {
		u, _ := testserver.NewPerson(t, a.App.Org, company, []rallye.Role{rallye.RoleRep}, team)
		reps = append(reps, u)
	}
	_, key, err := a.App.APIKeys.Create(ctx, company.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	const perCall = 7
	c, err := a.App.Challenges.Create(ctx, company.Operator, challenge.CreateRequest{
		Definition: challenge.Definition{
			Name: challenge.Text{FR: "Endurance", EN: "Soak"}, Kind: challenge.KindProspecting,
			Missions: []challenge.Mission{{Key: "calls", Name: challenge.Text{FR: "Appels", EN: "Calls"}, Points: 1,
				Aggregate: challenge.AggCount, EventTypes: []event.Type{event.CallLogged}, Target: 100_000}},
			Rules: []challenge.Rule{{EventTypes: []event.Type{event.CallLogged}, Points: perCall,
				Label: challenge.Text{FR: "7 points par appel", EN: "7 points per call"}}},
		},
		TeamIDs: []uuid.UUID{team.ID}, EndsAt: time.Now().Add(24 * time.Hour), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	board := leaderboard.ChallengeBoardID(c.ID, leaderboard.KindIndividual)
	// The company's all-time board gets the same points. Nobody has scored
	// yet: it exists only virtually, until the first points create it.
	periods, err := a.App.Boards.CurrentPeriods(ctx, company.Operator)
	if err != nil {
		t.Fatal(err)
	}
	var allTime uuid.UUID
	for _, p := range periods {
		if p.Period == leaderboard.PeriodAllTime {
			allTime = p.ID
		}
	}
	boards := []uuid.UUID{board, allTime}
	boardNames := []string{"challenge", "all-time"}
	admin := boardClient(a, protocols[0], company.AdminToken)
	eventually(t, "the challenge starts", func() error {
		got, err := a.App.Challenges.Get(ctx, company.Operator, c.ID)
		if err != nil {
			return err
		}
		if st := got.Challenge.StateAt(time.Now()); st != challenge.StateActive {
			return fmt.Errorf("state %s", st)
		}
		_, err = admin.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board.String()})
		return err
	})

	want := map[string]int64{} // participant id -> points: the reference
	var seq int
	var seqMu sync.Mutex
	send := func(on *testserver.Server, rep org.User, calls int) error {
		var evs []*rallyev1.SalesEvent
		for range calls {
			seqMu.Lock()
			seq++
			id := fmt.Sprintf("call-%d", seq)
			seqMu.Unlock()
			evs = append(evs, &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "call.logged",
				OccurredAt: timestamppb.Now(), RepExternalId: rep.ExternalID})
		}
		res, err := eventClient(on, protocols[0], key).IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: evs})
		if err != nil {
			return err
		}
		if int(res.Accepted) != calls || len(res.Rejected) > 0 {
			return fmt.Errorf("ingest: %v", res)
		}
		return nil
	}
	ingest := func(on *testserver.Server, rep org.User, calls int) {
		t.Helper()
		if err := send(on, rep, calls); err != nil {
			t.Fatal(err)
		}
	}
	// where says, when a cycle stalls, how far the points went.
	where := func(t *testing.T) {
		t.Helper()
		for bi, bd := range boards {
			for i, srv := range servers {
				r, err := boardClient(srv, protocols[0], company.AdminToken).GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: bd.String(), PageSize: 10})
				points := map[string]int64{}
				for _, e := range r.GetRanking().GetEntries() {
					points[e.ParticipantId] = e.Points
				}
				t.Logf("GetRanking of the %s board on %s (Redis): %v %v", boardNames[bi], names[i], points, err)
			}
		}
		err := a.App.DB.ReadTenant(ctx, company.Tenant.ID, func(tx pgx.Tx) error {
			var last int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(seq), 0) FROM event_changes WHERE tenant_id = $1`, company.Tenant.ID).Scan(&last); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `SELECT consumer || '=' || seq FROM feed_cursors WHERE tenant_id = $1 ORDER BY consumer`, company.Tenant.ID)
			if err != nil {
				return err
			}
			cursors, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			rows, err = tx.Query(ctx, `SELECT member_id::text || '=' || points FROM board_scores WHERE tenant_id = $1 AND board_id = $2 ORDER BY 1`,
				company.Tenant.ID, board)
			if err != nil {
				return err
			}
			scores, err := pgx.CollectRows(rows, pgx.RowTo[string])
			t.Logf("PostgreSQL: last change %d, cursors %v, board_scores %v", last, cursors, scores)
			return err
		})
		if err != nil {
			t.Log(err)
		}
	}

	var steady []*soakWatcher
	for bi, bd := range boards {
		for i, srv := range servers {
			for _, p := range protocols {
				steady = append(steady, openSoakWatcher(t, srv, p, fmt.Sprintf("steady %s %s %s", boardNames[bi], names[i], p.Name),
					company.AdminToken, bd, len(reps)))
			}
		}
	}
	var latencies []time.Duration
	for i := range cycles {
		in, at, p, bi := i%2, (i/2)%2, protocols[i%len(protocols)], (i/6)%2
		fresh := openSoakWatcher(t, servers[at], p, fmt.Sprintf("cycle %d: fresh %s %s %s", i, boardNames[bi], names[at], p.Name),
			company.AdminToken, boards[bi], len(reps))
		watchers := append(slices.Clone(steady), fresh)
		deadline := time.Now().Add(30 * time.Second)
		for _, w := range watchers {
			if _, err := w.await(want, deadline); err != nil { // the previous cycle's state
				where(t)
				t.Fatal(err)
			}
		}
		rep, other := reps[i%len(reps)], reps[(i+1)%len(reps)]
		switch i % 4 {
		case 0:
			ingest(servers[in], rep, 1)
			want[rep.ID.String()] += perCall
		case 1:
			ingest(servers[in], rep, 2)
			want[rep.ID.String()] += 2 * perCall
		case 2: // the second batch lands while the streams hold back the first
			ingest(servers[in], rep, 1)
			ingest(servers[1-in], rep, 1)
			want[rep.ID.String()] += 2 * perCall
		case 3: // two reps at once, one through each instance
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for j, u := range []org.User{rep, other} {
				wg.Go(func() { errs[j] = send(servers[(in+j)%2], u, 1) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			want[rep.ID.String()] += perCall
			want[other.ID.String()] += perCall
		}
		acked := time.Now()
		deadline = acked.Add(30 * time.Second)
		for _, w := range watchers {
			seen, err := w.await(want, deadline)
			if err != nil {
				where(t)
				t.Fatalf("cycle %d (events through %s): %v", i, names[in], err)
			}
			latencies = append(latencies, seen.Sub(acked))
		}
		fresh.close()
	}
	slices.Sort(latencies)
	t.Logf("%d cycles, %d updates seen: acknowledged → shown p50 %v, p99 %v, max %v", cycles, len(latencies),
		latencies[len(latencies)/2], latencies[len(latencies)*99/100], latencies[len(latencies)-1])
}
