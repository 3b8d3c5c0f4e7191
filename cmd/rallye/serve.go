package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/console"
	"github.com/rallyehq/rallye/internal/demo"
	"github.com/rallyehq/rallye/internal/telemetry"
)

func runServe(ctx context.Context, env *environment, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	withDemo := fs.Bool("demo", false, "seed the demo company at start and print its tokens")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := env.cfg.RequireVerifier(); err != nil {
		return err
	}
	tracing, err := telemetry.Setup(ctx, env.log, telemetry.Options{TrustRemote: env.cfg.TraceTrustRemote})
	if err != nil {
		return err
	}
	defer func() {
		// The last spans leave after the server stopped.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			env.log.Warn("flushing traces failed", "error", err)
		}
	}()
	a, err := app.New(ctx, env.cfg, env.log, app.Options{Tracing: tracing, SkipMigrate: !env.cfg.MigrateOnStart})
	if err != nil {
		return err
	}
	defer a.Close()
	if *withDemo {
		res, err := demo.Seed(ctx, a.Org)
		if err != nil {
			return err
		}
		// The server's feed and jobs compute the KPIs once it serves.
		if err := demo.SeedKPIs(ctx, res, demo.Activity{KPI: a.KPI, Events: a.Events, Now: time.Now()}); err != nil {
			return err
		}
		c, err := demo.SeedChallenge(ctx, a.Challenges, a.Events, res)
		if err != nil {
			return err
		}
		if err := demo.SeedRewards(ctx, a.Rewards, a.Challenges, a.Events, res, time.Now()); err != nil {
			return err
		}
		if err := printDemo(env, res, c); err != nil {
			return err
		}
		people, err := consolePeople(env, res)
		if err != nil {
			return err
		}
		a.Console.EnableDemo(people)
		fmt.Printf("Console (sign in as any of them): http://%s%s\n", env.cfg.Addr, console.Path)
		go demo.Stream(ctx, a.Events, res, 5*time.Second)
	}
	if env.cfg.DebugAddr != "" {
		go serveProfiler(env)
	}
	ln, err := net.Listen("tcp", env.cfg.Addr)
	if err != nil {
		return fmt.Errorf("RALLYE_ADDR %s: %w", env.cfg.Addr, err)
	}
	return a.Serve(ctx, ln)
}

// consolePeople are the demo people offered by the console's sign-in page,
// each with a token valid a day.
func consolePeople(env *environment, res demo.Result) ([]console.DemoPerson, error) {
	out := make([]console.DemoPerson, 0, len(res.People))
	for _, u := range res.People {
		token, err := mint(env, u, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		p := console.DemoPerson{Name: u.DisplayName, Email: u.Email, Token: token}
		for _, r := range u.Roles {
			p.Roles = append(p.Roles, string(r))
		}
		out = append(out, p)
	}
	return out, nil
}

// serveProfiler serves net/http/pprof on RALLYE_DEBUG_ADDR, apart from the API.
func serveProfiler(env *environment) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: env.cfg.DebugAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	env.log.Info("profiler serving", "addr", env.cfg.DebugAddr)
	if err := srv.ListenAndServe(); err != nil {
		env.log.Error("profiler stopped", "error", err)
	}
}
