// Package load measures Rallye under load, for the `rallye load events`
// command: it ingests generated events (eventgen) through the real
// IngestEvents RPC on loopback with concurrent clients, measures how long a
// batch takes to reach a live dashboard (through Watch), how fast the
// level-1 dashboard reads once a million events are in, and, in the same
// run, the raw ceiling: the same rows written with batched INSERT … unnest
// and with COPY through pgx. Timings are printed, never asserted: CI does
// not run it.
package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"google.golang.org/protobuf/types/known/timestamppb"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/event/eventgen"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Config shapes a run.
type Config struct {
	Events     int
	Users      int
	Batch      int
	Clients    int
	Reads      int
	ProbeEvery int
	// Rate paces ingestion (events/s); 0 sends as fast as the server takes.
	Rate int
	// Shard gives each client a contiguous part of the history instead of
	// the next batch of one stream.
	Shard bool
	// Target is the base URL of a running server sharing App.DatabaseURL
	// (and App.JWTSecret); empty starts one in-process on a fresh database.
	Target string
	// Keep keeps the fresh database.
	Keep bool
	App  config.Config
	Out  io.Writer
	Log  *slog.Logger
}

// probeKPI counts the probe events, per probe (its breakdown), so that a
// watcher sees exactly when each probe's batch reached the dashboard.
const probeKPI = "load_probe"

type run struct {
	cfg      Config
	app      *app.App // in-process server (nil with Target)
	db       *postgres.DB
	baseURL  string
	tenant   org.Tenant
	admin    org.User
	token    string
	key      string
	reps     []eventgen.Rep
	kpis     *kpi.Service
	printf   func(format string, args ...any)
	cleanups []func()
}

// Run runs the load and prints its figures.
func Run(ctx context.Context, cfg Config) error {
	r := &run{cfg: cfg, printf: func(format string, args ...any) { fmt.Fprintf(cfg.Out, format, args...) }}
	defer func() {
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
	}()
	if err := r.start(ctx); err != nil {
		return err
	}
	if err := r.seed(ctx); err != nil {
		return err
	}
	r.printf("generating %d events for %d reps...\n", cfg.Events, cfg.Users)
	deliveries, days, err := generate(cfg.Events, r.reps)
	if err != nil {
		return err
	}
	r.printf("%d events over %d days, ingesting through IngestEvents with %d clients, batches of %d...\n",
		len(deliveries), days, cfg.Clients, cfg.Batch)
	ing, err := r.ingest(ctx, deliveries)
	if err != nil {
		return err
	}
	reads, err := r.readDashboards(ctx)
	if err != nil {
		return err
	}
	raw, err := r.rawCeiling(ctx, deliveries)
	if err != nil {
		return err
	}
	r.report(ing, reads, raw)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func withDatabase(raw, name, user string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	if user != "" {
		u.User = url.UserPassword(user, user)
	}
	return u.String(), nil
}

// start prepares the database and the server.
func (r *run) start(ctx context.Context) error {
	cfg := r.cfg.App
	if r.cfg.Target != "" {
		r.baseURL = strings.TrimSuffix(r.cfg.Target, "/")
		db, err := postgres.Open(ctx, cfg.DatabaseURL, 10)
		if err != nil {
			return err
		}
		r.db = db
		r.cleanups = append(r.cleanups, db.Close)
		jobs, err := river.NewClient[pgx.Tx](riverpgxv5.New(db.Pool), &river.Config{})
		if err != nil {
			return err
		}
		r.kpis = kpi.NewService(db, jobs, r.cfg.Log)
		return nil
	}
	name := fmt.Sprintf("rallye_load_%d", time.Now().Unix())
	adminURL, err := withDatabase(cfg.DatabaseURL, "postgres", "")
	if err != nil {
		return err
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	// The server connects as an ordinary role, so that row-level security
	// binds as in production (a superuser would bypass it).
	role := "rallye_load_events"
	if _, err := admin.Exec(ctx, `DO $$ BEGIN CREATE ROLE rallye_load_events LOGIN PASSWORD 'rallye_load_events';
		EXCEPTION WHEN duplicate_object THEN NULL; END $$`); err != nil {
		r.printf("note: cannot create the role rallye_load_events (%v); the server connects as DATABASE_URL's user\n", err)
		role = ""
	}
	create := `CREATE DATABASE ` + pgx.Identifier{name}.Sanitize()
	if role != "" {
		create += ` OWNER ` + role
	}
	if _, err := admin.Exec(ctx, create); err != nil {
		admin.Close(ctx)
		return fmt.Errorf("create %s: %w", name, err)
	}
	r.cleanups = append(r.cleanups, func() {
		defer admin.Close(context.Background())
		if r.cfg.Keep {
			r.printf("database %s kept\n", name)
			return
		}
		if _, err := admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			r.printf("drop %s: %v\n", name, err)
		}
	})
	if cfg.DatabaseURL, err = withDatabase(cfg.DatabaseURL, name, role); err != nil {
		return err
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.RedisPrefix = "load-" + randomHex(4) + ":"
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = randomHex(32)
	}
	r.cfg.App = cfg
	a, err := app.New(ctx, cfg, r.cfg.Log, app.Options{})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		a.Close()
		return err
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Serve(sctx, ln) }()
	r.cleanups = append(r.cleanups, func() {
		stop()
		<-done
		a.Close()
	})
	r.app, r.db, r.kpis, r.baseURL = a, a.DB, a.KPI, "http://"+ln.Addr().String()
	r.printf("in-process server on %s, database %s\n", r.baseURL, name)
	return nil
}

