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
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
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
	Events  int
	Users   int
	Batch   int
	Clients int
	Reads   int
	// ProbeInterval spaces the prober's one-event calls.
	ProbeInterval time.Duration
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
	// InProcess runs the server in this process instead of a child
	// `rallye serve` (whose CPU is then measured apart from the client's).
	InProcess bool
	App       config.Config
	Out       io.Writer
	Log       *slog.Logger
}

// probeKPI counts the prober's events: a watcher reading k has seen the
// first k probes.
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
	probe    *prober
	meter    *cpuMeter
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
		return r.connect(ctx, 0)
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
	cfg.RedisPrefix = "load-" + randomHex(4) + ":"
	if cfg.JWTSecret == "" {
		cfg.JWTSecret = randomHex(32)
	}
	r.cfg.App = cfg
	if !r.cfg.InProcess {
		pid, err := r.startChild(ctx)
		if err != nil {
			return err
		}
		r.printf("server: a child `rallye serve` (pid %d) on %s, database %s\n", pid, r.baseURL, name)
		return r.connect(ctx, pid)
	}
	cfg.Addr = "127.0.0.1:0"
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
	return r.startMeter(0)
}

// startChild starts `rallye serve` (this executable) on the fresh
// database and a free port, and waits until it answers.
func (r *run) startChild(ctx context.Context) (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	addr := ln.Addr().String()
	ln.Close()
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	cfg := r.cfg.App
	cmd := exec.Command(exe, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+cfg.DatabaseURL, "RALLYE_ADDR="+addr, "RALLYE_REDIS_PREFIX="+cfg.RedisPrefix,
		"RALLYE_JWT_SECRET="+cfg.JWTSecret, "RALLYE_LOG_LEVEL=warn", "RALLYE_MIGRATE_ON_START=true", "RALLYE_DEBUG_ADDR=")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	r.cleanups = append(r.cleanups, func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	r.baseURL = "http://" + addr
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := http.Get(r.baseURL + "/metrics")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return cmd.Process.Pid, nil
			}
		}
		select {
		case err := <-exited:
			return 0, fmt.Errorf("the server exited: %v", err)
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the server did not answer on %s within 2 minutes", addr)
		}
	}
}

// connect opens the load's own connections to a server's database.
func (r *run) connect(ctx context.Context, serverPID int) error {
	db, err := postgres.Open(ctx, r.cfg.App.DatabaseURL, 10)
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
	return r.startMeter(serverPID)
}

