package api_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
	"github.com/rallyehq/rallye/internal/testutil/faultproxy"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestFaultsLeaveResultsExact plays PostgreSQL and Redis restarting under a
// running server: TCP proxies between the server and each are cut and
// restored in the middle of ingestion (a long outage the client has to ride
// out, a connection lost as a COMMIT leaves, a short outage the server rides
// out itself, Redis gone for a while) and in the middle of a challenge
// ending. A client retries what is answered unavailable, as the README
// says. Then: no call was ever answered internal, every event acknowledged
// is stored once (a replay is all duplicates), and the standings, the live
// ranking, the final ranks and the KPI values equal those of the same run
// on a server without faults.
func TestFaultsLeaveResultsExact(t *testing.T) {
	want := runFaultScenario(t, false, nil)
	runFaultScenario(t, true, &want)
}

// scenarioOutcome is what a run computed, by rep index.
type scenarioOutcome struct {
	points     []int64
	finalPts   []int64
	finalRanks []int32
	kpis       map[string]float64
	stored     int
}

// codeLog notes the error codes a client was answered.
type codeLog struct {
	mu    sync.Mutex
	codes map[connect.Code]int
}

func (l *codeLog) note(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.codes == nil {
		l.codes = map[connect.Code]int{}
	}
	l.codes[connect.CodeOf(err)]++
}

func (l *codeLog) count(c connect.Code) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[c]
}

func (l *codeLog) others() map[connect.Code]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[connect.Code]int{}
	for c, n := range l.codes {
		if c != connect.CodeUnavailable {
			out[c] = n
		}
	}
	return out
}

// retrying calls fn until it succeeds, retrying unavailable with backoff
// (what the README asks of clients); any other error fails the test.
func retrying[T any](t *testing.T, log *codeLog, what string, fn func() (T, error)) T {
	t.Helper()
	wait := 50 * time.Millisecond
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := fn()
		if err == nil {
			return out
		}
		log.note(err)
		if connect.CodeOf(err) != connect.CodeUnavailable {
			t.Fatalf("%s: %v (only unavailable may be retried)", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still unavailable after 2 minutes: %v", what, err)
		}
		time.Sleep(wait/2 + rand.N(wait/2))
		wait = min(2*wait, time.Second)
	}
}

// within polls check until it returns nil, failing after d.
func within(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// faultBatches is the scenario's events: meetings, calls and deals of four
// reps, then corrections and retractions of earlier deals and re-sent
// events, the same in every run.
func faultBatches(reps []string, start time.Time) [][]*rallyev1.SalesEvent {
	rng := rand.New(rand.NewPCG(7, 11))
	var batches [][]*rallyev1.SalesEvent
	var deals []*rallyev1.SalesEvent
	n := 0
	for b := range 24 {
		var batch []*rallyev1.SalesEvent
		for range 25 {
			n++
			rep := reps[rng.IntN(len(reps))]
			at := timestamppb.New(start.Add(time.Duration(n) * 10 * time.Millisecond))
			id := fmt.Sprintf("e-%04d", n)
			var e *rallyev1.SalesEvent
			switch k := rng.IntN(10); {
			case b >= 12 && k == 0 && len(deals) > 0: // a correction of an earlier deal
				prev := deals[rng.IntN(len(deals))]
				e = &rallyev1.SalesEvent{Source: prev.Source, ExternalId: prev.ExternalId, Type: prev.Type, OccurredAt: prev.OccurredAt,
					RepExternalId: prev.RepExternalId, OpportunityId: prev.OpportunityId, DealKind: prev.DealKind,
					OpportunityCreatedAt: prev.OpportunityCreatedAt, Product: prev.Product, Revision: prev.Revision + 1,
					Amount: &rallyev1.Money{MinorUnits: int64(100+rng.IntN(6000)) * 100, Currency: "EUR"}}
				if rng.IntN(3) == 0 {
					e.Retracted = true
				}
				deals = append(deals, e)
			case b >= 12 && k == 1 && len(batches) > 0: // a re-sent event
				old := batches[rng.IntN(len(batches))]
				e = old[rng.IntN(len(old))]
			case k <= 4:
				kind := "upsell"
				if rng.IntN(3) == 0 {
					kind = "new"
				}
				e = &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "deal.won", OccurredAt: at, RepExternalId: rep,
					OpportunityId: "opp-" + id, DealKind: kind, Product: "platform",
					OpportunityCreatedAt: timestamppb.New(start.Add(-240 * time.Hour)),
					Amount:               &rallyev1.Money{MinorUnits: int64(100+rng.IntN(6000)) * 100, Currency: "EUR"}}
				deals = append(deals, e)
			case k <= 7:
				e = &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "meeting.held", OccurredAt: at, RepExternalId: rep}
			default:
				e = &rallyev1.SalesEvent{Source: "crm", ExternalId: id, Type: "call.logged", OccurredAt: at, RepExternalId: rep}
			}
			batch = append(batch, e)
		}
		batches = append(batches, batch)
	}
	return batches
}

