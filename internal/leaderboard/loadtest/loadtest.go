// Package loadtest measures the leaderboards under load, end to end: a real
// server process, real PostgreSQL and Redis, a board of a million
// participants. `rallye load leaderboard` runs it; CI never does (it takes
// minutes), tests stay fast.
//
// It prints, in one run: score updates per second through the scoring path
// (Record, commit, Publish), "top 10 + around me + my rank" reads per second
// over the RPC at 64 concurrent clients with their latency percentiles, the
// fan-out delay of live streams, the server's resident memory as the board
// grows, and next to them the raw ceiling of the same Redis operations
// through a plain go-redis client and the ceiling of the HTTP and Connect
// stack alone (stack.go).
package loadtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/redisdb"
)

// Config is a load run.
type Config struct {
	// AdminDatabaseURL is a PostgreSQL URL whose role may create roles and
	// databases; the run uses a database of its own, owned by an ordinary
	// role (so that row-level security applies as in production).
	AdminDatabaseURL string
	// Database is the name of that database, dropped and created anew.
	Database string
	RedisURL string
	// Binary is the rallye executable started as the server.
	Binary string

	Participants   int
	Steps          int
	UpdateWorkers  int
	UpdateDuration time.Duration
	Batches        []int
	Readers        int
	Around         int
	ReadDuration   time.Duration
	Watchers       int
	Changes        int
	// Keep leaves the database in place after the run, for inspection.
	Keep bool

	Out io.Writer
	Log *slog.Logger
}

// run is the state of a load run.
type run struct {
	c        Config
	db       *postgres.DB
	rdb      redis.UniversalClient
	keys     redisdb.Keyspace
	svc      *leaderboard.Service
	tenant   org.Tenant
	admin    rallye.Principal
	users    []uuid.UUID
	readers  []uuid.UUID
	tokens   []string
	board    leaderboard.Board
	server   *exec.Cmd
	logFile  string
	url      string
	secret   string
	overtook atomic.Int64
	keySeq   atomic.Int64
	// created is set once the run has made its database (and may drop it).
	created bool
}

const (
	loadRole   = "rallye_load"
	loadPrefix = "rallye-load:" // followed by the database's name
)

// Run runs the load test and prints its figures to c.Out.
func Run(ctx context.Context, c Config) (err error) {
	// The Redis prefix follows the database, so that runs on different
	// databases leave each other alone.
	r := &run{c: c, keys: redisdb.Keyspace{Prefix: loadPrefix + c.Database + ":"}}
	defer r.close()
	p := r.printf
	p("Rallye leaderboard load test, %s, Go %s, %d CPUs (GOMAXPROCS %d), %s\n",
		time.Now().Format(time.RFC3339), runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), machine())
	if err := r.setup(ctx); err != nil {
		return err
	}
	p("PostgreSQL %s, Redis %s; server: `rallye serve` as a separate process (pid %d), scoring path in this process\n\n",
		r.pgVersion(ctx), r.redisVersion(ctx), r.server.Process.Pid)

	if err := r.grow(ctx); err != nil {
		return err
	}
	if err := r.updates(ctx); err != nil {
		return err
	}
	r.waitQuiet()
	if err := r.reads(ctx); err != nil {
		return err
	}
	if err := r.fanOut(ctx); err != nil {
		return err
	}
	if err := r.rawUpdates(ctx); err != nil {
		return err
	}
	p("\nServer RSS at the end: %s; Overtaken events emitted by the scoring path: %d\n", mib(r.rss()), r.overtook.Load())
	return nil
}

func (r *run) printf(format string, args ...any) { fmt.Fprintf(r.c.Out, format, args...) }

