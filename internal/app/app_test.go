package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/testutil"
)

// TestShutdownLetsInFlightRequestsFinish cancels the server while a request
// is being handled: the request completes, then Serve returns.
func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	cfg := config.Config{
		DatabaseURL: testutil.DatabaseURL(t), RedisURL: testutil.RedisURL(), RedisPrefix: testutil.NewRedisPrefix(),
		Addr: "127.0.0.1:0", ShutdownTimeout: 10 * time.Second, LogLevel: "info",
		JWTSecret: "0123456789abcdef0123456789abcdef", JWTIssuer: "rallye", JWTAudience: "rallye",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{SkipMigrate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	a.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "finished")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- result{err: err}
			return
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		got <- result{string(b), err}
	}()
	<-entered
	cancel() // SIGTERM
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	r := <-got
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("the server still accepts connections after shutdown")
	}
}
