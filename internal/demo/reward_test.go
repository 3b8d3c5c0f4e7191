package demo_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/demo"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
	"github.com/rallyehq/rallye/internal/testutil"
)

// TestSeedRewards seeds the demo's rewards twice, then runs what a server
// would (the feed, the sprint's finalization, the outbox): the catalogue is
// there once, Camille's streak is in progress, and the sprint's tied
// winners hold their rewards.
func TestSeedRewards(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	jobs, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rdb, keys := testutil.Redis(t)
	lb := leaderboard.New(leaderboard.Deps{DB: db, Redis: rdb, Keys: keys, Log: quiet})
	lb.SetJobs(jobs)
	t.Cleanup(lb.Close)
	seam := challenge.LeaderboardSeam{LB: lb}
	challenges := challenge.New(challenge.Deps{DB: db, Jobs: jobs, Scores: seam, Boards: seam})
	rewards := reward.New(reward.Deps{DB: db, Ledger: lb.Scores, Log: quiet})
	store := event.NewStore(db)
	feed := event.NewFeed(db, quiet)
	feed.Register(challenges.Progress())
	feed.Register(rewards.Activity())
	runner := outbox.NewRunner(db, quiet)
	runner.Register(rewards.Consumer())

	res, err := demo.Seed(ctx, org.NewService(db))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for range 2 {
		if err := demo.SeedRewards(ctx, rewards, challenges, store, res, now); err != nil {
			t.Fatal(err)
		}
	}
	drain := func() {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			fp, err := feed.Drain(ctx, res.Tenant.ID)
			if err != nil {
				t.Fatal(err)
			}
			op, err := runner.Drain(ctx, res.Tenant.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !fp && !op {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("not drained")
			}
		}
	}
	drain()
	// The sprint's finalize job, run a minute later (past its grace and
	// data wait) as a server's job queue would.
	later := challenge.New(challenge.Deps{DB: db, Jobs: jobs, Scores: seam, Boards: seam, Now: func() time.Time { return time.Now().Add(time.Minute) }})
	byExt := map[string]org.User{}
	for _, u := range res.People {
		byExt[u.ExternalID] = u
	}
	sophie := rallye.Principal{TenantID: res.Tenant.ID, UserID: byExt["crm-mgr-002"].ID, Roles: []rallye.Role{rallye.RoleManager}}
	list, err := challenges.List(ctx, sophie, challenge.ListRequest{Size: 100, Cursor: page.Cursor{}})
	if err != nil {
		t.Fatal(err)
	}
	var sprint uuid.UUID
	n := 0
	for _, o := range list {
		if o.Challenge.Definition.Name == demo.SprintName {
			sprint = o.Challenge.ID
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d sprints, want 1", n)
	}
	if retry, err := later.Finalize(ctx, challenge.FinalizeArgs{TenantID: res.Tenant.ID, ChallengeID: sprint}); err != nil || retry != 0 {
		t.Fatalf("finalize: retry %v, %v", retry, err)
	}
	drain()

	admin := rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	items, err := rewards.ListItems(ctx, admin, reward.ListItemsRequest{})
	if err != nil || len(items) != 4 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	camille := rallye.Principal{TenantID: res.Tenant.ID, UserID: byExt["crm-rep-001"].ID, Roles: []rallye.Role{rallye.RoleRep}}
	if north, err := rewards.ListItems(ctx, camille, reward.ListItemsRequest{}); err != nil || len(north) != 3 {
		t.Fatalf("Camille (north) sees %d items, %v; want 3 (the dinner is the south's)", len(north), err)
	}
	streaks, err := rewards.Streaks(ctx, camille, uuid.Nil)
	if err != nil || len(streaks) != 1 || streaks[0].Current < 6 {
		t.Fatalf("Camille's streaks %+v, %v; want one of at least 6", streaks, err)
	}
	for ext, want := range map[string]struct {
		badge  string
		points int64
	}{"crm-rep-004": {"sprint-trophy", 200 + 40 + 300}, "crm-rep-005": {"sprint-trophy", 200 + 40 + 300}, "crm-rep-006": {"podium", 200 + 20 + 150}} {
		p := rallye.Principal{TenantID: res.Tenant.ID, UserID: byExt[ext].ID, Roles: []rallye.Role{rallye.RoleRep}}
		w, err := rewards.Wallet(ctx, p, uuid.Nil, 5)
		if err != nil {
			t.Fatal(err)
		}
		if w.Spendable != want.points || w.Pending != 0 {
			t.Fatalf("%s: wallet %+v, want %d spendable (welcome, sprint, reward), nothing pending", ext, w.Balance, want.points)
		}
		awards, err := rewards.UserBadges(ctx, p, uuid.Nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(awards, func(a reward.Award) bool { return a.Badge.Key == want.badge }) {
			t.Fatalf("%s holds %+v, want %s", ext, awards, want.badge)
		}
	}
}