func runFaultScenario(t *testing.T, faulty bool, want *scenarioOutcome) scenarioOutcome {
	name := "reference"
	if faulty {
		name = "faults"
	}
	var out scenarioOutcome
	t.Run(name, func(t *testing.T) {
		out = faultScenario(t, faulty, want)
	})
	if t.Failed() {
		t.FailNow()
	}
	return out
}

func faultScenario(t *testing.T, faulty bool, want *scenarioOutcome) scenarioOutcome {
	ctx := context.Background()
	opts := []testserver.Option{func(c *config.Config) { c.ChallengeFinalizeCheck = 100 * time.Millisecond }}
	var pg, rd *faultproxy.Proxy
	if faulty {
		raw := testutil.DatabaseURL(t)
		pg = faultproxy.Start(t, faultproxy.Target(raw))
		rd = faultproxy.Start(t, faultproxy.Target(testutil.RedisURL()))
		opts = append(opts, func(c *config.Config) {
			c.DatabaseURL, c.RedisURL = pg.URL(raw), rd.URL(testutil.RedisURL())
		})
	}
	srv := testserver.Start(t, opts...)
	acme := testserver.NewCompany(t, srv.App.Org)
	squad, err := srv.App.Org.CreateTeam(ctx, acme.Operator, org.CreateTeamRequest{Name: "Squad"})
	if err != nil {
		t.Fatal(err)
	}
	_, managerToken := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleManager}, squad)
	var reps []org.User
	var repExt []string
	repIndex := map[string]int{}
	for i := range 4 {
		u, _ := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep}, squad)
		reps, repExt, repIndex[u.ID.String()] = append(reps, u), append(repExt, u.ExternalID), i
	}
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	proto := testserver.Protocols()[0]
	crm := eventClient(srv, proto, key)
	mgr := clientsFor(srv, proto, managerToken)
	log := &codeLog{}
	if _, err := kpiClient(srv, proto, acme.AdminToken).InstallModel(ctx, &rallyev1.InstallModelRequest{}); err != nil {
		t.Fatal(err)
	}

	// A challenge for the squad, running.
	created, err := mgr.challenges.CreateChallengeFromTemplate(ctx, &rallyev1.CreateChallengeFromTemplateRequest{
		TemplateKey: "upsell", TeamIds: []string{squad.ID.String()}, EndTime: timestamppb.New(time.Now().Add(time.Hour)),
		Publish: true, RequestId: "launch",
		Overrides:    &rallyev1.ChallengeDefinition{GracePeriod: durationOf(time.Second), MaxDataWait: durationOf(time.Minute)},
		OverrideMask: &fieldmaskpb.FieldMask{Paths: []string{"grace_period", "max_data_wait"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	challengeID := created.Challenge.Id
	var start time.Time
	within(t, time.Minute, "the challenge starts", func() error {
		got, err := mgr.challenges.GetChallenge(ctx, &rallyev1.GetChallengeRequest{ChallengeId: challengeID})
		if err != nil {
			return err
		}
		if got.Challenge.State != rallyev1.ChallengeState_CHALLENGE_STATE_ACTIVE {
			return fmt.Errorf("state %v", got.Challenge.State)
		}
		start = got.Challenge.StartTime.AsTime()
		return nil
	})

	// Ingestion, with faults.
	batches := faultBatches(repExt, start)
	var restorers sync.WaitGroup
	restoreWhen := func(p *faultproxy.Proxy, what string, cond func() bool) {
		restorers.Go(func() {
			deadline := time.Now().Add(time.Minute)
			for !cond() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if !cond() {
				t.Errorf("the fault never happened: %s", what)
			}
			p.Restore()
		})
	}
	boards := rallyev1connect.NewLeaderboardServiceClient(proto.Client, srv.URL, testserver.Bearer(managerToken))
	var board string
	send := func(i int, b []*rallyev1.SalesEvent) *rallyev1.IngestEventsResponse {
		res := retrying(t, log, fmt.Sprintf("batch %d", i), func() (*rallyev1.IngestEventsResponse, error) {
			return crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: b})
		})
		// A retried batch whose first attempt was stored reports those
		// events as duplicates: every event is accounted for, once.
		if len(res.Rejected) != 0 || int(res.Accepted+res.Corrected+res.Duplicates) != len(b) {
			t.Fatalf("batch %d: %v", i, res)
		}
		return res
	}
	for i, b := range batches {
		if faulty {
			switch i {
			case 4: // PostgreSQL down longer than the server's own retries
				pg.Cut()
				restoreWhen(pg, "a client answered unavailable", func() bool { return log.count(connect.CodeUnavailable) > 0 })
			case 10: // the connection drops as the batch's COMMIT leaves: it commits, the answer is lost
				restorers.Wait()
				cut := pg.CutWhenClientSends([]byte(event.FeedChannel), faultproxy.PostgresCommit)
				restoreWhen(pg, "a cut at the batch's COMMIT", func() bool {
					select {
					case <-cut:
						return true
					default:
						return false
					}
				})
				unavailable := log.count(connect.CodeUnavailable)
				res := send(i, b)
				if log.count(connect.CodeUnavailable) == unavailable || res.Duplicates != int32(len(b)) {
					t.Fatalf("batch %d, retried after its COMMIT was cut: %v (answered unavailable %d times)",
						i, res, log.count(connect.CodeUnavailable)-unavailable)
				}
				continue
			case 14: // Redis down: live rankings cannot be read, points still count
				restorers.Wait()
				board = liveBoard(t, boards, challengeID)
				rd.Cut()
				_, err := boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board})
				if connect.CodeOf(err) != connect.CodeUnavailable {
					t.Fatalf("a ranking read without Redis: %v, want unavailable", err)
				}
				log.note(err)
			case 18:
				rd.Restore()
			case 20: // a short PostgreSQL outage the server rides out
				pg.Cut()
				refused := pg.Refused()
				restoreWhen(pg, "a refused connection", func() bool { return pg.Refused() > refused })
			}
		}
		send(i, b)
	}
	restorers.Wait()
	if faulty && log.count(connect.CodeUnavailable) == 0 {
		t.Fatal("no call was answered unavailable: the faults did not reach the client")
	}

	// Every event acknowledged is stored once: a replay changes nothing.
	for i, b := range batches {
		res := retrying(t, log, fmt.Sprintf("replay %d", i), func() (*rallyev1.IngestEventsResponse, error) {
			return crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: b})
		})
		if res.Accepted != 0 || res.Corrected != 0 || int(res.Duplicates) != len(b) {
			t.Fatalf("replay of batch %d: %v", i, res)
		}
	}
	keys := map[string]bool{}
	for _, b := range batches {
		for _, e := range b {
			keys[e.ExternalId] = true
		}
	}
	var outcome scenarioOutcome
	if err := srv.App.DB.ReadTenant(ctx, acme.Tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&outcome.stored)
	}); err != nil {
		t.Fatal(err)
	}
	if outcome.stored != len(keys) {
		t.Fatalf("%d events stored, %d sent", outcome.stored, len(keys))
	}

	// The feed catches up, with nothing dead-lettered.
	within(t, time.Minute, "the feed catches up", func() error {
		lags, err := srv.App.Feed.Lag(ctx)
		if err != nil {
			return err
		}
		for name, l := range lags {
			if l.Changes != 0 || l.DeadLetters != 0 {
				return fmt.Errorf("%s: %+v", name, l)
			}
		}
		return nil
	})
	standings := retrying(t, log, "standings", func() (*rallyev1.GetChallengeStandingsResponse, error) {
		return mgr.challenges.GetChallengeStandings(ctx, &rallyev1.GetChallengeStandingsRequest{ChallengeId: challengeID})
	})
	outcome.points = make([]int64, len(reps))
	for _, s := range standings.People {
		outcome.points[repIndex[s.UserId]] = s.Points
	}
	// The live ranking (Redis) agrees with PostgreSQL, repaired after Redis
	// came back.
	if board == "" {
		board = liveBoard(t, boards, challengeID)
	}
	within(t, time.Minute, "the live ranking", func() error {
		res, err := boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board, PageSize: 10})
		if err != nil {
			return err
		}
		live := make([]int64, len(reps))
		for _, e := range res.Ranking.Entries {
			live[repIndex[e.ParticipantId]] = e.Points
		}
		if !slices.Equal(live, outcome.points) {
			return fmt.Errorf("live ranking %v, standings %v", live, outcome.points)
		}
		return nil
	})
	level1 := retrying(t, log, "level 1", func() (*rallyev1.GetLevel1Response, error) {
		return dashClient(srv, proto, acme.AdminToken).GetLevel1(ctx, &rallyev1.GetLevel1Request{At: timestamppb.New(start)})
	})
	outcome.kpis = map[string]float64{}
	for _, c := range level1.Kpis {
		if c.Value != nil {
			outcome.kpis[c.Key] = c.GetValue()
		}
		for _, b := range c.Breakdown {
			if b.Value != nil {
				outcome.kpis[c.Key+"/"+b.ValueKey] = b.GetValue()
			}
		}
	}
	if want != nil {
		if !slices.Equal(outcome.points, want.points) {
			t.Errorf("points %v, without faults %v", outcome.points, want.points)
		}
		if !maps.Equal(outcome.kpis, want.kpis) {
			t.Errorf("KPI values differ from the run without faults:\n got %v\nwant %v", outcome.kpis, want.kpis)
		}
		if outcome.stored != want.stored {
			t.Errorf("%d events stored, %d without faults", outcome.stored, want.stored)
		}
	}
	if len(outcome.kpis) == 0 || slices.Max(outcome.points) == 0 {
		t.Fatalf("nothing to compare: KPIs %v, points %v", outcome.kpis, outcome.points)
	}

	// The challenge ends; PostgreSQL drops while it becomes final.
	var finalizing <-chan struct{}
	if faulty {
		finalizing = pg.CutWhenClientSends([]byte("set finalized_at"))
		restoreWhen(pg, "a cut while the challenge becomes final", func() bool {
			select {
			case <-finalizing:
				return true
			default:
				return false
			}
		})
	}
	ended := retrying(t, log, "end", func() (*rallyev1.EndChallengeResponse, error) {
		return mgr.challenges.EndChallenge(ctx, &rallyev1.EndChallengeRequest{ChallengeId: challengeID})
	})
	after := &rallyev1.SalesEvent{Source: "crm", ExternalId: "after-the-end", Type: "call.logged",
		OccurredAt: timestamppb.New(ended.Challenge.EndTime.AsTime().Add(time.Second)), RepExternalId: repExt[0]}
	retrying(t, log, "the event after the end", func() (*rallyev1.IngestEventsResponse, error) {
		return crm.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{after}})
	})
	within(t, 2*time.Minute, "the challenge becomes final", func() error {
		st, err := mgr.challenges.GetChallengeStandings(ctx, &rallyev1.GetChallengeStandingsRequest{ChallengeId: challengeID})
		if err != nil {
			if connect.CodeOf(err) == connect.CodeUnavailable {
				log.note(err)
			}
			return err
		}
		if !st.Final {
			return fmt.Errorf("not final yet")
		}
		standings = st
		return nil
	})
	restorers.Wait()
	outcome.finalPts, outcome.finalRanks = make([]int64, len(reps)), make([]int32, len(reps))
	for _, s := range standings.People {
		outcome.finalPts[repIndex[s.UserId]], outcome.finalRanks[repIndex[s.UserId]] = s.Points, s.Rank
	}
	if want != nil && (!slices.Equal(outcome.finalPts, want.finalPts) || !slices.Equal(outcome.finalRanks, want.finalRanks)) {
		t.Errorf("final points %v ranks %v; without faults %v %v", outcome.finalPts, outcome.finalRanks, want.finalPts, want.finalRanks)
	}

	if faulty {
		t.Logf("answered unavailable %d times; connections refused while PostgreSQL was cut: %d, Redis: %d",
			log.count(connect.CodeUnavailable), pg.Refused(), rd.Refused())
	}
	// No call was answered internal: neither to this client nor to anyone
	// (the server's own count, by code).
	if others := log.others(); len(others) > 0 {
		t.Errorf("codes other than unavailable: %v", others)
	}
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	metrics, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(metrics), "\n") {
		if strings.HasPrefix(line, "rallye_rpc_requests_total") &&
			(strings.Contains(line, `code="internal"`) || strings.Contains(line, `code="unknown"`)) {
			t.Errorf("the server answered: %s", line)
		}
	}
	return outcome
}

