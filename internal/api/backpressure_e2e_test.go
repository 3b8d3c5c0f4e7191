package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// TestBackpressureStopsAFloodNotTheOthers floods one company with
// one-event calls while its KPI roll-ups are held back (another connection
// holds that consumer's lock, as a consumer that cannot keep up would):
// once its oldest unapplied change is older than the bound, its calls are
// refused with resource_exhausted, a retry delay and the backpressure
// reason (the webhook with 429 and Retry-After), while a second company's
// events keep moving its live ranking, cycle after cycle, during the
// flood. When the roll-ups catch up, the first company's events are
// accepted again.
func TestBackpressureStopsAFloodNotTheOthers(t *testing.T) {
	// The bound leaves the calm company's own path (three consumers, under
	// the race detector on a shared machine) well inside it.
	const maxLag = 2 * time.Second
	srv := testserver.Start(t, func(c *config.Config) { c.IngestMaxLag, c.FeedDatabaseMaxConns = maxLag, 4 })
	ctx := context.Background()
	type company struct {
		testserver.Company
		rep  org.User
		team org.Team
		key  string
	}
	mk := func() company {
		c := company{Company: testserver.NewCompany(t, srv.App.Org)}
		var err error
		if c.team, err = srv.App.Org.CreateTeam(ctx, c.Operator, org.CreateTeamRequest{Name: "Sales"}); err != nil {
			t.Fatal(err)
		}
		c.rep, _ = testserver.NewPerson(t, srv.App.Org, c.Company, []rallye.Role{rallye.RoleRep}, c.team)
		if _, c.key, err = srv.App.APIKeys.Create(ctx, c.Operator, auth.CreateAPIKeyRequest{Name: "crm"}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	flood, calm := mk(), mk()
	ch, err := srv.App.Challenges.Create(ctx, calm.Operator, challenge.CreateRequest{
		Definition: challenge.Definition{
			Name: challenge.Text{FR: "Calme", EN: "Calm"}, Kind: challenge.KindProspecting,
			Missions: []challenge.Mission{{Key: "calls", Name: challenge.Text{FR: "Appels", EN: "Calls"}, Points: 1,
				Aggregate: challenge.AggCount, EventTypes: []event.Type{event.CallLogged}, Target: 100_000}},
			Rules: []challenge.Rule{{EventTypes: []event.Type{event.CallLogged}, Points: 3, Label: challenge.Text{FR: "Appel", EN: "Call"}}},
		},
		TeamIDs: []uuid.UUID{calm.team.ID}, EndsAt: time.Now().Add(24 * time.Hour), Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the challenge starts", func() error {
		got, err := srv.App.Challenges.Get(ctx, calm.Operator, ch.ID)
		if err != nil {
			return err
		}
		if st := got.Challenge.StateAt(time.Now()); st != challenge.StateActive {
			return fmt.Errorf("state %s", st)
		}
		return nil
	})

	// The flooded company's roll-ups are held back.
	conn, err := srv.App.DB.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	lock := event.ConsumerLock(flood.Tenant.ID, "kpi-rollups")
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lock); err != nil {
		t.Fatal(err)
	}
	held := true
	release := func() {
		if held {
			held = false
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lock); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer release()

	var seq atomic.Int64
	callOf := func(c company) *rallyev1.IngestEventsRequest {
		return &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{{Source: "crm", ExternalId: fmt.Sprintf("e-%d", seq.Add(1)),
			Type: "call.logged", OccurredAt: timestamppb.Now(), RepExternalId: c.rep.ExternalID}}}
	}
	floodCRM := eventClient(srv, testserver.Protocols()[0], flood.key)
	var accepted, refused atomic.Int64
	var refusal atomic.Pointer[connect.Error]
	var other atomic.Pointer[error]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := floodCRM.IngestEvents(ctx, callOf(flood))
				var ce *connect.Error
				switch {
				case err == nil:
					accepted.Add(1)
				case errors.As(err, &ce) && ce.Code() == connect.CodeResourceExhausted:
					refused.Add(1)
					refusal.Store(ce)
					// A client honouring the delay: a fraction of it, to
					// keep knocking while the roll-ups are held back.
					select {
					case <-stop:
					case <-time.After(retryDelayOf(ce) / 4):
					}
				default:
					other.Store(&err)
					return
				}
			}
		})
	}

	eventually(t, "the flood is refused", func() error {
		if refused.Load() == 0 {
			return fmt.Errorf("%d calls accepted, none refused", accepted.Load())
		}
		return nil
	})
	refusedBefore := refused.Load()

	// Meanwhile the calm company's ranking moves with each of its events.
	calmCRM := eventClient(srv, testserver.Protocols()[1], calm.key)
	boards := boardClient(srv, testserver.Protocols()[0], calm.AdminToken)
	board := leaderboard.ChallengeBoardID(ch.ID, leaderboard.KindIndividual)
	for i := range 5 {
		if _, err := calmCRM.IngestEvents(ctx, callOf(calm)); err != nil {
			t.Fatalf("the calm company's event %d (flood: %d accepted, %d refused): %v", i, accepted.Load(), refused.Load(), err)
		}
		want := int64(3 * (i + 1))
		eventually(t, fmt.Sprintf("the calm company's ranking shows event %d", i), func() error {
			res, err := boards.GetRanking(ctx, &rallyev1.GetRankingRequest{BoardId: board.String(), PageSize: 5})
			if err != nil {
				return err
			}
			if e := res.Ranking.GetEntries(); len(e) != 1 || e[0].Points != want {
				return fmt.Errorf("ranking %v, want %d points", e, want)
			}
			return nil
		})
	}
	if refused.Load() == refusedBefore {
		t.Fatal("the flood was not refused while the calm company's ranking moved")
	}
	close(stop)
	wg.Wait()
	if p := other.Load(); p != nil {
		t.Fatalf("a flooding call failed otherwise: %v", *p)
	}
	reason, delay := reasonOf(refusal.Load()), retryDelayOf(refusal.Load())
	if reason != event.ReasonBackpressure || delay < time.Second {
		t.Fatalf("refused with reason %q, retry delay %s: %v", reason, delay, refusal.Load())
	}
	t.Logf("flood: %d calls accepted, %d refused while the roll-ups were held back", accepted.Load(), refused.Load())

	// The webhook says the same in HTTP.
	body := fmt.Sprintf(`{"source":"crm","externalId":"hook-1","type":"call.logged","occurredAt":%q,"repExternalId":%q}`,
		time.Now().UTC().Format(time.RFC3339), flood.rep.ExternalID)
	post := func() (int, string, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+api.WebhookPath, strings.NewReader(body))
		req.Header.Set("X-Rallye-Api-Key", flood.key)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Retry-After"), string(b)
	}
	status, after, text := post()
	if secs, err := strconv.Atoi(after); status != http.StatusTooManyRequests || err != nil || secs < 1 ||
		!strings.Contains(text, `"code":"resource_exhausted"`) {
		t.Fatalf("the webhook answered %d, Retry-After %q: %s", status, after, text)
	}

	// The roll-ups catch up: the flooded company is served again.
	release()
	eventually(t, "the flooded company is served again", func() error {
		status, _, text := post()
		if status != http.StatusOK || !strings.Contains(text, `"accepted":1`) {
			return fmt.Errorf("%d %s", status, text)
		}
		return nil
	})
}

// reasonOf is a Connect error's google.rpc.ErrorInfo reason.
func reasonOf(ce *connect.Error) string {
	for _, d := range ce.Details() {
		if v, _ := d.Value(); v != nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info.Reason
			}
		}
	}
	return ""
}

// retryDelayOf is a Connect error's google.rpc.RetryInfo delay.
func retryDelayOf(ce *connect.Error) time.Duration {
	for _, d := range ce.Details() {
		if v, _ := d.Value(); v != nil {
			if info, ok := v.(*errdetails.RetryInfo); ok {
				return info.GetRetryDelay().AsDuration()
			}
		}
	}
	return 0
}