// seed creates the company: teams, Users reps, an API key, the seed model
// plus the probe KPI, and a few targets.
func (r *run) seed(ctx context.Context) error {
	svc := org.NewService(r.db)
	slug := "load-" + randomHex(3)
	tenant, admin, err := svc.CreateTenant(ctx, org.NewTenant{Name: "Load " + slug, Slug: slug, TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Currency: "EUR", Admin: org.UserInput{DisplayName: "Load admin", Email: "admin@" + slug + ".test"}})
	if err != nil {
		return err
	}
	r.tenant, r.admin = tenant, admin
	op := rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	var teams []uuid.UUID
	for region := range 2 {
		parent, err := svc.CreateTeam(ctx, op, org.CreateTeamRequest{Name: fmt.Sprintf("Region %d", region+1)})
		if err != nil {
			return err
		}
		for t := range 5 {
			team, err := svc.CreateTeam(ctx, op, org.CreateTeamRequest{Name: fmt.Sprintf("Team %d.%d", region+1, t+1), ParentID: parent.ID})
			if err != nil {
				return err
			}
			teams = append(teams, team.ID)
		}
	}
	for start := 0; start < r.cfg.Users; start += event.MaxBatch {
		var rows []org.ImportRow
		for i := start; i < min(start+event.MaxBatch, r.cfg.Users); i++ {
			ext := fmt.Sprintf("rep-%04d", i)
			r.reps = append(r.reps, eventgen.Rep{ExternalID: ext, Skill: 0.7 + 0.1*float64(i%7)})
			rows = append(rows, org.ImportRow{User: org.UserInput{DisplayName: "Rep " + ext, Email: ext + "@" + slug + ".test",
				Locale: org.LocaleFR, ExternalID: ext, Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: []uuid.UUID{teams[i%len(teams)]}}})
		}
		res, err := svc.ImportUsers(ctx, op, rows)
		if err != nil {
			return err
		}
		if len(res.Rejected) > 0 {
			return fmt.Errorf("import reps: %+v", res.Rejected[0])
		}
	}
	if _, r.key, err = auth.NewAPIKeys(r.db).CreateForOperator(ctx, tenant.ID, "load"); err != nil {
		return err
	}
	if r.token, err = auth.MintToken([]byte(r.cfg.App.JWTSecret), r.cfg.App.JWTIssuer, r.cfg.App.JWTAudience, auth.TokenRequest{
		TenantID: tenant.ID, UserID: admin.ID, Roles: admin.Roles, TTL: 24 * time.Hour, Now: time.Now()}); err != nil {
		return err
	}
	if _, err := r.kpis.InstallModel(ctx, op, uuid.Nil); err != nil {
		return err
	}
	probe := kpi.Definition{Key: probeKPI, Name: kpi.Text{FR: "Sondes de charge", EN: "Load probes"}, Unit: kpi.UnitCount, Level: 1,
		Direction: kpi.HigherIsBetter, Periods: []period.Kind{period.Month},
		Formula: kpi.Formula{Aggregation: kpi.Count, Breakdown: kpi.DimContent,
			Events: kpi.Selection{Types: []event.Type{event.ContentUsed}, Filter: `content_id.startsWith("probe-")`}}}
	if _, err := r.kpis.Create(ctx, op, kpi.CreateRequest{Definition: probe}); err != nil {
		return err
	}
	if err := r.kpis.Backfill(ctx, tenant.ID); err != nil {
		return err
	}
	for key, target := range map[string]float64{"net_revenue": 2_000_000, "conversion_rate": 0.3, "renewal_rate": 0.85, "nps": 30} {
		if _, err := r.kpis.SetTarget(ctx, op, kpi.SetTargetRequest{KPIKey: key, PeriodKind: period.Month, Scope: kpi.Company, Target: target}); err != nil {
			return err
		}
	}
	n, _ := r.kpis.List(ctx, op, kpi.ListRequest{})
	r.printf("company %s: %d reps in %d teams, %d KPIs\n", slug, r.cfg.Users, len(teams)+2, len(n))
	return nil
}

