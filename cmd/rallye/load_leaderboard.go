package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rallyehq/rallye/internal/leaderboard/loadtest"
)

// runLoadLeaderboard measures the leaderboards at a million participants.
func runLoadLeaderboard(ctx context.Context, env *environment, args []string) error {
	fs := flag.NewFlagSet("load leaderboard", flag.ContinueOnError)
	c := loadtest.Config{
		AdminDatabaseURL: env.cfg.DatabaseURL, RedisURL: env.cfg.RedisURL, Out: os.Stdout, Log: env.log,
	}
	fs.StringVar(&c.Database, "database", "rallye_load", "database created (dropped first) for the run, owned by the role rallye_load")
	fs.IntVar(&c.Participants, "participants", 1_000_000, "participants of the board")
	fs.IntVar(&c.Steps, "steps", 4, "growth steps (server memory is sampled after each)")
	fs.IntVar(&c.UpdateWorkers, "update-workers", 16, "concurrent scoring transactions")
	fs.DurationVar(&c.UpdateDuration, "update-duration", 20*time.Second, "duration of each score-update measurement")
	batches := fs.String("batches", "1,50", "entries per Record call, one measurement each")
	fs.IntVar(&c.Readers, "clients", 64, "concurrent reading clients")
	fs.IntVar(&c.Around, "around", 5, "neighbours above and below in each read")
	fs.DurationVar(&c.ReadDuration, "read-duration", 20*time.Second, "duration of the read measurement (and of its raw ceiling)")
	fs.IntVar(&c.Watchers, "watchers", 100, "WatchRanking streams opened for the fan-out measurement")
	fs.IntVar(&c.Changes, "changes", 40, "changes pushed to the streams")
	fs.BoolVar(&c.Keep, "keep", false, "keep the load database after the run")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	for _, b := range strings.Split(*batches, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(b), &n); err != nil || n < 1 || n > 1000 {
			return fmt.Errorf("--batches: %q is not a batch size (1 to 1000)", b)
		}
		c.Batches = append(c.Batches, n)
	}
	if c.Participants < c.Steps || c.Steps < 1 || c.Readers < 1 || c.Readers > c.Participants/c.Steps {
		return fmt.Errorf("need at least one participant per step and per client")
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	c.Binary = bin
	return loadtest.Run(ctx, c)
}

// runStackCeiling is started by `load leaderboard`: the HTTP and Connect stack
// answering a recorded ranking, the ceiling of the RPC on this machine.
func runStackCeiling(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load stack-ceiling", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	file := fs.String("response", "", "binary GetRankingResponse to answer with")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	return loadtest.ServeStackCeiling(ctx, *addr, *file)
}
