// Package app assembles a Rallye server from its configuration: pools,
// Redis, the job queue, the domain services and the API handler. The rallye
// command and the end-to-end tests both start servers through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/grpchealth"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/api"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/console"
	"github.com/rallyehq/rallye/internal/dashboard"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/privacy"
	"github.com/rallyehq/rallye/internal/redisdb"
	"github.com/rallyehq/rallye/internal/reward"
	"github.com/rallyehq/rallye/internal/telemetry"
)

// App is a wired Rallye server.
type App struct {
	Config   config.Config
	Log      *slog.Logger
	DB       *postgres.DB
	Redis    redis.UniversalClient
	Keys     redisdb.Keyspace
	River    *river.Client[pgx.Tx]
	Registry *prometheus.Registry
	Auth     *auth.Authenticator
	Org      *org.Service
	APIKeys  *auth.APIKeys
	Events   *event.Store
	Feed     *event.Feed
	// Boards is the leaderboards: the API reads them, the challenge area
	// records points through Boards.Scores and Boards.Boards.
	Boards *leaderboard.Service
	// Challenges runs challenges; its progress consumer is registered on
	// Feed and its lifecycle workers on River.
	Challenges *challenge.Service
	// KPI computes KPIs from the feed; Dashboards reads them by level and
	// Hub carries their changes to every instance's Watch streams.
	KPI        *kpi.Service
	Hub        *dashboard.Hub
	Dashboards *dashboard.Service
	// Outbox delivers domain events to their consumers (Rewards' today).
	Outbox *outbox.Runner
	// Rewards is the wallet, badges, streaks, kudos and catalogue, fed by
	// Feed and Outbox.
	Rewards *reward.Service
	// Analytics is participation (and, later, impact) for HR and managers.
	Analytics *analytics.Service
	// Privacy answers personal-data requests (export, erasure).
	Privacy *privacy.Service
	// Console is the web console at /console/.
	Console *console.Console
	Handler http.Handler

	jwksCancel context.CancelFunc
	// feedDB is the feed's own pool, when it has one.
	feedDB *postgres.DB
}

// Options adjust how an App is built.
type Options struct {
	// SkipMigrate leaves the schema alone (tests use pre-migrated databases).
	SkipMigrate bool
	// Tracing instruments RPCs, queries, Redis commands, jobs and the change
	// feed (nil: tracing off).
	Tracing *telemetry.Tracing
}

