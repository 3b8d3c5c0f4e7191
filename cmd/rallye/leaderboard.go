package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/redisdb"
)

func runLeaderboard(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] != "rebuild" {
		return fmt.Errorf("usage: rallye leaderboard rebuild [--tenant SLUG] [--board ID]")
	}
	fs := flag.NewFlagSet("leaderboard rebuild", flag.ContinueOnError)
	tenantRef := fs.String("tenant", "", "company slug or id (default: every company)")
	boardRef := fs.String("board", "", "one board id (default: every board of the companies)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	defer db.Close()
	rdb, err := redisdb.Open(ctx, redisdb.Options{URL: env.cfg.RedisURL, Addrs: env.cfg.RedisAddrs, MasterName: env.cfg.RedisMasterName, Cluster: env.cfg.RedisCluster})
	if err != nil {
		return err
	}
	defer rdb.Close()
	svc := leaderboard.New(leaderboard.Deps{DB: db, Redis: rdb, Keys: redisdb.Keyspace{Prefix: env.cfg.RedisPrefix}, Log: env.log})
	defer svc.Close()

	tenantID := uuid.Nil
	if *tenantRef != "" {
		t, err := org.NewService(db).TenantByRef(ctx, *tenantRef)
		if err != nil {
			return err
		}
		tenantID = t.ID
	}
	boards, err := svc.BoardsToRebuild(ctx, tenantID)
	if err != nil {
		return err
	}
	if *boardRef != "" {
		id, err := uuid.Parse(*boardRef)
		if err != nil {
			return fmt.Errorf("--board: %q is not a board id", *boardRef)
		}
		var one []leaderboard.Board
		for _, b := range boards {
			if b.ID == id {
				one = append(one, b)
			}
		}
		if len(one) == 0 {
			return fmt.Errorf("--board: no board %s (in that company)", id)
		}
		boards = one
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENANT\tBOARD\tKIND\tSCOPE\tPARTICIPANTS\tTOOK")
	failed := 0
	for _, b := range boards {
		start := time.Now()
		n, err := svc.Rebuild(ctx, b.TenantID, b.ID)
		scope := string(b.Period)
		if scope == "" {
			scope = "challenge " + b.ChallengeID.String()
		}
		status := fmt.Sprint(n)
		switch {
		case err != nil:
			failed++
			status = "error: " + err.Error()
		case b.Frozen():
			status = "final (served from PostgreSQL; live copy removed)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", b.TenantID, b.ID, b.Kind, scope, status, time.Since(start).Round(time.Millisecond))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d boards failed to rebuild", failed, len(boards))
	}
	return nil
}
