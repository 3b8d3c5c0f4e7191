package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/demo"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/redisdb"
	"github.com/rallyehq/rallye/internal/reward"
)

// openDB creates and migrates the database, for commands that need no Redis.
func openDB(ctx context.Context, env *environment) (*postgres.DB, error) {
	if err := postgres.EnsureDatabase(ctx, env.cfg.DatabaseURL); err != nil {
		return nil, err
	}
	db, err := postgres.Open(ctx, env.cfg.DatabaseURL, 4)
	if err != nil {
		return nil, err
	}
	if err := postgres.Migrate(ctx, db.Pool, env.log); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func runMigrate(ctx context.Context, env *environment, args []string) error {
	if err := parseFlags(flag.NewFlagSet("migrate", flag.ContinueOnError), args); err != nil {
		return err
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	db.Close()
	fmt.Println("database is up to date")
	return nil
}

func runTenant(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: rallye tenant create|list [flags]")
	}
	switch args[0] {
	case "create":
		return runTenantCreate(ctx, env, args[1:])
	case "list":
		if err := parseFlags(flag.NewFlagSet("tenant list", flag.ContinueOnError), args[1:]); err != nil {
			return err
		}
		db, err := openDB(ctx, env)
		if err != nil {
			return err
		}
		defer db.Close()
		tenants, err := org.NewService(db).Tenants(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "SLUG\tID\tNAME\tTIME ZONE\tLOCALE")
		for _, t := range tenants {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Slug, t.ID, t.Name, t.TimeZone, t.DefaultLocale)
		}
		return w.Flush()
	}
	return fmt.Errorf("unknown tenant command %q (want create or list)", args[0])
}

func runTenantCreate(ctx context.Context, env *environment, args []string) error {
	fs := flag.NewFlagSet("tenant create", flag.ContinueOnError)
	name := fs.String("name", "", "company name (required)")
	slug := fs.String("slug", "", "short unique name, such as acme (required)")
	tz := fs.String("time-zone", "Europe/Paris", "IANA time zone in which periods are cut")
	locale := fs.String("locale", "fr", "default locale: fr or en")
	currency := fs.String("currency", "EUR", "currency of money KPIs (ISO 4217)")
	adminName := fs.String("admin-name", "", "first admin's display name (required)")
	adminEmail := fs.String("admin-email", "", "first admin's e-mail (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the printed admin token")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	defer db.Close()
	svc := org.NewService(db)
	tenant, admin, err := svc.CreateTenant(ctx, org.NewTenant{
		Name: *name, Slug: *slug, TimeZone: *tz, DefaultLocale: org.Locale(*locale), Currency: *currency,
		Admin: org.UserInput{DisplayName: *adminName, Email: *adminEmail},
	})
	if err != nil {
		return err
	}
	_, secret, err := auth.NewAPIKeys(db).CreateForOperator(ctx, tenant.ID, "first admin key")
	if err != nil {
		return err
	}
	fmt.Printf("company    %s (%s)\n", tenant.Slug, tenant.ID)
	fmt.Printf("admin      %s <%s> (%s)\n", admin.DisplayName, admin.Email, admin.ID)
	fmt.Printf("api key    %s\n", secret)
	if env.cfg.JWTSecret != "" {
		token, err := mint(env, admin, *ttl)
		if err != nil {
			return err
		}
		fmt.Printf("token      %s\n", token)
	}
	fmt.Println("The API key is shown once: store it now.")
	return nil
}

func mint(env *environment, u org.User, ttl time.Duration) (string, error) {
	return auth.MintToken([]byte(env.cfg.JWTSecret), env.cfg.JWTIssuer, env.cfg.JWTAudience, auth.TokenRequest{
		TenantID: u.TenantID, UserID: u.ID, Roles: u.Roles, TTL: ttl, Now: time.Now(),
	})
}