// New connects to PostgreSQL and Redis, migrates, and wires the services.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, o Options) (*App, error) {
	a := &App{Config: cfg, Log: log, Registry: prometheus.NewRegistry(), Keys: redisdb.Keyspace{Prefix: cfg.RedisPrefix}}
	a.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()

	if !o.SkipMigrate {
		if err := postgres.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	db, err := postgres.OpenWith(ctx, cfg.DatabaseURL, postgres.PoolOptions{MaxConns: cfg.DatabaseMaxConns, Tracer: o.Tracing.PgxTracer()})
	if err != nil {
		return nil, err
	}
	a.DB = db
	if !o.SkipMigrate {
		if err := postgres.Migrate(ctx, db.Pool, log); err != nil {
			return nil, err
		}
	}
	if enforced, err := postgres.RowSecurityEnforced(ctx, db.Pool); err == nil && !enforced {
		log.Warn("the database role is a superuser or bypasses row-level security: tenant isolation rests on query conditions alone; connect as an ordinary role in production")
	}

	a.Redis, err = redisdb.Open(ctx, redisdb.Options{URL: cfg.RedisURL, Addrs: cfg.RedisAddrs, MasterName: cfg.RedisMasterName,
		Cluster: cfg.RedisCluster, Instrument: o.Tracing.InstrumentRedis})
	if err != nil {
		return nil, err
	}

	// Durable background work. Domain areas add their workers to this bundle
	// below, before the client starts in Serve; jobs are inserted with
	// InsertTx inside the transaction of the change that causes them.
	a.Boards = leaderboard.New(leaderboard.Deps{
		DB: db, Redis: a.Redis, Keys: a.Keys, Log: log.With("component", "leaderboard"),
		WatchRefresh: cfg.WatchRefresh, RepairDelay: cfg.LeaderboardRepairDelay,
	})
	workers := river.NewWorkers()
	river.AddWorker(workers, &idempotency.PurgeWorker{DB: db})
	river.AddWorker(workers, a.Boards.RepairWorker())
	river.AddWorker(workers, a.Boards.SweepWorker())
	// Challenge points go to the leaderboard's ledger and boards.
	seam := challenge.LeaderboardSeam{LB: a.Boards}
	a.Challenges = challenge.New(challenge.Deps{
		DB: db, Log: log.With("component", "challenges"), Scores: seam, Boards: seam,
		FinalizeRecheck: cfg.ChallengeFinalizeCheck,
	})
	challenge.AddWorkers(workers, a.Challenges)
	a.KPI = kpi.NewService(db, nil, log.With("component", "kpi"))
	a.Registry.MustRegister(a.KPI.Collectors()...)
	periodic := []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(24*time.Hour),
			func() (river.JobArgs, *river.InsertOpts) { return idempotency.PurgeArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}),
		river.NewPeriodicJob(river.PeriodicInterval(leaderboard.SweepInterval),
			func() (river.JobArgs, *river.InsertOpts) { return leaderboard.SweepArgs{}, nil }, nil),
	}
	periodic = append(periodic, kpi.AddWorkers(workers, a.KPI)...)
	a.Rewards = reward.New(reward.Deps{DB: db, Ledger: a.Boards.Scores, Log: log.With("component", "rewards")})
	periodic = append(periodic, reward.AddWorkers(workers, a.Rewards)...)
	a.River, err = river.NewClient(riverpgxv5.New(db.Pool), &river.Config{
		Logger:       jobQueueLogger(log.With("component", "jobs")),
		ErrorHandler: jobErrorLogger{log: log.With("component", "jobs")},
		Workers:      workers,
		Queues:       map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
		PeriodicJobs: periodic,
		Middleware:   o.Tracing.RiverMiddleware(),
	})
	if err != nil {
		return nil, fmt.Errorf("job queue: %w", err)
	}
	a.Boards.SetJobs(a.River) // scoring transactions enqueue leaderboard repairs
	a.Challenges.SetJobs(a.River)
	a.KPI.SetJobs(a.River)

	var jwks keyfunc.Keyfunc
	if cfg.JWKSURL != "" {
		jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		a.jwksCancel = cancel
		jwks, err = keyfunc.NewDefaultCtx(jctx, []string{cfg.JWKSURL})
		if err != nil {
			return nil, fmt.Errorf("RALLYE_JWKS_URL: %w", err)
		}
	}

	a.Org = org.NewService(db)
	a.APIKeys = auth.NewAPIKeys(db)
	a.Auth = auth.NewAuthenticator(auth.Options{
		Secret: []byte(cfg.JWTSecret), JWKS: jwks, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience,
		CacheTTL: cfg.CredentialCacheTTL,
	}, a.Org, a.APIKeys)
	a.Org.Forget = a.Auth.ForgetUser
	a.Events = event.NewStore(db)
	if cfg.EventMaxFuture > 0 {
		a.Events.MaxFuture = cfg.EventMaxFuture
	}
	a.Events.GroupTransactions = cfg.IngestGroupTransactions
	a.Registry.MustRegister(a.Events.Collectors()...)
	// Events parked for a CRM id no person carried are taken in by the
	// transaction that creates (or imports) that person.
	a.Org.PeopleArrived = func(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, externalIDs []string) error {
		_, err := a.Events.ReleaseParked(ctx, tx, tenantID, externalIDs)
		return err
	}
	// Consumers of the change feed register here.
	// The feed's consumers get a pool of their own: ingestion and reads
	// filling the main pool must not stop KPIs, progress and ranks from
	// catching up.
	feedDB := db
	if cfg.FeedDatabaseMaxConns > 0 {
		if feedDB, err = postgres.OpenWith(ctx, cfg.DatabaseURL, postgres.PoolOptions{MaxConns: cfg.FeedDatabaseMaxConns,
			Tracer: o.Tracing.PgxTracer()}); err != nil {
			return nil, err
		}
		a.feedDB = feedDB
	}
	a.Feed = event.NewFeed(feedDB, log.With("component", "feed"))
	if cfg.IngestMaxLag > 0 {
		a.Events.Backpressure = &event.Backpressure{MaxLag: cfg.IngestMaxLag, Consumers: a.Feed.Consumers}
	}
	if o.Tracing.On() {
		a.Events.Tracer = o.Tracing.Tracer("github.com/rallyehq/rallye/internal/event")
		a.Feed.Tracer = a.Events.Tracer
	}
	// Large batches when the feed has a backlog: the roll-up consumer
	// collapses a batch in memory, so fewer, larger writes catch up faster
	// (a small backlog is still read at once).
	a.Feed.BatchSize = 20000
	a.Feed.Sweep = cfg.FeedSweep
	a.Feed.Retry = event.RetryPolicy{MaxAttempts: cfg.FeedMaxAttempts, Base: cfg.FeedRetryBase, Max: cfg.FeedRetryMax}
	a.Registry.MustRegister(a.Feed.Collectors()...)
	a.Feed.Register(a.KPI.Rollups())
	a.Feed.Register(a.Challenges.Progress())
	a.Feed.Register(a.Rewards.Activity())
	a.Outbox = outbox.NewRunner(db, log.With("component", "outbox"))
	a.Outbox.Register(a.Rewards.Consumer())
	// Roll-up changes reach the live dashboards of every instance through
	// Redis.
	a.Hub = dashboard.NewHub(a.Redis, a.Keys, log.With("component", "dashboard"))
	a.KPI.OnChange = a.Hub.Publish
	a.Analytics = analytics.New(db)
	a.Analytics.SetKPI(a.KPI)
	a.Privacy = privacy.New(privacy.Deps{DB: db, Boards: a.Boards, Forget: a.Auth.ForgetUser, Log: log.With("component", "privacy")})
	a.Dashboards = dashboard.NewService(db, a.KPI, a.Org, a.Hub, log.With("component", "dashboard"))

	a.Registry.MustRegister(telemetry.NewJobQueue(db.Pool, log.With("component", "metrics")))
	interceptors, err := o.Tracing.ConnectInterceptors()
	if err != nil {
		return nil, err
	}
	a.Console = console.New(console.Config{OIDCIssuer: cfg.ConsoleOIDCIssuer, OIDCClientID: cfg.ConsoleOIDCClientID})
	rpcs, err := api.NewHandler(api.Deps{
		Log: log, Registry: a.Registry, Auth: a.Auth, Health: &healthChecker{db: db, redis: a.Redis},
		Org: a.Org, APIKeys: a.APIKeys, Events: a.Events, Boards: a.Boards, Challenges: a.Challenges,
		KPI: a.KPI, Dashboards: a.Dashboards, Rewards: a.Rewards, Analytics: a.Analytics, Privacy: a.Privacy, MaxRequestBytes: cfg.MaxRequestBytes,
		Interceptors: interceptors,
	})
	if err != nil {
		return nil, err
	}
	// The console's pages beside the RPCs, which it calls like any client.
	mux := http.NewServeMux()
	mux.Handle(console.Path, a.Console)
	mux.Handle("/", rpcs)
	a.Handler = mux
	ok = true
	return a, nil
}

