package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	rallyev1 "github.com/rallyehq/rallye/gen/rallye/v1"
	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// syncBuffer is a log destination the server and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

// served is a server started by the test, which stops it itself.
type served struct {
	app    *app.App
	url    string
	log    *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func serve(t *testing.T, shutdown time.Duration) *served {
	t.Helper()
	cfg := config.Config{
		DatabaseURL: testutil.DatabaseURL(t), RedisURL: testutil.RedisURL(), RedisPrefix: testutil.NewRedisPrefix(),
		DatabaseMaxConns: 10, Addr: "127.0.0.1:0", ShutdownTimeout: shutdown, LogLevel: "info",
		JWTSecret: testserver.Secret, JWTIssuer: "rallye", JWTAudience: "rallye", CredentialCacheTTL: 10 * time.Second,
	}
	s := &served{log: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(s.log, nil)), app.Options{SkipMigrate: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.app = a
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		cancel()
		a.Close()
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	go func() { s.done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
		testutil.DeleteKeys(context.Background(), a.Redis, cfg.RedisPrefix)
		a.Close()
	})
	return s
}

// TestShutdownEndsLiveStreams stops a server while a WatchRanking stream
// (Connect) and a dashboard Watch stream (gRPC) are open: both streams end,
// and Serve returns without error long before its shutdown timeout, which
// the log states as a duration.
func TestShutdownEndsLiveStreams(t *testing.T) {
	const timeout = 40 * time.Second
	s := serve(t, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	defer cancel()
	company := testserver.NewCompany(t, s.app.Org)
	_, repToken := testserver.NewPerson(t, s.app.Org, company, []rallye.Role{rallye.RoleRep})
	protocols := testserver.Protocols()
	connectProto, grpcProto := protocols[0], protocols[1]

	periods, err := s.app.Boards.CurrentPeriods(ctx, company.Operator)
	if err != nil || len(periods) == 0 {
		t.Fatalf("current periods: %v %v", periods, err)
	}
	boards := rallyev1connect.NewLeaderboardServiceClient(connectProto.Client, s.url,
		append(connectProto.Opts, connect.WithInterceptors(bearer(repToken)))...)
	ranking, err := boards.WatchRanking(ctx, &rallyev1.WatchRankingRequest{BoardId: periods[0].ID.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer ranking.Close()
	dashboards := rallyev1connect.NewDashboardServiceClient(grpcProto.Client, s.url,
		append(grpcProto.Opts, connect.WithInterceptors(bearer(company.AdminToken)))...)
	dashboard, err := dashboards.Watch(ctx, &rallyev1.WatchRequest{Level: 1, Period: rallyev1.PeriodKind_PERIOD_KIND_MONTH})
	if err != nil {
		t.Fatal(err)
	}
	defer dashboard.Close()
	if !ranking.Receive() {
		t.Fatalf("ranking stream: no first message: %v", ranking.Err())
	}
	if !dashboard.Receive() {
		t.Fatalf("dashboard stream: no first message: %v", dashboard.Err())
	}
	ended := make(chan string, 2)
	go func() {
		for ranking.Receive() {
		}
		ended <- "ranking"
	}()
	go func() {
		for dashboard.Receive() {
		}
		ended <- "dashboard"
	}()

	s.cancel() // SIGTERM
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(timeout / 2):
		t.Fatalf("Serve still waits for open streams after %v of its %v shutdown timeout", timeout/2, timeout)
	}
	s.done <- nil // for the cleanup
	for range 2 {
		select {
		case <-ended:
		case <-time.After(timeout / 2):
			t.Fatal("a stream did not end")
		}
	}
	for _, r := range s.log.records(t) {
		if r["msg"] == "shutting down" {
			if r["timeout"] != timeout.String() {
				t.Fatalf("the shutdown log says timeout=%v, want %q", r["timeout"], timeout.String())
			}
			return
		}
	}
	t.Fatal("no shutdown log")
}

// TestMetricsListTheKPICompilerCaches: the server's /metrics exposes the
// KPI compiler's cache counters.
func TestMetricsListTheKPICompilerCaches(t *testing.T) {
	s := serve(t, 10*time.Second)
	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{`rallye_kpi_compile_cache_lookups_total{cache="plan",result="hit"}`,
		`rallye_kpi_compile_cache_evictions_total{cache="measure"}`, `rallye_kpi_compile_cache_entries{cache="plan"}`} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func bearer(token string) connect.Interceptor {
	return &bearerInterceptor{token: token}
}

type bearerInterceptor struct{ token string }

func (b *bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+b.token)
		return next(ctx, req)
	}
}

func (b *bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+b.token)
		return conn
	}
}

func (b *bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