// setup creates the database, the company, the people, the board and starts
// the server.
func (r *run) setup(ctx context.Context) error {
	loadURL, err := r.createDatabase(ctx)
	if err != nil {
		return err
	}
	r.created = true
	if r.db, err = postgres.Open(ctx, loadURL, int32(r.c.UpdateWorkers+8)); err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, r.db.Pool, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	if r.rdb, err = redisdb.Open(ctx, redisdb.Options{URL: r.c.RedisURL}); err != nil {
		return err
	}
	deleteKeys(ctx, r.rdb, r.keys.Prefix)
	jobs, err := river.NewClient(riverpgxv5.New(r.db.Pool), &river.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	r.svc = leaderboard.New(leaderboard.Deps{DB: r.db, Redis: r.rdb, Keys: r.keys, Log: r.c.Log,
		Events: leaderboard.EventsFunc(func(context.Context, leaderboard.Overtaken) { r.overtook.Add(1) })})
	r.svc.SetJobs(jobs)

	orgs := org.NewService(r.db)
	var admin org.User
	r.tenant, admin, err = orgs.CreateTenant(ctx, org.NewTenant{Name: "Load", Slug: "load", TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Load admin", Email: "admin@load.test"}})
	if err != nil {
		return err
	}
	r.admin = rallye.Principal{TenantID: r.tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}

	start := time.Now()
	err = r.db.InTenant(ctx, r.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (tenant_id, id, display_name, email, locale, roles)
			SELECT $1, gen_random_uuid(), 'Player ' || n, 'p' || n || '@load.test', 'fr', '{rep}'
			FROM generate_series(1, $2) n`, r.tenant.ID, r.c.Participants)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id FROM users WHERE tenant_id = $1 AND id <> $2 ORDER BY email`, r.tenant.ID, admin.ID)
		if err != nil {
			return err
		}
		r.users, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return fmt.Errorf("create people: %w", err)
	}
	r.c.Log.Info("people created", "count", len(r.users), "took", time.Since(start).Round(time.Millisecond).String())
	mrand.Shuffle(len(r.users), func(i, j int) { r.users[i], r.users[j] = r.users[j], r.users[i] })

	challenge := uuid.New()
	err = r.db.InTenant(ctx, r.tenant.ID, func(tx pgx.Tx) error {
		return r.svc.Boards.CreateChallengeBoards(ctx, tx, r.tenant.ID, leaderboard.ChallengeBoards{
			ChallengeID: challenge, StartsAt: time.Now().Add(-time.Hour), EndsAt: time.Now().Add(30 * 24 * time.Hour)})
	})
	if err != nil {
		return err
	}
	if r.board, err = r.boardByID(ctx, leaderboard.ChallengeBoardID(challenge, leaderboard.KindIndividual)); err != nil {
		return err
	}

	// Readers are participants (spread over the first growth step) with a
	// token each.
	r.secret = randomHex(32)
	first := r.c.Participants / r.c.Steps
	for i := range r.c.Readers {
		u := r.users[i*first/r.c.Readers]
		r.readers = append(r.readers, u)
		tok, err := auth.MintToken([]byte(r.secret), "rallye", "rallye", auth.TokenRequest{
			TenantID: r.tenant.ID, UserID: u, Roles: []rallye.Role{rallye.RoleRep}, TTL: 2 * time.Hour, Now: time.Now()})
		if err != nil {
			return err
		}
		r.tokens = append(r.tokens, tok)
	}
	return r.startServer(ctx, loadURL)
}

func (r *run) boardByID(ctx context.Context, id uuid.UUID) (leaderboard.Board, error) {
	boards, err := r.svc.BoardsToRebuild(ctx, r.tenant.ID)
	if err != nil {
		return leaderboard.Board{}, err
	}
	for _, b := range boards {
		if b.ID == id {
			return b, nil
		}
	}
	return leaderboard.Board{}, fmt.Errorf("board %s not found", id)
}

// createDatabase (re)creates the load database owned by an ordinary role and
// returns its URL.
func (r *run) createDatabase(ctx context.Context) (string, error) {
	admin, err := url.Parse(r.c.AdminDatabaseURL)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	adminDB := *admin
	adminDB.Path = "/postgres"
	conn, err := pgx.Connect(ctx, adminDB.String())
	if err != nil {
		return "", fmt.Errorf("connect as administrator: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Dropping the database of a run in progress would break it halfway.
	var busy int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, r.c.Database).Scan(&busy); err != nil {
		return "", fmt.Errorf("check load database: %w", err)
	}
	if busy > 0 {
		return "", fmt.Errorf("database %s has %d connections (another load run?): wait for it, or pass --database", r.c.Database, busy)
	}
	db := pgx.Identifier{r.c.Database}.Sanitize()
	for _, q := range []string{
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '` + loadRole + `') THEN
			CREATE ROLE ` + loadRole + ` LOGIN PASSWORD '` + loadRole + `'; END IF; END $$`,
		`DROP DATABASE IF EXISTS ` + db + ` WITH (FORCE)`,
		`CREATE DATABASE ` + db + ` OWNER ` + loadRole,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return "", fmt.Errorf("prepare load database: %w", err)
		}
	}
	u := *admin
	u.User = url.UserPassword(loadRole, loadRole)
	u.Path = "/" + r.c.Database
	return u.String(), nil
}

// freeAddr is a loopback address with a port free at the time of the call,
// for a process this run starts.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer runs `rallye serve` on a free port against the load database.
func (r *run) startServer(ctx context.Context, dbURL string) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	logFile, err := os.CreateTemp("", "rallye-load-server-*.log")
	if err != nil {
		return err
	}
	r.logFile = logFile.Name()
	r.server = exec.CommandContext(ctx, r.c.Binary, "serve")
	r.server.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL, "REDIS_URL="+r.c.RedisURL, "RALLYE_REDIS_PREFIX="+r.keys.Prefix,
		"RALLYE_REDIS_ADDRS=", "RALLYE_ADDR="+addr, "RALLYE_JWT_SECRET="+r.secret, "RALLYE_JWKS_URL=",
		"RALLYE_LOG_LEVEL=warn", "RALLYE_DATABASE_MAX_CONNS=20", "RALLYE_SHUTDOWN_TIMEOUT=5s")
	r.server.Stdout, r.server.Stderr = logFile, logFile
	r.server.Cancel = func() error { return r.server.Process.Signal(syscall.SIGTERM) }
	if err := r.server.Start(); err != nil {
		return fmt.Errorf("start server %s: %w", r.c.Binary, err)
	}
	r.url = "http://" + addr
	r.c.Log.Info("server starting", "addr", addr, "pid", r.server.Process.Pid, "log", logFile.Name())
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(r.url + "/metrics")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not start; see %s", logFile.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *run) close() {
	ctx := context.Background()
	if r.server != nil && r.server.Process != nil {
		_ = r.server.Process.Signal(syscall.SIGTERM)
		_ = r.server.Wait()
	}
	if r.svc != nil {
		r.svc.Close()
	}
	if r.rdb != nil {
		deleteKeys(ctx, r.rdb, r.keys.Prefix)
		_ = r.rdb.Close()
	}
	if r.db != nil {
		r.db.Close()
	}
	if !r.c.Keep && r.logFile != "" {
		_ = os.Remove(r.logFile)
	}
	if !r.c.Keep && r.created {
		if err := r.dropDatabase(ctx); err != nil {
			r.c.Log.Warn("could not drop the load database", "error", err)
		}
	}
}

func (r *run) dropDatabase(ctx context.Context) error {
	admin, err := url.Parse(r.c.AdminDatabaseURL)
	if err != nil {
		return err
	}
	admin.Path = "/postgres"
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{r.c.Database}.Sanitize()+` WITH (FORCE)`)
	return err
}

// grow enrolls the participants in steps, rebuilding the live board after
// each, and samples the server's memory and a short burst of reads.
func (r *run) grow(ctx context.Context) error {
	p := r.printf
	p("Board growth: %d participants enrolled in %d steps; the live board is rebuilt from PostgreSQL after each step.\n", r.c.Participants, r.c.Steps)
	p("The server's RSS stays flat: the board lives in Redis.\n")
	p("  %12s  %14s  %12s  %18s  %14s\n", "participants", "rebuild", "server RSS", "Redis used_memory", "reads/s (3 s)")
	p("  %12d  %14s  %12s  %18s  %14s\n", 0, "-", mib(r.rss()), mib(r.redisMemory(ctx)), "-")
	step := r.c.Participants / r.c.Steps
	for s := 1; s <= r.c.Steps; s++ {
		from, to := (s-1)*step, s*step
		if s == r.c.Steps {
			to = len(r.users)
		}
		for i := from; i < to; i += 10_000 {
			var part []leaderboard.Participant
			for _, u := range r.users[i:min(i+10_000, to)] {
				part = append(part, leaderboard.Participant{UserID: u})
			}
			if err := r.db.InTenant(ctx, r.tenant.ID, func(tx pgx.Tx) error {
				return r.svc.Boards.Enroll(ctx, tx, r.tenant.ID, r.board.ChallengeID, part)
			}); err != nil {
				return fmt.Errorf("enroll: %w", err)
			}
		}
		took, err := r.rebuild(ctx)
		if err != nil {
			return err
		}
		res := r.readLoad(ctx, 3*time.Second)
		p("  %12d  %14s  %12s  %18s  %14.0f\n", to, took.Round(10*time.Millisecond), mib(r.rss()), mib(r.redisMemory(ctx)), res.rate())
	}
	p("\n")
	return nil
}

// rebuild rebuilds the board, retrying while the server's repair job holds
// the lock.
func (r *run) rebuild(ctx context.Context) (time.Duration, error) {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		_, err := r.svc.Rebuild(ctx, r.tenant.ID, r.board.ID)
		if err == nil {
			return time.Since(start), nil
		}
		if attempt > 600 {
			return 0, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// updates measures Record + commit + Publish.
func (r *run) updates(ctx context.Context) error {
	p := r.printf
	p("Score updates through the scoring path: Record (ledger row, challenge board and the 4 period boards,\n")
	p("repair-job mark) in a transaction, commit, then Publish to Redis; %d workers, %s per batch size.\n", r.c.UpdateWorkers, r.c.UpdateDuration)
	p("  %6s  %12s  %10s  %10s  %10s  %s\n", "batch", "updates/s", "commits/s", "p50", "p99", "CPU (cores): server, Redis, this process (scoring path); rest of machine (PostgreSQL...)")
	for _, batch := range r.c.Batches {
		var mu sync.Mutex
		var lat []time.Duration
		var entries, failures atomic.Int64
		cpu := r.startCPU(ctx)
		deadline := time.Now().Add(r.c.UpdateDuration)
		var wg sync.WaitGroup
		for range r.c.UpdateWorkers {
			wg.Go(func() {
				var mine []time.Duration
				rng := mrand.New(mrand.NewPCG(mrand.Uint64(), 0))
				for time.Now().Before(deadline) && ctx.Err() == nil {
					es := make([]leaderboard.Entry, batch)
					for i := range es {
						es[i] = leaderboard.Entry{Key: "u" + strconv.FormatInt(r.keySeq.Add(1), 36), UserID: r.users[rng.IntN(len(r.users))],
							ChallengeID: r.board.ChallengeID, Points: int64(1 + rng.IntN(100)), At: time.Now(), Reason: "load"}
					}
					start := time.Now()
					if err := r.score(ctx, es); err != nil {
						failures.Add(1)
						r.c.Log.Warn("update failed", "error", err)
						continue
					}
					mine = append(mine, time.Since(start))
					entries.Add(int64(batch))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		secs := r.c.UpdateDuration.Seconds()
		p("  %6d  %12.0f  %10.0f  %10s  %10s  %s", batch, float64(entries.Load())/secs, float64(len(lat))/secs, pct(lat, 50), pct(lat, 99), cpu.stop())
		if f := failures.Load(); f > 0 {
			p("  (%d failed)", f)
		}
		p("\n")
	}
	p("\n")
	return nil
}

// score records and publishes entries.
func (r *run) score(ctx context.Context, es []leaderboard.Entry) error {
	var rec leaderboard.Receipt
	err := r.db.InTenant(ctx, r.tenant.ID, func(tx pgx.Tx) error {
		var err error
		rec, err = r.svc.Scores.Record(ctx, tx, r.tenant.ID, es)
		return err
	})
	if err != nil {
		return err
	}
	r.svc.Scores.Publish(ctx, rec)
	return nil
}

type loadResult struct {
	n      int
	errs   int
	took   time.Duration
	lat    []time.Duration
	sample error
}

func (l loadResult) rate() float64 { return float64(l.n) / l.took.Seconds() }

func (l loadResult) add(m loadResult) loadResult {
	out := loadResult{n: l.n + m.n, errs: l.errs + m.errs, took: l.took + m.took, lat: append(l.lat, m.lat...), sample: l.sample}
	if m.sample != nil {
		out.sample = m.sample
	}
	return out
}

// readLoad runs one client per reader calling GetRanking (top 10, around
// me, my rank) over the Connect protocol for d.
func (r *run) readLoad(ctx context.Context, d time.Duration) loadResult {
	return r.readLoadWith(ctx, d, protoConnect)
}

// Client protocols of the read measurement.
const (
	protoConnect = "connect" // Connect protocol, binary protobuf, HTTP/1.1: one connection per client
	protoGRPC    = "grpc"    // gRPC over cleartext HTTP/2: streams multiplexed on shared connections
)

func (r *run) readLoadWith(ctx context.Context, d time.Duration, protocol string) loadResult {
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024}}
	var opts []connect.ClientOption
	if protocol == protoGRPC {
		var h2 http.Protocols
		h2.SetUnencryptedHTTP2(true)
		httpClient = &http.Client{Transport: &http.Transport{Protocols: &h2}}
		opts = append(opts, connect.WithGRPC())
	}
	return r.parallel(ctx, len(r.tokens), d, func(i int) func() error {
		client := rallyev1connect.NewLeaderboardServiceClient(httpClient, r.url, append(opts, connect.WithInterceptors(bearer(r.tokens[i])))...)
		req := &rallyev1.GetRankingRequest{BoardId: r.board.ID.String(), PageSize: 10, Around: int32(r.c.Around)}
		return func() error {
			res, err := client.GetRanking(ctx, req)
			if err == nil && (len(res.Ranking.Entries) != 10 || res.Ranking.Placement == nil) {
				err = fmt.Errorf("incomplete ranking: %d entries, placement %v", len(res.Ranking.Entries), res.Ranking.Placement)
			}
			return err
		}
	})
}

// parallel runs n workers calling their operation for d and collects
// latencies.
func (r *run) parallel(ctx context.Context, n int, d time.Duration, op func(i int) func() error) loadResult {
	var mu sync.Mutex
	var res loadResult
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range n {
		call := op(i)
		wg.Go(func() {
			var lat []time.Duration
			var errs int
			var sample error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := call(); err != nil {
					errs++
					sample = err
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			if sample != nil {
				res.sample = sample
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.took = time.Since(start)
	res.n = len(res.lat)
	return res
}

// reads measures the RPC and, in the same run, the raw ceiling of the same
// Redis operation through a plain go-redis client.
func (r *run) reads(ctx context.Context) error {
	p := r.printf
	const rounds = 4
	p("Reads of \"top 10 + around me (%d above and below) + my rank and gap\": %d concurrent clients, %s each,\n", r.c.Around, len(r.tokens), r.c.ReadDuration)
	p("interleaved in %d rounds so that the RPC and its raw ceiling see the same machine (shared with other work).\n", rounds)
	p("  %-58s  %9s  %8s  %8s  %s\n", "", "reads/s", "p50", "p99", "CPU (cores): server, Redis, load generator; rest of machine (stack ceiling's process included)")
	recorded, err := r.recordRanking(ctx)
	if err != nil {
		return fmt.Errorf("record a ranking: %w", err)
	}
	stack, err := r.startStackCeiling(ctx, recorded)
	if err != nil {
		return err
	}
	defer stack.stop()
	type phase struct {
		name    string
		ceiling bool
		run     func(time.Duration) loadResult
		res     loadResult
		cpu     cpuUse
	}
	phases := []*phase{
		{name: "RPC GetRanking, Connect protocol (binary, HTTP/1.1)", run: func(d time.Duration) loadResult { return r.readLoadWith(ctx, d, protoConnect) }},
		{name: "RPC GetRanking, gRPC (HTTP/2 cleartext)", run: func(d time.Duration) loadResult { return r.readLoadWith(ctx, d, protoGRPC) }},
		{name: "RPC GetRanking, Connect protocol, lean client (as wrk)", run: func(d time.Duration) loadResult { return r.leanReads(ctx, d, r.url) }},
		{name: "stack ceiling: Connect handler replaying one ranking, lean", ceiling: true, run: func(d time.Duration) loadResult { return r.leanReads(ctx, d, stack.url) }},
		{name: "raw ceiling: the same Redis script, plain go-redis client", ceiling: true, run: func(d time.Duration) loadResult { return r.rawReads(ctx, d) }},
	}
	for range rounds {
		for _, ph := range phases {
			cpu := r.startCPU(ctx)
			res := ph.run(r.c.ReadDuration / rounds)
			ph.cpu = ph.cpu.add(cpu.stop())
			ph.res = ph.res.add(res)
		}
	}
	var best float64
	for _, ph := range phases {
		if !ph.ceiling {
			best = max(best, ph.res.rate())
		}
		p("  %-58s  %9.0f  %8s  %8s  %s", ph.name, ph.res.rate(), pct(ph.res.lat, 50), pct(ph.res.lat, 99), ph.cpu)
		if ph.res.errs > 0 {
			p("  (%d errors, e.g. %v)", ph.res.errs, ph.res.sample)
		}
		p("\n")
	}
	p("  The best RPC figure is %.0f %% of the raw ceiling.\n\n", 100*best/phases[len(phases)-1].res.rate())
	return nil
}

func (r *run) rawReads(ctx context.Context, d time.Duration) loadResult {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr(r.c.RedisURL), PoolSize: len(r.readers)})
	defer rdb.Close()
	call := r.svc.RawReadCall(r.board, r.readers[0], 10, r.c.Around)
	_ = call.Script.Load(ctx, rdb).Err()
	return r.parallel(ctx, len(r.readers), d, func(i int) func() error {
		c := r.svc.RawReadCall(r.board, r.readers[i], 10, r.c.Around)
		return func() error { return c.Script.EvalSha(ctx, rdb, c.Keys, c.Args...).Err() }
	})
}

// rawUpdates is the ceiling of Publish's Redis work, batch size by batch
// size as the scoring path was measured: for each board an entry touches,
// one script call writing the batch's members, the calls in one pipeline,
// through a plain client. It runs last: its writes carry versions PostgreSQL
// never issued.
func (r *run) rawUpdates(ctx context.Context) error {
	all, err := r.svc.BoardsToRebuild(ctx, r.tenant.ID)
	if err != nil {
		return err
	}
	var boards []leaderboard.Board
	for _, b := range all {
		if b.ChallengeID == r.board.ChallengeID || b.ChallengeID == uuid.Nil {
			boards = append(boards, b)
		}
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr(r.c.RedisURL), PoolSize: r.c.UpdateWorkers})
	defer rdb.Close()
	var version atomic.Int64
	version.Store(1 << 40)
	if err := r.svc.RawScoreCall(r.board, nil, nil, 0, time.Now()).Script.Load(ctx, rdb).Err(); err != nil {
		return err
	}
	p := r.printf
	p("Raw ceiling of the scoring path's Redis writes: the same script calls as Publish (one per board an entry\n")
	p("touches: %d boards), one pipeline per batch, plain go-redis client, %d workers, %s per batch size.\n", len(boards), r.c.UpdateWorkers, r.c.UpdateDuration)
	p("  %6s  %12s  %10s  %10s  %s\n", "batch", "updates/s", "p50", "p99", "CPU (cores): server, Redis, this process; rest of machine")
	for _, batch := range r.c.Batches {
		cpu := r.startCPU(ctx)
		res := r.parallel(ctx, r.c.UpdateWorkers, r.c.UpdateDuration, func(int) func() error {
			rng := mrand.New(mrand.NewPCG(mrand.Uint64(), 1))
			members := make([]uuid.UUID, batch)
			points := make([]int64, batch)
			return func() error {
				for i := range members {
					members[i], points[i] = r.users[rng.IntN(len(r.users))], int64(rng.IntN(5000))
				}
				pipe := rdb.Pipeline()
				for _, b := range boards {
					c := r.svc.RawScoreCall(b, members, points, version.Add(int64(batch))-int64(batch), time.Now())
					c.Script.EvalSha(ctx, pipe, c.Keys, c.Args...)
				}
				_, err := pipe.Exec(ctx)
				return err
			}
		})
		p("  %6d  %12.0f  %10s  %10s  %s", batch, float64(batch)*res.rate(), pct(res.lat, 50), pct(res.lat, 99), cpu.stop())
		if res.errs > 0 {
			p("  (%d errors, e.g. %v)", res.errs, res.sample)
		}
		p("\n")
	}
	return nil
}

// fanOut opens watchers on the board through the server, changes the top
// of the board from this process (another instance, as far as the server
// knows) and measures the delay until each stream shows the change.
func (r *run) fanOut(ctx context.Context) error {
	p := r.printf
	marker := r.readers[len(r.readers)-1]
	base, err := r.svc.Ranking(ctx, r.admin, leaderboard.RankingRequest{BoardID: r.board.ID, ParticipantID: marker, PageSize: 1})
	if err != nil {
		return err
	}
	top := base.Entries[0].Points
	const step = 1_000_000
	basePoints := base.Me.Points
	sent := make([]time.Time, r.c.Changes+1)
	var sentMu sync.RWMutex
	var mu sync.Mutex
	var delays []time.Duration
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{}, r.c.Watchers)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range r.c.Watchers {
		tok := r.tokens[i%len(r.tokens)]
		wg.Go(func() {
			httpClient := &http.Client{Transport: &http.Transport{}}
			client := rallyev1connect.NewLeaderboardServiceClient(httpClient, r.url, connect.WithInterceptors(bearer(tok)))
			stream, err := client.WatchRanking(sctx, &rallyev1.WatchRankingRequest{BoardId: r.board.ID.String(), PageSize: 10})
			if err != nil {
				failed.Add(1)
				ready <- struct{}{}
				return
			}
			defer stream.Close()
			first := true
			var seen int64
			for stream.Receive() {
				now := time.Now()
				if first {
					first = false
					ready <- struct{}{}
					continue
				}
				e := stream.Msg().Ranking.GetEntries()
				if len(e) == 0 || e[0].ParticipantId != marker.String() {
					continue
				}
				k := (e[0].Points - basePoints) / step
				if k <= seen || int(k) > r.c.Changes {
					continue
				}
				seen = k
				sentMu.RLock()
				at := sent[k]
				sentMu.RUnlock()
				mu.Lock()
				delays = append(delays, now.Sub(at))
				mu.Unlock()
			}
			if sctx.Err() == nil {
				failed.Add(1)
			}
		})
	}
	for range r.c.Watchers {
		<-ready
	}
	// The first change must not fall within the coalescing interval that
	// follows each stream's initial message.
	time.Sleep(leaderboard.WatchInterval + 50*time.Millisecond)
	if top > basePoints+step {
		return fmt.Errorf("the top of the board has %d points: the marker cannot lead", top)
	}
	for k := 1; k <= r.c.Changes; k++ {
		var rec leaderboard.Receipt
		err := r.db.InTenant(ctx, r.tenant.ID, func(tx pgx.Tx) error {
			var err error
			rec, err = r.svc.Scores.Record(ctx, tx, r.tenant.ID, []leaderboard.Entry{{Key: fmt.Sprintf("marker-%d", k),
				UserID: marker, ChallengeID: r.board.ChallengeID, Points: step, At: time.Now(), Reason: "load"}})
			return err
		})
		if err != nil {
			return err
		}
		sentMu.Lock()
		sent[k] = time.Now()
		sentMu.Unlock()
		r.svc.Scores.Publish(ctx, rec)
		time.Sleep(500 * time.Millisecond) // pacing: one change per half second, beyond the coalescing interval
	}
	time.Sleep(time.Second) // let the last change arrive
	cancel()
	wg.Wait()
	p("Live streams: %d WatchRanking streams (Connect, top 10) on the server; %d changes of the top, 500 ms apart,\n", r.c.Watchers, r.c.Changes)
	p("recorded and published by this process, reach the server through Redis pub/sub (SPUBLISH).\n")
	p("  fan-out delay (commit+Publish to message received by the client): p50 %s, p99 %s, max %s; %d of %d deliveries",
		pct(delays, 50), pct(delays, 99), pct(delays, 100), len(delays), r.c.Watchers*r.c.Changes)
	if f := failed.Load(); f > 0 {
		p(", %d streams failed", f)
	}
	p("\n  server RSS with the streams open: %s\n\n", mib(r.rss()))
	return nil
}

// waitQuiet lets the repair jobs that follow the update burst finish (the
// machine falls idle) before measuring reads, up to a minute.
func (r *run) waitQuiet() {
	start := time.Now()
	for time.Since(start) < time.Minute {
		before := machineBusy()
		time.Sleep(time.Second)
		if machineBusy()-before < 300*time.Millisecond {
			break
		}
	}
	r.c.Log.Info("waited for the machine to settle", "took", time.Since(start).Round(time.Second).String())
}

// cpuMeter measures the CPU time the server, Redis and this process use
// over a measurement, from /proc.
type cpuMeter struct {
	r       *run
	pids    []int
	start   []time.Duration
	machine time.Duration
	at      time.Time
}

func (r *run) startCPU(ctx context.Context) cpuMeter {
	redisPid := int(infoField(r.rdb.Info(ctx, "server").Val(), "process_id"))
	m := cpuMeter{r: r, pids: []int{r.server.Process.Pid, redisPid, os.Getpid()}, at: time.Now()}
	for _, pid := range m.pids {
		m.start = append(m.start, cpuTime(pid))
	}
	m.machine = machineBusy()
	return m
}

func (m cpuMeter) stop() cpuUse {
	u := cpuUse{wall: time.Since(m.at), machine: machineBusy() - m.machine}
	for i, pid := range m.pids {
		u.procs = append(u.procs, cpuTime(pid)-m.start[i])
	}
	return u
}

// cpuUse is CPU time used by the server, Redis and this process, and by the
// whole machine, over wall time.
type cpuUse struct {
	wall    time.Duration
	procs   []time.Duration
	machine time.Duration
}

func (u cpuUse) add(v cpuUse) cpuUse {
	out := cpuUse{wall: u.wall + v.wall, machine: u.machine + v.machine}
	for i := range v.procs {
		var mine time.Duration
		if i < len(u.procs) {
			mine = u.procs[i]
		}
		out.procs = append(out.procs, mine+v.procs[i])
	}
	return out
}

func (u cpuUse) String() string {
	var parts []string
	rest := u.machine
	for _, d := range u.procs {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()/u.wall.Seconds()))
		rest -= d
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; %.2f", max(0, rest.Seconds())/u.wall.Seconds())
}

// machineBusy is the CPU time all processors spent not idle, from /proc/stat.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var total int64
	for i, f := range strings.Fields(line)[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			total += n
		}
	}
	return time.Duration(total) * 10 * time.Millisecond
}

// cpuTime is a process's user+system CPU time (clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// Small helpers.

type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func pct(d []time.Duration, p float64) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	v := s[max(0, min(i, len(s)-1))]
	switch {
	case v < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(v)/float64(time.Microsecond))
	case v < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(v)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.1f ms", float64(v)/float64(time.Millisecond))
}

func mib(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// rss is the server's resident set size, from /proc.
func (r *run) rss() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", r.server.Process.Pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

func (r *run) redisMemory(ctx context.Context) int64 {
	return infoField(r.rdb.Info(ctx, "memory").Val(), "used_memory")
}

func (r *run) redisVersion(ctx context.Context) string {
	for _, line := range strings.Split(r.rdb.Info(ctx, "server").Val(), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

func (r *run) pgVersion(ctx context.Context) string {
	var v string
	_ = r.db.Pool.QueryRow(ctx, `SHOW server_version`).Scan(&v)
	return v
}

func infoField(info, name string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func machine() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func redisAddr(u string) string {
	opts, err := redis.ParseURL(u)
	if err != nil {
		return "127.0.0.1:6379"
	}
	return opts.Addr
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func deleteKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			rdb.Unlink(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Unlink(ctx, batch...)
	}
}
