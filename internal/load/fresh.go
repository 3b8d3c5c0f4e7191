package load

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
)

// The prober measures freshness as a rep and a manager see it: it sends
// one-event calls (a "probe" content event of a rep outside the load),
// one at a time, while the load runs, and notes when each acknowledged
// probe shows (a) in the probe KPI's value on a level-1 Watch stream and
// (b) in the rep's points on a challenge's live board (WatchRanking). The
// probes travel through the same feed as the load's events, so the delay
// is what any event acknowledged at that moment waits.
//
// Probes are sequential (the next one leaves once the previous one is
// acknowledged), so the k-th probe has shown once a watcher reads a count
// (or points) of k or more: acknowledgement order is commit order, and the
// feed applies changes in commit order per company.
type prober struct {
	r        *run
	interval time.Duration
	board    string // the probe challenge's individual board
	rep      string // the probe rep's user id
	repExt   string // and CRM id

	mu       sync.Mutex
	acked    []time.Time // acknowledgement of probe k+1
	kpiSeen  []time.Time // first read of a count ≥ k+1 on Watch
	rankSeen []time.Time // first read of points ≥ k+1 on WatchRanking
	changed  chan struct{}
}

// probeExternalID is the CRM id of the rep the probes are about: not one
// of the load's reps, so the load's own events never move them.
const probeExternalID = "load-probe"

