// Command rallye is the Rallye server and its operator tools, in one binary:
//
//	rallye serve [--demo]     serve the API (migrates first)
//	rallye migrate            apply database migrations
//	rallye tenant create ...  create a company and print its first admin's credentials
//	rallye tenant list        list companies
//	rallye token ...          mint a development token for a person
//	rallye demo               seed the demo company and print tokens
//	rallye leaderboard rebuild rebuild live rankings from PostgreSQL
//	rallye load leaderboard   measure the leaderboards under load
//	rallye kpi install-model  install the seed article's KPI model for a company
//	rallye load events        measure ingestion and dashboards under load
//	rallye feed dead-letters  list the change feed's dead letters (feed retry|discard ID)
//
// Settings come from environment variables (see the README).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	_ "time/tzdata" // periods are cut in company time zones, even in a scratch image

	"github.com/rallyehq/rallye/internal/config"
)

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, env *environment, args []string) error
}

var commands = []command{
	{"serve", "serve the API (Connect, gRPC, gRPC-Web, health, reflection, /metrics)", runServe},
	{"migrate", "create the database if needed and apply migrations", runMigrate},
	{"tenant", "create or list companies: tenant create|list", runTenant},
	{"token", "mint a development token: token --tenant SLUG --user EMAIL", runToken},
	{"demo", "seed the demo company and print a token per person", runDemo},
	{"leaderboard", "rebuild live rankings from PostgreSQL: leaderboard rebuild [--tenant SLUG] [--board ID]", runLeaderboard},
	{"kpi", "install the ready-to-use KPI model: kpi install-model --tenant SLUG", runKPI},
	{"load", "measure under load (minutes, not for CI): load events|leaderboard [flags]", runLoad},
	{"feed", "the change feed's dead letters: feed dead-letters [--tenant SLUG] [--all] | feed retry ID | feed discard ID", runFeed},
}

// environment is what every command starts from.
type environment struct {
	cfg config.Config
	log *slog.Logger
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rallye:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage()
		return nil
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		cfg, err := config.Load()
		if err != nil {
			return err
		}
		return c.run(ctx, &environment{cfg: cfg, log: newLogger(cfg.LogLevel)}, args[1:])
	}
	usage()
	return fmt.Errorf("unknown command %q", args[0])
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rallye <command> [flags]")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", c.name, c.usage)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level))) // validated by config
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// parseFlags parses a command's flags, reporting errors as errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