// Serve serves the API on ln until ctx is cancelled, then shuts down
// gracefully: the listener closes, in-flight requests get up to
// ShutdownTimeout to finish, background jobs stop, and only then do the pools
// close (in Close).
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // gRPC over cleartext (h2c)
	srv := &http.Server{
		Handler:           a.Handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if err := a.River.Start(ctx); err != nil {
		return fmt.Errorf("start job queue: %w", err)
	}
	feedCtx, stopFeed := context.WithCancel(context.WithoutCancel(ctx))
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		a.Feed.Run(feedCtx, len(a.Feed.Consumers())) // a worker per consumer: ranks never wait for roll-ups
	}()
	outboxDone := make(chan struct{})
	go func() {
		defer close(outboxDone)
		a.Outbox.Run(feedCtx, 2)
	}()
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		a.Hub.Run(feedCtx)
	}()
	defer func() {
		stopFeed()
		<-feedDone
		<-outboxDone
		<-hubDone
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.Log.Info("rallye serving", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.Log.Info("shutting down", "timeout", a.Config.ShutdownTimeout.String())
	// Live streams (rankings and dashboards) end first, their clients
	// reconnecting elsewhere: the HTTP shutdown waits for every open
	// handler, and a stream never finishes by itself.
	a.closeStreams()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.Config.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutCtx)
	// The job queue has its own budget: a slow HTTP shutdown must not leave
	// it an expired context, cutting running jobs short.
	jobsCtx, cancelJobs := context.WithTimeout(context.WithoutCancel(ctx), a.Config.ShutdownTimeout)
	defer cancelJobs()
	if stopErr := a.River.Stop(jobsCtx); stopErr != nil && err == nil {
		err = stopErr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// closeStreams ends every live stream: WatchRanking and the dashboards'
// Watch.
func (a *App) closeStreams() {
	if a.Boards != nil {
		a.Boards.Close()
	}
	if a.Dashboards != nil {
		a.Dashboards.Close()
	}
}

// Close releases connections. Call it after Serve returned.
func (a *App) Close() {
	if a.jwksCancel != nil {
		a.jwksCancel()
	}
	a.closeStreams()
	if a.Redis != nil {
		_ = a.Redis.Close()
	}
	if a.feedDB != nil {
		a.feedDB.Close()
	}
	if a.DB != nil {
		a.DB.Close()
	}
}

// LivenessService is the health service name that answers SERVING while the
// process answers at all, whatever PostgreSQL and Redis do: a liveness probe
// asks it, so that an outage of a dependency takes instances out of the load
// balancer (readiness, the empty service name) without restarting them all.
const LivenessService = "liveness"

// healthChecker reports the server as serving while PostgreSQL and Redis
// answer, so load balancers stop sending traffic to an instance that lost
// them.
type healthChecker struct {
	db    *postgres.DB
	redis redis.UniversalClient
}

func (h *healthChecker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service == LivenessService {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if h.db.Pool.Ping(ctx) != nil || h.redis.Ping(ctx).Err() != nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}