func runToken(ctx context.Context, env *environment, args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	tenantRef := fs.String("tenant", demo.Slug, "company slug or id")
	userRef := fs.String("user", "", "person's e-mail or id (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "token lifetime")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *userRef == "" {
		return fmt.Errorf("--user is required")
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	defer db.Close()
	svc := org.NewService(db)
	tenant, err := svc.TenantByRef(ctx, *tenantRef)
	if err != nil {
		return err
	}
	user, err := svc.UserByRef(ctx, tenant.ID, *userRef)
	if err != nil {
		return err
	}
	token, err := mint(env, user, *ttl)
	if err != nil {
		return err
	}
	fmt.Println(token)
	return nil
}

func runDemo(ctx context.Context, env *environment, args []string) error {
	if err := parseFlags(flag.NewFlagSet("demo", flag.ContinueOnError), args); err != nil {
		return err
	}
	db, err := openDB(ctx, env)
	if err != nil {
		return err
	}
	defer db.Close()
	res, err := demo.Seed(ctx, org.NewService(db))
	if err != nil {
		return err
	}
	// No server runs: apply the change feed and compute the KPIs here; the
	// challenge's progress and its start and end jobs follow when a server
	// runs.
	kpis := kpi.NewService(db, nil, env.log)
	feed := event.NewFeed(db, env.log)
	feed.Register(kpis.Rollups())
	drain := func(ctx context.Context, tenantID uuid.UUID) error {
		for {
			pending, err := feed.Drain(ctx, tenantID)
			if err != nil {
				return err
			}
			if !pending {
				return kpis.Backfill(ctx, tenantID)
			}
			time.Sleep(50 * time.Millisecond) // another instance holds a consumer
		}
	}
	if err := demo.SeedKPIs(ctx, res, demo.Activity{KPI: kpis, Events: event.NewStore(db), Drain: drain, Now: time.Now()}); err != nil {
		return err
	}
	// An insert-only job client: the challenge's jobs are inserted here.
	jobs, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		return err
	}
	c, err := demo.SeedChallenge(ctx, challenge.New(challenge.Deps{DB: db, Jobs: jobs}), event.NewStore(db), res)
	if err != nil {
		return err
	}
	// Rewards write points through the leaderboard (PostgreSQL, then Redis).
	rdb, err := redisdb.Open(ctx, redisdb.Options{URL: env.cfg.RedisURL, Addrs: env.cfg.RedisAddrs, MasterName: env.cfg.RedisMasterName})
	if err != nil {
		return err
	}
	defer rdb.Close()
	lb := leaderboard.New(leaderboard.Deps{DB: db, Redis: rdb, Keys: redisdb.Keyspace{Prefix: env.cfg.RedisPrefix}, Log: env.log})
	defer lb.Close()
	lb.SetJobs(jobs)
	seam := challenge.LeaderboardSeam{LB: lb}
	if err := demo.SeedRewards(ctx, reward.New(reward.Deps{DB: db, Ledger: lb.Scores, Log: env.log}),
		challenge.New(challenge.Deps{DB: db, Jobs: jobs, Scores: seam, Boards: seam}), event.NewStore(db), res, time.Now()); err != nil {
		return err
	}
	return printDemo(env, res, c)
}

// printDemo prints the demo company's people with a token each, and its
// running challenge.
func printDemo(env *environment, res demo.Result, c *challenge.Challenge) error {
	if env.cfg.JWTSecret == "" {
		return fmt.Errorf("RALLYE_JWT_SECRET is needed to print demo tokens")
	}
	fmt.Printf("Demo company %q (%s), %d teams, %d people. Tokens valid 24h:\n", res.Tenant.Slug, res.Tenant.ID, len(res.Teams), len(res.People))
	defer fmt.Printf("Running challenge %q (%s) until %s.\n", c.Definition.Name.EN, c.ID, c.EndsAt.Format(time.RFC3339))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, u := range res.People {
		token, err := mint(env, u, 24*time.Hour)
		if err != nil {
			return err
		}
		roles := make([]string, len(u.Roles))
		for i, r := range u.Roles {
			roles[i] = string(r)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", strings.Join(roles, ","), u.DisplayName, u.Email, token)
	}
	return w.Flush()
}