// liveBoard waits for a challenge's individual board, which exists once
// the feed has scored points for it.
func liveBoard(t *testing.T, boards rallyev1connect.LeaderboardServiceClient, challengeID string) string {
	t.Helper()
	var id string
	within(t, time.Minute, "the challenge's board", func() error {
		res, err := boards.ListBoards(context.Background(), &rallyev1.ListBoardsRequest{ChallengeId: challengeID})
		if err != nil {
			return err
		}
		for _, b := range res.Boards {
			if b.Kind == rallyev1.BoardKind_BOARD_KIND_INDIVIDUAL && b.ChallengeId == challengeID {
				id = b.Id
				return nil
			}
		}
		return fmt.Errorf("no individual board yet")
	})
	return id
}

// TestWebhookUnavailableSaysWhenToRetry: while PostgreSQL is out of reach,
// the webhook answers 503 unavailable with Retry-After (plain HTTP clients
// honour it), and the same body is accepted once it is back.
func TestWebhookUnavailableSaysWhenToRetry(t *testing.T) {
	raw := testutil.DatabaseURL(t)
	pg := faultproxy.Start(t, faultproxy.Target(raw))
	srv := testserver.Start(t, func(c *config.Config) { c.DatabaseURL = pg.URL(raw) })
	ctx := context.Background()
	acme := testserver.NewCompany(t, srv.App.Org)
	rep, _ := testserver.NewPerson(t, srv.App.Org, acme, []rallye.Role{rallye.RoleRep})
	_, key, err := srv.App.APIKeys.Create(ctx, acme.Operator, auth.CreateAPIKeyRequest{Name: "crm"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	post := func(id string) (*http.Response, string) {
		t.Helper()
		body := fmt.Sprintf(`{"source":"crm","externalId":%q,"type":"call.logged","occurredAt":%q,"repExternalId":%q}`, id, at, rep.ExternalID)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+api.WebhookPath, strings.NewReader(body))
		req.Header.Set("X-Rallye-Api-Key", key)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	if res, body := post("warm-up"); res.StatusCode != http.StatusOK { // the key is now cached
		t.Fatalf("before the cut: %d %s", res.StatusCode, body)
	}
	pg.Cut()
	res, body := post("during")
	pg.Restore()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, `"code":"unavailable"`) {
		t.Fatalf("while PostgreSQL is cut: %d, Retry-After %q, %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	within(t, time.Minute, "the retry", func() error {
		res, body := post("during")
		if res.StatusCode != http.StatusOK || !strings.Contains(body, `"accepted":1`) {
			return fmt.Errorf("%d %s", res.StatusCode, body)
		}
		return nil
	})
}