// startMeter prepares the CPU samples: the server's process when it is a
// child, PostgreSQL's processes when they run on this machine, and Redis.
func (r *run) startMeter(serverPID int) error {
	u, err := url.Parse(r.cfg.App.DatabaseURL)
	if err != nil {
		return err
	}
	r.meter = &cpuMeter{serverPID: serverPID, db: strings.TrimPrefix(u.Path, "/"), query: r.db.Pool.Query}
	if len(r.cfg.App.RedisAddrs) == 0 {
		if opt, err := redis.ParseURL(r.cfg.App.RedisURL); err == nil {
			c := redis.NewClient(opt)
			r.cleanups = append(r.cleanups, func() { c.Close() })
			r.meter.redis = c
		}
	}
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
	probeRep, err := svc.ImportUsers(ctx, op, []org.ImportRow{{User: org.UserInput{DisplayName: "Sonde de fraîcheur", Email: "probe@" + slug + ".test",
		Locale: org.LocaleFR, ExternalID: probeExternalID, Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: []uuid.UUID{teams[0]}}}})
	if err != nil {
		return err
	}
	if len(probeRep.Rejected) > 0 {
		return fmt.Errorf("import the probe rep: %+v", probeRep.Rejected[0])
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
		Formula: kpi.Formula{Aggregation: kpi.Count,
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
	var probeID uuid.UUID
	if err := r.db.ReadTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id FROM users WHERE tenant_id = $1 AND external_id = $2`, tenant.ID, probeExternalID).Scan(&probeID)
	}); err != nil {
		return err
	}
	if r.probe, err = r.setupProber(ctx, probeID.String(), r.cfg.ProbeInterval); err != nil {
		return err
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
	events, calls int
	elapsed       time.Duration
	// calls' latencies (answer minus send, retries included), sorted
	latencies []time.Duration
	// acknowledgement → shown, per probe, sorted
	kpiDelays, rankDelays []time.Duration
	// the last probe, sent after the last call, shown after
	kpiCaughtUp, rankCaughtUp time.Duration
	rejected                  int
	// retries counts calls answered unavailable or resource_exhausted and
	// sent again (backpressure).
	retries int64
	cpu     cpuUse
}

// ingest sends the deliveries in calls of Batch events from Clients
// concurrent clients, times each call, and runs the prober beside them.
func (r *run) ingest(ctx context.Context, ds []eventgen.Delivery) (ingestResult, error) {
	var res ingestResult
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var calls [][]*rallyev1.SalesEvent
	for i := 0; i < len(ds); i += r.cfg.Batch {
		var rows []*rallyev1.SalesEvent
		for _, d := range ds[i:min(i+r.cfg.Batch, len(ds))] {
			rows = append(rows, toProto(d))
		}
		calls = append(calls, rows)
	}
	var retries atomic.Int64
	retried := func() { retries.Add(1) }
	if err := r.probe.watch(ctx, retried); err != nil {
		return res, err
	}
	client := rallyev1connect.NewEventServiceClient(httpClient(), r.baseURL, bearer(r.key))
	var rejected, sent, reserved atomic.Int64
	before := r.meter.sample(ctx)
	start := time.Now()
	stopProbes := make(chan struct{})
	probeErr := make(chan error, 1)
	go func() { probeErr <- r.probe.run(ctx, stopProbes, client, retried) }()
	// Interleaved: clients take the next call of the stream, so concurrent
	// calls are neighbours in time (they share deals and re-sent events,
	// and wait for each other's locks). Sharded: each client streams its own
	// contiguous part of the history, as parallel integrations would.
	queues := make([]chan []*rallyev1.SalesEvent, r.cfg.Clients)
	shared := make(chan []*rallyev1.SalesEvent)
	for i := range queues {
		queues[i] = shared
		if r.cfg.Shard {
			queues[i] = make(chan []*rallyev1.SalesEvent, len(calls)/r.cfg.Clients+1)
		}
	}
	errs := make(chan error, r.cfg.Clients)
	latencies := make([][]time.Duration, r.cfg.Clients)
	var wg sync.WaitGroup
	for c := range r.cfg.Clients {
		work := queues[c]
		wg.Go(func() {
			for rows := range work {
				if r.cfg.Rate > 0 { // pace the clients together at Rate events/s
					due := start.Add(time.Duration(float64(reserved.Add(int64(len(rows)))) / float64(r.cfg.Rate) * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				t0 := time.Now()
				out, err := retryUnavailable(ctx, retried, func() (*rallyev1.IngestEventsResponse, error) {
					return client.IngestEvents(ctx, &rallyev1.IngestEventsRequest{Events: rows})
				})
				if err != nil {
					errs <- err
					cancel()
					return
				}
				latencies[c] = append(latencies[c], time.Since(t0))
				rejected.Add(int64(len(out.Rejected)))
				sent.Add(int64(len(rows)))
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
				k, b := r.probe.shown()
				r.printf("  %d/%d events accepted (%.0f events/s), probes shown: %d on the KPI, %d on the board\n",
					n, len(ds), float64(n)/time.Since(start).Seconds(), k, b)
			}
		}
	}()
	if r.cfg.Shard {
		for i, rows := range calls {
			queues[i*r.cfg.Clients/len(calls)] <- rows
		}
		for _, q := range queues {
			close(q)
		}
	} else {
	feed:
		for _, rows := range calls {
			select {
			case shared <- rows:
			case <-ctx.Done():
				break feed
			}
		}
		close(shared)
	}
	wg.Wait()
	close(stopProgress)
	res.elapsed = time.Since(start)
	close(stopProbes)
	select {
	case err := <-errs:
		return res, fmt.Errorf("ingest: %w", err)
	default:
	}
	if err := <-probeErr; err != nil {
		return res, fmt.Errorf("probe: %w", err)
	}
	res.events, res.calls, res.rejected = len(ds), len(calls), int(rejected.Load())
	for _, l := range latencies {
		res.latencies = append(res.latencies, l...)
	}
	slices.Sort(res.latencies)

	// A last probe, sent after every call was answered: once it shows, the
	// roll-ups and the boards have caught up with everything.
	var err error
	if res.kpiCaughtUp, res.rankCaughtUp, err = r.probe.caughtUp(ctx, client, retried, start.Add(res.elapsed)); err != nil {
		return res, err
	}
	res.cpu = before.to(r.meter.sample(ctx))
	res.kpiDelays, res.rankDelays = r.probe.delays(&r.probe.kpiSeen), r.probe.delays(&r.probe.rankSeen)
	res.retries = retries.Load()
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
	insert, copy rawTiming
	rows, calls  int
}

// rawTiming is one raw write of every row: its duration and each
// statement's latency, sorted.
type rawTiming struct {
	elapsed   time.Duration
	latencies []time.Duration
}

// rawCeiling writes the same rows straight into scratch copies of
// event_versions (no row-level security, no feed, no roll-ups) with the same
// batches and clients: once with INSERT … SELECT FROM unnest, once with COPY.
func (r *run) rawCeiling(ctx context.Context, ds []eventgen.Delivery) (rawResult, error) {
	res := rawResult{rows: len(ds), calls: (len(ds) + r.cfg.Batch - 1) / r.cfg.Batch}
	pcfg, err := pgxpool.ParseConfig(r.cfg.App.DatabaseURL)
	if err != nil {
		return res, err
	}
	pcfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		postgres.RegisterTypes(c.TypeMap()) // as the server's pool
		return nil
	}
	pcfg.MaxConns = int32(max(4, r.cfg.Clients)) // a connection per client: the best the raw writes can do
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
	timed := func(write func(conn *pgxpool.Pool, rows []eventgen.Delivery) error) (rawTiming, error) {
		work := make(chan []eventgen.Delivery)
		errs := make(chan error, r.cfg.Clients)
		latencies := make([][]time.Duration, r.cfg.Clients)
		var wg sync.WaitGroup
		start := time.Now()
		for c := range r.cfg.Clients {
			wg.Go(func() {
				for rows := range work {
					t0 := time.Now()
					if err := write(pool, rows); err != nil {
						errs <- err
						return
					}
					latencies[c] = append(latencies[c], time.Since(t0))
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
			return rawTiming{}, err
		default:
		}
		t := rawTiming{elapsed: time.Since(start)}
		for _, l := range latencies {
			t.latencies = append(t.latencies, l...)
		}
		slices.Sort(t.latencies)
		return t, nil
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
	secs := ing.elapsed.Seconds()
	mode := "interleaved: the next call of one stream"
	if r.cfg.Shard {
		mode = "sharded: each its own part of the history"
	}
	if r.cfg.Rate > 0 {
		mode += fmt.Sprintf(", paced at %d events/s", r.cfg.Rate)
	}
	r.printf("\n== rallye load events: %d events, %d users, %d per call, %d concurrent clients (%s) ==\n",
		ing.events, r.cfg.Users, r.cfg.Batch, r.cfg.Clients, mode)
	r.printf("IngestEvents (Connect, loopback)   %d calls in %.1f s: %.0f calls/s, %.0f events/s (%d rejected, %d calls retried on backpressure)\n",
		ing.calls, secs, float64(ing.calls)/secs, float64(ing.events)/secs, ing.rejected, ing.retries)
	r.printf("call latency                       p50 %s, p99 %s, max %s\n",
		ms(pct(ing.latencies, 0.5)), ms(pct(ing.latencies, 0.99)), ms(pct(ing.latencies, 1)))
	u := ing.cpu
	server := perEvent(u.server, ing.events, u.ok.server)
	if r.app != nil {
		server = "in-process: counted with the client"
	}
	r.printf("CPU per event (load to caught up)  server %s, PostgreSQL %s (this database's backends; all of the machine's: %s), Redis %s, load client %s; over %.1f s of %d cores\n",
		server, perEvent(u.pgDB, ing.events, u.ok.pg), perEvent(u.pgAll, ing.events, u.ok.pg), perEvent(u.redis, ing.events, u.ok.redis),
		perEvent(u.client, ing.events, true), u.wall.Seconds(), runtime.NumCPU())
	r.printf("freshness, acknowledged -> KPI value changed on a level-1 Watch      p50 %s, p99 %s, max %s (%d probes)\n",
		ms(pct(ing.kpiDelays, 0.5)), ms(pct(ing.kpiDelays, 0.99)), ms(pct(ing.kpiDelays, 1)), len(ing.kpiDelays))
	r.printf("freshness, acknowledged -> rep's points moved on a live board        p50 %s, p99 %s, max %s (%d probes)\n",
		ms(pct(ing.rankDelays, 0.5)), ms(pct(ing.rankDelays, 0.99)), ms(pct(ing.rankDelays, 1)), len(ing.rankDelays))
	r.printf("caught up after the last call      KPI %.2f s, board %.2f s (end-to-end %.0f events/s)\n",
		ing.kpiCaughtUp.Seconds(), ing.rankCaughtUp.Seconds(), float64(ing.events)/(ing.elapsed+max(ing.kpiCaughtUp, ing.rankCaughtUp)).Seconds())
	for _, rd := range reads {
		r.printf("dashboard read %-52s p50 %s, p99 %s (%d reads, %d cards)\n", rd.name, ms(pct(rd.latencies, 0.5)),
			ms(pct(rd.latencies, 0.99)), len(rd.latencies), rd.cards)
	}
	r.printf("raw ceiling, same rows, calls and clients via pgx, INSERT … unnest  %.0f rows/s, %.0f statements/s, p50 %s, p99 %s\n",
		float64(raw.rows)/raw.insert.elapsed.Seconds(), float64(raw.calls)/raw.insert.elapsed.Seconds(), ms(pct(raw.insert.latencies, 0.5)), ms(pct(raw.insert.latencies, 0.99)))
	r.printf("raw ceiling, same rows, calls and clients via pgx, COPY             %.0f rows/s, %.0f statements/s, p50 %s, p99 %s\n",
		float64(raw.rows)/raw.copy.elapsed.Seconds(), float64(raw.calls)/raw.copy.elapsed.Seconds(), ms(pct(raw.copy.latencies, 0.5)), ms(pct(raw.copy.latencies, 0.99)))
}