var errEnough = errors.New("enough events")

// generate returns exactly n deliveries ending around now: eventgen's
// simulation of reps over as many days as it takes.
func generate(n int, reps []eventgen.Rep) ([]eventgen.Delivery, int, error) {
	loc, _ := time.LoadLocation("Europe/Paris")
	perDay := float64(len(reps))*11 + 200
	days := int(math.Ceil(float64(n)/perDay)) + 2
	for {
		end := time.Now().Add(-time.Hour)
		start := end.AddDate(0, 0, -days)
		out := make([]eventgen.Delivery, 0, n)
		cfg := eventgen.Default(42, reps, start, end, loc)
		err := eventgen.Generate(cfg, func(d eventgen.Delivery) error {
			if len(out) == n {
				return errEnough
			}
			out = append(out, d)
			return nil
		}, nil)
		if err != nil && !errors.Is(err, errEnough) {
			return nil, 0, err
		}
		if len(out) == n {
			return out, days, nil
		}
		days = days*3/2 + 1
	}
}

func toProto(d eventgen.Delivery) *rallyev1.SalesEvent {
	e := d.Event
	out := &rallyev1.SalesEvent{Source: e.Source, ExternalId: e.ExternalID, Revision: e.Revision, Type: string(e.Type),
		OccurredAt: timestamppb.New(e.OccurredAt), Retracted: e.Retracted, RepExternalId: e.RepExternalID, AccountId: e.AccountID,
		OpportunityId: e.OpportunityID, LeadId: e.LeadID, Segment: e.Segment, Product: e.Product, DealKind: e.DealKind,
		Stage: e.Stage, FromStage: e.FromStage, Score: e.Score, DiscoveryCompleted: e.DiscoveryCompleted, ContentId: e.ContentID,
		Channel: e.Channel}
	if d.HasAmount {
		out.Amount = &rallyev1.Money{MinorUnits: e.Amount, Currency: e.Currency}
	}
	if e.GrossMargin != 0 {
		out.GrossMargin = &rallyev1.Money{MinorUnits: e.GrossMargin, Currency: e.Currency}
	}
	for _, t := range []struct {
		src time.Time
		dst **timestamppb.Timestamp
	}{{e.OpportunityCreatedAt, &out.OpportunityCreatedAt}, {e.StageEnteredAt, &out.StageEnteredAt},
		{e.LeadCreatedAt, &out.LeadCreatedAt}, {e.TicketOpenedAt, &out.TicketOpenedAt}} {
		if !t.src.IsZero() {
			*t.dst = timestamppb.New(t.src)
		}
	}
	return out
}

func bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(authInterceptor(token))
}

type authInterceptor string

func (a authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(a))
		return next(ctx, req)
	}
}

func (a authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(a))
		return conn
	}
}

func (a authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

type ingestResult struct {
	events, batches int
	elapsed         time.Duration
	delays          []time.Duration
	caughtUp        time.Duration
	probes          int
	rejected        int
	// retries counts calls answered unavailable and sent again.
	retries int64
}

type batch struct {
	rows  []*rallyev1.SalesEvent
	probe string
}

// ingest sends the deliveries and measures, for probe batches, the time
// from acceptance to the probe showing on a level-1 Watch stream.
func (r *run) ingest(ctx context.Context, ds []eventgen.Delivery) (ingestResult, error) {
	var res ingestResult
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	probeRep := r.reps[0].ExternalID
	// The probe KPI's read keeps its first kpi.MaxBreakdownValues probes
	// (in name order): with more, the later probes, and the final one sent
	// to see the roll-ups catch up, would never show, and the run would
	// wait for them in vain. Probes are spaced out to stay below.
	probeEvery := r.cfg.ProbeEvery
	if calls := (len(ds) + r.cfg.Batch - 1) / r.cfg.Batch; calls/probeEvery >= kpi.MaxBreakdownValues-1 {
		probeEvery = calls/(kpi.MaxBreakdownValues-2) + 1
		r.printf("  one probe every %d calls instead of %d: the probe KPI shows at most %d probes\n",
			probeEvery, r.cfg.ProbeEvery, kpi.MaxBreakdownValues)
	}
	var batches []batch
	for i := 0; i < len(ds); i += r.cfg.Batch {
		chunk := ds[i:min(i+r.cfg.Batch, len(ds))]
		b := batch{}
		if len(batches)%probeEvery == 0 && len(chunk) > 1 {
			b.probe = fmt.Sprintf("probe-%05d", len(batches))
			chunk = chunk[:len(chunk)-1]
		}
		for _, d := range chunk {
			b.rows = append(b.rows, toProto(d))
		}
		batches = append(batches, b)
	}
	probeEvent := func(id string) *rallyev1.SalesEvent {
		return &rallyev1.SalesEvent{Source: "load", ExternalId: id, Type: "content.used", OccurredAt: timestamppb.Now(),
			RepExternalId: probeRep, ContentId: id}
	}

	// The watcher.
	var mu sync.Mutex
	seen := map[string]time.Time{}
	seenCh := make(chan struct{}, 1)
	dash := rallyev1connect.NewDashboardServiceClient(httpClient(), r.baseURL, bearer(r.token))
	watch := func() (*connect.ServerStreamForClient[rallyev1.WatchResponse], error) {
		stream, err := dash.Watch(ctx, &rallyev1.WatchRequest{Level: 1, Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
		if err != nil {
			return nil, err
		}
		if !stream.Receive() {
			return nil, fmt.Errorf("watch: %w", stream.Err())
		}
		return stream, nil
	}
	stream, err := watch()
	if err != nil {
		return res, err
	}
	var retries atomic.Int64
	go func(stream *connect.ServerStreamForClient[rallyev1.WatchResponse]) {
		// A stream that ends (the server lost a dependency, or restarted)
		// is opened again, as a dashboard would.
		for ctx.Err() == nil {
			if stream == nil {
				var err error
				if stream, err = retryUnavailable(ctx, func() { retries.Add(1) }, watch); err != nil {
					time.Sleep(time.Second)
					continue
				}
			}
			r.receive(stream, &mu, seen, seenCh)
			stream = nil
		}
	}(stream)
	client := rallyev1connect.NewEventServiceClient(httpClient(), r.baseURL, bearer(r.key))
	accepted := map[string]time.Time{}
	var acceptedMu sync.Mutex
	var rejected, sent, reserved atomic.Int64
	start := time.Now()
	// Interleaved: clients take the next batch of the stream, so concurrent
	// batches are neighbours in time (they share deals and re-sent events,
	// and wait for each other's locks). Sharded: each client streams its own
	// contiguous part of the history, as parallel integrations would.
	queues := make([]chan batch, r.cfg.Clients)
	shared := make(chan batch)
	for i := range queues {
		queues[i] = shared
		if r.cfg.Shard {
			queues[i] = make(chan batch, len(batches)/r.cfg.Clients+1)
		}
	}
	errs := make(chan error, r.cfg.Clients)
	var wg sync.WaitGroup
	for c := range r.cfg.Clients {
		work := queues[c]
		wg.Go(func() {
			for b := range work {
				if r.cfg.Rate > 0 { // pace the clients together at Rate events/s
					due := start.Add(time.Duration(float64(reserved.Add(int64(len(b.rows)))) / float64(r.cfg.Rate) * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				rows := b.rows
				if b.probe != "" {
					rows = append(slices.Clone(rows), probeEvent(b.probe))
				}
				out, err := retryUnavailable(ctx, func() { retries.Add(1) }, func() (*rallyev1.IngestEventsResponse, error) {
					return client.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: rows})
				})
				if err != nil {
					errs <- err
					cancel()
					return
				}
				rejected.Add(int64(len(out.Rejected)))
				sent.Add(int64(len(rows)))
				if b.probe != "" {
					acceptedMu.Lock()
					accepted[b.probe] = time.Now()
					acceptedMu.Unlock()
				}
			}
		})
	}
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				n := sent.Load()
				mu.Lock()
				probes := len(seen)
				mu.Unlock()
				r.printf("  %d/%d events accepted (%.0f events/s), %d probes seen on the dashboard\n",
					n, len(ds), float64(n)/time.Since(start).Seconds(), probes)
			}
		}
	}()
	if r.cfg.Shard {
		for i, b := range batches {
			queues[i*r.cfg.Clients/len(batches)] <- b
		}
		for _, q := range queues {
			close(q)
		}
	} else {
	feed:
		for _, b := range batches {
			select {
			case shared <- b:
			case <-ctx.Done():
				break feed
			}
		}
		close(shared)
	}
	wg.Wait()
	close(stopProgress)
	res.elapsed = time.Since(start)
	select {
	case err := <-errs:
		return res, fmt.Errorf("ingest: %w", err)
	default:
	}
	res.events, res.batches, res.rejected = len(ds), len(batches), int(rejected.Load())
	res.retries = retries.Load()

	// A last probe, sent after every batch committed: once it shows, the
	// roll-ups have caught up with everything.
	last := "probe-final"
	if _, err := retryUnavailable(ctx, func() { retries.Add(1) }, func() (*rallyev1.IngestEventsResponse, error) {
		return client.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: []*rallyev1.SalesEvent{probeEvent(last)}})
	}); err != nil {
		return res, err
	}
	lastSent := time.Now()
	accepted[last] = lastSent
	deadline := time.After(10 * time.Minute)
	for {
		mu.Lock()
		_, ok := seen[last]
		mu.Unlock()
		if ok {
			break
		}
		select {
		case <-seenCh:
		case <-time.After(time.Second):
		case <-deadline:
			return res, fmt.Errorf("the roll-ups did not catch up within 10 minutes")
		}
	}
	mu.Lock()
	res.caughtUp = seen[last].Sub(start.Add(res.elapsed))
	for id, at := range accepted {
		if id == last {
			continue
		}
		if s, ok := seen[id]; ok {
			res.delays = append(res.delays, max(0, s.Sub(at)))
		}
	}
	mu.Unlock()
	res.probes = len(accepted) - 1
	slices.Sort(res.delays)
	cancel()
	return res, nil
}