// setupProber creates the probe challenge (1 point per probe event, the
// probe rep its only participant) and finds its individual board.
func (r *run) setupProber(ctx context.Context, repID string, interval time.Duration) (*prober, error) {
	challenges := rallyev1connect.NewChallengeServiceClient(httpClient(), r.baseURL, bearer(r.token))
	res, err := challenges.CreateChallenge(ctx, &rallyev1.CreateChallengeRequest{
		Definition: &rallyev1.ChallengeDefinition{
			Name: &rallyev1.LocalizedText{Fr: "Sondes de fraîcheur", En: "Freshness probes"},
			Kind: rallyev1.ChallengeKind_CHALLENGE_KIND_PROSPECTING,
			ScoringRules: []*rallyev1.ScoringRule{{EventTypes: []string{"content.used"}, Filter: `content_id.startsWith("probe-")`, Points: 1,
				Label: &rallyev1.LocalizedText{Fr: "1 point par sonde", En: "1 point per probe"}}},
			Duration: durationpb.New(48 * time.Hour),
		},
		UserIds: []string{repID}, Publish: true,
		RequestId: "load-probe-challenge",
	})
	if err != nil {
		return nil, fmt.Errorf("create the probe challenge: %w", err)
	}
	boards := rallyev1connect.NewLeaderboardServiceClient(httpClient(), r.baseURL, bearer(r.token))
	p := &prober{r: r, interval: interval, rep: repID, repExt: probeExternalID, changed: make(chan struct{}, 1)}
	// The boards appear when the challenge starts (a job, right after
	// publication).
	for wait := time.Now().Add(time.Minute); p.board == "" && time.Now().Before(wait); {
		list, err := boards.ListBoards(ctx, &rallyev1.ListBoardsRequest{ChallengeId: res.Challenge.GetId()})
		if err != nil {
			return nil, fmt.Errorf("the probe challenge's boards: %w", err)
		}
		for _, b := range list.Boards {
			if b.Kind == rallyev1.BoardKind_BOARD_KIND_INDIVIDUAL {
				p.board = b.Id
			}
		}
		if p.board == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if p.board == "" {
		return nil, fmt.Errorf("the probe challenge has no individual board")
	}
	return p, nil
}

// watch follows both streams until ctx ends, reopening a stream that
// ends as a dashboard or an app would.
func (p *prober) watch(ctx context.Context, retries func()) error {
	dash := rallyev1connect.NewDashboardServiceClient(httpClient(), p.r.baseURL, bearer(p.r.token))
	boards := rallyev1connect.NewLeaderboardServiceClient(httpClient(), p.r.baseURL, bearer(p.r.token))
	openKPI := func() (*connect.ServerStreamForClient[rallyev1.WatchResponse], error) {
		s, err := dash.Watch(ctx, &rallyev1.WatchRequest{Level: 1, Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
		if err != nil {
			return nil, err
		}
		if !s.Receive() {
			return nil, fmt.Errorf("watch: %w", s.Err())
		}
		return s, nil
	}
	openRank := func() (*connect.ServerStreamForClient[rallyev1.WatchRankingResponse], error) {
		s, err := boards.WatchRanking(ctx, &rallyev1.WatchRankingRequest{BoardId: p.board, ParticipantId: p.rep})
		if err != nil {
			return nil, err
		}
		if !s.Receive() {
			return nil, fmt.Errorf("watch ranking: %w", s.Err())
		}
		return s, nil
	}
	// Both are open before the first probe leaves.
	kpiStream, err := openKPI()
	if err != nil {
		return err
	}
	rankStream, err := openRank()
	if err != nil {
		return err
	}
	go follow(ctx, retries, kpiStream, openKPI, func(m *rallyev1.WatchResponse) {
		for _, c := range m.Kpis {
			if c.Key == probeKPI {
				p.saw(&p.kpiSeen, int(c.GetValue()))
			}
		}
	})
	go follow(ctx, retries, rankStream, openRank, func(m *rallyev1.WatchRankingResponse) {
		if e := m.GetRanking().GetPlacement().GetEntry(); e != nil {
			p.saw(&p.rankSeen, int(e.Points))
		}
	})
	return nil
}

// follow hands every message of stream to read until ctx ends, opening
// the stream again when it ends.
func follow[T any](ctx context.Context, retries func(), stream *connect.ServerStreamForClient[T],
	open func() (*connect.ServerStreamForClient[T], error), read func(*T)) {
	for ctx.Err() == nil {
		if stream == nil {
			var err error
			if stream, err = retryUnavailable(ctx, retries, open); err != nil {
				time.Sleep(time.Second)
				continue
			}
		}
		for {
			read(stream.Msg())
			if !stream.Receive() {
				break
			}
		}
		stream = nil
	}
}

// saw notes that a watcher read n: probes up to n have shown.
func (p *prober) saw(seen *[]time.Time, n int) {
	now := time.Now()
	p.mu.Lock()
	for len(*seen) < n {
		*seen = append(*seen, now)
	}
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// send sends the next probe and waits for its acknowledgement.
func (p *prober) send(ctx context.Context, client rallyev1connect.EventServiceClient, retries func()) error {
	p.mu.Lock()
	id := fmt.Sprintf("probe-%06d", len(p.acked)+1)
	p.mu.Unlock()
	ev := &rallyev1.SalesEvent{Source: "load", ExternalId: id, Type: "content.used", OccurredAt: timestamppb.Now(),
		RepExternalId: p.repExt, ContentId: id}
	if _, err := retryUnavailable(ctx, retries, func() (*rallyev1.IngestEventsResponse, error) {
		return client.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{ev}})
	}); err != nil {
		return err
	}
	p.mu.Lock()
	p.acked = append(p.acked, time.Now())
	p.mu.Unlock()
	return nil
}

// run sends a probe every interval until stop closes.
func (p *prober) run(ctx context.Context, stop <-chan struct{}, client rallyev1connect.EventServiceClient, retries func()) error {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		if err := p.send(ctx, client, retries); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// caughtUp sends a last probe, after the load's last call was answered,
// and waits until both watchers show it: from then on, every change the
// load made is visible. It returns how long that took for each.
func (p *prober) caughtUp(ctx context.Context, client rallyev1connect.EventServiceClient, retries func(), loadEnd time.Time) (kpi, rank time.Duration, err error) {
	if err := p.send(ctx, client, retries); err != nil {
		return 0, 0, err
	}
	deadline := time.After(10 * time.Minute)
	for {
		p.mu.Lock()
		n, onKPI, onBoard := len(p.acked), len(p.kpiSeen), len(p.rankSeen)
		done := onKPI >= n && onBoard >= n
		if done {
			kpi, rank = p.kpiSeen[n-1].Sub(loadEnd), p.rankSeen[n-1].Sub(loadEnd)
		}
		p.mu.Unlock()
		if done {
			return kpi, rank, nil
		}
		select {
		case <-p.changed:
		case <-time.After(time.Second):
		case <-deadline:
			return 0, 0, fmt.Errorf("the roll-ups did not catch up within 10 minutes (%d probes acknowledged, %d on the KPI, %d on the board)",
				n, onKPI, onBoard)
		}
	}
}

// delays are acknowledgement → shown, per probe sent while the load ran
// (the last one, sent after, is left out), sorted.
func (p *prober) delays(seen *[]time.Time) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	for k := 0; k < len(p.acked)-1 && k < len(*seen); k++ {
		out = append(out, max(0, (*seen)[k].Sub(p.acked[k])))
	}
	slices.Sort(out)
	return out
}

// shown counts the probes shown so far on the KPI and on the board.
func (p *prober) shown() (kpi, board int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.kpiSeen), len(p.rankSeen)
}
