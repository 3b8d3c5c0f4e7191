package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rallyehq/rallye/internal/load"
)

// runLoad dispatches the load commands: measurements that take minutes and
// print figures, never run by CI.
func runLoad(ctx context.Context, env *environment, args []string) error {
	if len(args) > 0 {
		switch args[0] {
		case "events":
			return runLoadEvents(ctx, env, args)
		case "leaderboard":
			return runLoadLeaderboard(ctx, env, args)
		case "stack-ceiling":
			return runStackCeiling(ctx, args)
		case "rewards":
			return runLoadRewards(ctx, env, args)
		}
	}
	return fmt.Errorf("usage: rallye load events|leaderboard|rewards [flags]")
}

// runLoadRewards measures the wallet read and concurrent redemptions.
func runLoadRewards(ctx context.Context, env *environment, args []string) error {
	fs := flag.NewFlagSet("load rewards", flag.ContinueOnError)
	cfg := load.RewardsConfig{App: env.cfg, Out: os.Stdout}
	fs.IntVar(&cfg.Users, "users", 2000, "reps with a wallet")
	fs.IntVar(&cfg.Entries, "entries", 100, "ledger entries of history per rep")
	fs.IntVar(&cfg.Reads, "reads", 20000, "wallet reads per mode (API, service, raw)")
	fs.IntVar(&cfg.Clients, "clients", 16, "concurrent readers")
	fs.IntVar(&cfg.Redemptions, "redemptions", 1000, "concurrent redemptions of one item")
	fs.IntVar(&cfg.Stock, "stock", 100, "the item's stock")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the fresh database")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if cfg.Users < 1 || cfg.Entries < 1 || cfg.Reads < 1 || cfg.Clients < 1 || cfg.Redemptions < 1 || cfg.Stock < 0 {
		return fmt.Errorf("users, entries, reads, clients and redemptions must be positive")
	}
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return load.RunRewards(ctx, cfg)
}

// runLoadEvents measures ingestion, roll-ups and dashboards.
func runLoadEvents(ctx context.Context, env *environment, args []string) error {
	fs := flag.NewFlagSet("load events", flag.ContinueOnError)
	cfg := load.Config{App: env.cfg, Out: os.Stdout}
	fs.IntVar(&cfg.Events, "events", 1_000_000, "events to ingest")
	fs.IntVar(&cfg.Users, "users", 500, "reps generating them")
	fs.IntVar(&cfg.Batch, "batch", 1000, "events per IngestEvents call")
	fs.IntVar(&cfg.Clients, "clients", 4, "concurrent ingesting clients")
	fs.IntVar(&cfg.Reads, "reads", 400, "level-1 dashboard reads measured at the end")
	fs.DurationVar(&cfg.ProbeInterval, "probe-interval", 100*time.Millisecond, "send a one-event probe, timed to a live board and a dashboard, this often")
	fs.StringVar(&cfg.Target, "target", "", "base URL of a running server sharing DATABASE_URL and RALLYE_JWT_SECRET (default: a server in-process on a fresh database, dropped afterwards)")
	fs.BoolVar(&cfg.Shard, "shard", true, "give each client its own contiguous part of the history; --shard=false makes clients take the next batch of one stream")
	fs.IntVar(&cfg.Rate, "rate", 0, "pace ingestion at this many events/s (0: as fast as the server takes them)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the fresh database")
	fs.BoolVar(&cfg.InProcess, "in-process", false, "run the server in this process (default: a child `rallye serve`, so that its CPU is measured apart)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run (client and in-process server; implies --in-process) to this file")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if cfg.Events < 1 || cfg.Users < 1 || cfg.Batch < 1 || cfg.Batch > 1000 || cfg.Clients < 1 || cfg.Clients > 500 || cfg.ProbeInterval < time.Millisecond {
		return fmt.Errorf("events and users must be positive, batch between 1 and 1000, clients between 1 and 500, probe-interval at least 1ms")
	}
	cfg.InProcess = cfg.InProcess || *cpuProfile != ""
	// The in-process server logs warnings only: the figures go to stdout.
	cfg.Log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return load.Run(ctx, cfg)
}