type readResult struct {
	name      string
	latencies []time.Duration
	cards     int
}

// readDashboards reads the boards one after the other, on a quiet system.
func (r *run) readDashboards(ctx context.Context) ([]readResult, error) {
	dash := rallyev1connect.NewDashboardServiceClient(httpClient(), r.baseURL, bearer(r.token))
	rep := uuid.Nil
	err := r.db.ReadTenant(ctx, r.tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id FROM users WHERE tenant_id = $1 AND external_id = $2`, r.tenant.ID, r.reps[1].ExternalID).Scan(&rep)
	})
	if err != nil {
		return nil, err
	}
	type reader struct {
		name string
		n    int
		call func() (int, error)
	}
	readers := []reader{
		{"level 1 (company, month, 12-month series)", r.cfg.Reads, func() (int, error) {
			res, err := dash.GetLevel1(ctx, &rallyev1.GetLevel1Request{Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
			return len(res.GetKpis()), err
		}},
		{"level 2 (company, month, per segment, stage and team)", r.cfg.Reads / 4, func() (int, error) {
			res, err := dash.GetLevel2(ctx, &rallyev1.GetLevel2Request{Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
			return len(res.GetKpis()), err
		}},
		{"level 3 (one rep, month)", r.cfg.Reads / 4, func() (int, error) {
			res, err := dash.GetLevel3(ctx, &rallyev1.GetLevel3Request{UserId: rep.String(), Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
			return len(res.GetKpis()), err
		}},
	}
	var out []readResult
	for _, rd := range readers {
		res := readResult{name: rd.name}
		for i := range rd.n + 5 {
			t0 := time.Now()
			n, err := rd.call()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rd.name, err)
			}
			if i >= 5 { // the first reads warm caches
				res.latencies = append(res.latencies, time.Since(t0))
			}
			res.cards = n
		}
		slices.Sort(res.latencies)
		out = append(out, res)
	}
	return out, nil
}

type rawResult struct {
	insert, copy time.Duration
	rows         int
}

// rawCeiling writes the same rows straight into scratch copies of
// event_versions (no row-level security, no feed, no roll-ups) with the same
// batches and clients: once with INSERT … SELECT FROM unnest, once with COPY.
func (r *run) rawCeiling(ctx context.Context, ds []eventgen.Delivery) (rawResult, error) {
	res := rawResult{rows: len(ds)}
	pcfg, err := pgxpool.ParseConfig(r.cfg.App.DatabaseURL)
	if err != nil {
		return res, err
	}
	pcfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		postgres.RegisterTypes(c.TypeMap()) // as the server's pool
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	for _, tbl := range []string{"load_raw_insert", "load_raw_copy"} {
		if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS `+tbl+`; CREATE TABLE `+tbl+` (LIKE event_versions INCLUDING DEFAULTS INCLUDING INDEXES)`); err != nil {
			return res, err
		}
	}
	r.printf("raw ceiling: writing the same %d rows with pgx...\n", len(ds))
	tenant := r.tenant.ID
	timed := func(write func(conn *pgxpool.Pool, rows []eventgen.Delivery) error) (time.Duration, error) {
		work := make(chan []eventgen.Delivery)
		errs := make(chan error, r.cfg.Clients)
		var wg sync.WaitGroup
		start := time.Now()
		for range r.cfg.Clients {
			wg.Go(func() {
				for rows := range work {
					if err := write(pool, rows); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for i := 0; i < len(ds); i += r.cfg.Batch {
			work <- ds[i:min(i+r.cfg.Batch, len(ds))]
		}
		close(work)
		wg.Wait()
		select {
		case err := <-errs:
			return 0, err
		default:
		}
		return time.Since(start), nil
	}
	if res.insert, err = timed(func(pool *pgxpool.Pool, rows []eventgen.Delivery) error {
		cols := columnsOf(tenant, rows)
		_, err := pool.Exec(ctx, rawInsertSQL, cols...)
		return err
	}); err != nil {
		return res, fmt.Errorf("raw insert: %w", err)
	}
	if res.copy, err = timed(func(pool *pgxpool.Pool, rows []eventgen.Delivery) error {
		_, err := pool.CopyFrom(ctx, pgx.Identifier{"load_raw_copy"}, rawColumns, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			return rowOf(tenant, rows[i]), nil
		}))
		return err
	}); err != nil {
		return res, fmt.Errorf("raw copy: %w", err)
	}
	_, _ = pool.Exec(ctx, `DROP TABLE load_raw_insert, load_raw_copy`)
	return res, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func (r *run) report(ing ingestResult, reads []readResult, raw rawResult) {
	rate := float64(ing.events) / ing.elapsed.Seconds()
	mode := "interleaved: the next batch of one stream"
	if r.cfg.Rate > 0 {
		defer r.printf("(paced at %d events/s)\n", r.cfg.Rate)
	}
	if r.cfg.Shard {
		mode = "sharded: each its own part of the history"
	}
	r.printf("\n== rallye load events: %d events, %d users, batches of %d, %d concurrent clients (%s) ==\n",
		ing.events, r.cfg.Users, r.cfg.Batch, r.cfg.Clients, mode)
	r.printf("ingestion through IngestEvents (Connect, loopback)  %d events in %.1f s: %.0f events/s sustained (%d rejected, %d calls retried on unavailable)\n",
		ing.events, ing.elapsed.Seconds(), rate, ing.rejected, ing.retries)
	r.printf("batch accepted -> level-1 Watch shows it            p50 %s, p99 %s, max %s (%d probe batches)\n",
		ms(pct(ing.delays, 0.5)), ms(pct(ing.delays, 0.99)), ms(pct(ing.delays, 1)), len(ing.delays))
	r.printf("roll-ups caught up after the last batch             %.1f s (end-to-end %.0f events/s)\n",
		ing.caughtUp.Seconds(), float64(ing.events)/(ing.elapsed+ing.caughtUp).Seconds())
	for _, rd := range reads {
		r.printf("dashboard read %-52s p50 %s, p99 %s (%d reads, %d cards)\n", rd.name, ms(pct(rd.latencies, 0.5)),
			ms(pct(rd.latencies, 0.99)), len(rd.latencies), rd.cards)
	}
	r.printf("raw ceiling, same rows via pgx, batched INSERT … unnest  %.0f rows/s (%.1f s)\n",
		float64(raw.rows)/raw.insert.Seconds(), raw.insert.Seconds())
	r.printf("raw ceiling, same rows via pgx, COPY                     %.0f rows/s (%.1f s)\n",
		float64(raw.rows)/raw.copy.Seconds(), raw.copy.Seconds())
}

// receive notes when each probe shows on the stream, from the message
// already received on, until the stream ends.
func (r *run) receive(stream *connect.ServerStreamForClient[rallyev1.WatchResponse], mu *sync.Mutex, seen map[string]time.Time, seenCh chan struct{}) {
	for {
		now := time.Now()
		for _, c := range stream.Msg().Kpis {
			if c.Key != probeKPI {
				continue
			}
			mu.Lock()
			for _, b := range c.Breakdown {
				if _, ok := seen[b.ValueKey]; !ok {
					seen[b.ValueKey] = now
				}
			}
			mu.Unlock()
			select {
			case seenCh <- struct{}{}:
			default:
			}
		}
		if !stream.Receive() {
			return
		}
	}
}
