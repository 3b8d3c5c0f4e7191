package reward_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
	"github.com/rallyehq/rallye/internal/testutil"
	"github.com/rallyehq/rallye/migrations"
)

// TestMigrationKeepsExistingPoints builds a database as it was before the
// wallet (migrations up to 21) with a final challenge and its grants, a
// running one, and points outside challenges, then migrates: the ledger
// keeps every row with its kind and names, balances equal the ledger, and
// the final challenge's results are delivered like new ones (its points
// settle, its old badge rewards become real badges).
func TestMigrationKeepsExistingPoints(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testutil.AdminURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("rallye_wallet_migration_%d", time.Now().UnixNano())
	url := testutil.AdminURL(name)
	if err := postgres.EnsureDatabase(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		_, _ = admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
		admin.Close(context.Background())
	})
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.UpTo(ctx, 21); err != nil {
		t.Fatal(err)
	}

	tenant, final, running := uuid.New(), uuid.New(), uuid.New()
	mission := uuid.New()
	u1, u2, u3 := uuid.New(), uuid.New(), uuid.New()
	at := time.Date(2026, 2, 10, 10, 0, 0, 0, time.UTC)
	def := `{"name": {"fr": "Upsell février", "en": "February upsell"}, "kind": "upsell", "mode": "individual",
		"rewards": [{"kind": "rank", "from_rank": 1, "to_rank": 1, "ref": "upsell-trophy", "label": {"fr": "Trophée upsell", "en": "Upsell trophy"}},
		            {"kind": "threshold", "min_points": 50, "ref": "upsell-badge", "label": {"fr": "Badge upsell", "en": "Upsell badge"}}]}`
	stmts := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO tenants (id, name, slug, time_zone, default_locale) VALUES ($1, 'Old', 'old', 'Europe/Paris', 'fr')`, []any{tenant}},
		{`INSERT INTO users (tenant_id, id, display_name, email, locale, roles) VALUES ($1, $2, 'Un', 'un@old.test', 'fr', '{rep}'),
			($1, $3, 'Deux', 'deux@old.test', 'en', '{rep}'), ($1, $4, 'Trois', 'trois@old.test', 'fr', '{rep}')`, []any{tenant, u1, u2, u3}},
		{`INSERT INTO challenges (tenant_id, id, kind, definition, state, starts_at, ends_at, time_zone, finalized_at, ended_at)
			VALUES ($1, $2, 'upsell', $4, 'ended', $5, $5::timestamptz + interval '7 days', 'Europe/Paris', $5::timestamptz + interval '9 days', $5::timestamptz + interval '7 days'),
			       ($1, $3, 'upsell', $4, 'active', $5, $5::timestamptz + interval '70 days', 'Europe/Paris', NULL, NULL)`,
			[]any{tenant, final, running, def, at}},
		{`INSERT INTO challenge_missions (tenant_id, challenge_id, id, position, key, definition)
			VALUES ($1, $2, $3, 0, 'quiz', '{"key": "quiz", "name": {"fr": "Quiz produit", "en": "Product quiz"}}')`, []any{tenant, final, mission}},
		{`INSERT INTO challenge_enrollments (tenant_id, challenge_id, user_id, via, enrolled_at, counts_from, points, final_rank, final_points)
			VALUES ($1, $2, $3, 'auto', $5, $5, 90, 1, 90), ($1, $2, $4, 'auto', $5, $5, 55, 2, 55)`, []any{tenant, final, u1, u2, at}},
		{`INSERT INTO challenge_reward_grants (tenant_id, key, challenge_id, user_id, reward_ref, rank, points, label_fr, label_en, granted_at)
			VALUES ($1, $6, $2, $3, 'upsell-trophy', 1, 90, 'Trophée upsell', 'Upsell trophy', $5),
			       ($1, $7, $2, $3, 'upsell-badge', NULL, 90, 'Badge upsell', 'Upsell badge', $5),
			       ($1, $8, $2, $4, 'upsell-badge', NULL, 55, 'Badge upsell', 'Upsell badge', $5)`,
			[]any{tenant, final, u1, u2, at, fmt.Sprintf("challenge:%s:reward:0:user:%s", final, u1),
				fmt.Sprintf("challenge:%s:reward:1:user:%s", final, u1), fmt.Sprintf("challenge:%s:reward:1:user:%s", final, u2)}},
		{`INSERT INTO points_ledger (tenant_id, key, user_id, challenge_id, points, earned_at, reason) VALUES
			($1, $8, $3, $2, 40, $7, $9),
			($1, 'challenge:f:event:e1:change:1', $3, $2, 50, $7, 'event:e1'),
			($1, 'challenge:f:event:e2:change:2', $4, $2, 70, $7, 'event:e2'),
			($1, 'challenge:f:event:e2:change:3', $4, $2, -15, $7, 'correction'),
			($1, 'challenge:r:event:e3:change:4', $3, $6, 25, $7, 'event:e3'),
			($1, 'period:u3:1', $5, NULL, 10, $7, 'event:x'),
			($1, 'period:u3:2', $5, NULL, -30, $7, 'correction')`,
			[]any{tenant, final, u1, u2, u3, running, at,
				fmt.Sprintf("challenge:%s:mission:%s:user:%s:complete:1", final, mission, u1), "mission:" + mission.String()}},
	}
	for _, s := range stmts {
		if _, err := db.Pool.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}
	if err := postgres.Migrate(ctx, db.Pool, quiet()); err != nil {
		t.Fatal(err)
	}

	// Kinds and names.
	var kind string
	var cause []byte
	if err := db.Pool.QueryRow(ctx, `SELECT kind, cause FROM points_ledger WHERE reason LIKE 'mission:%'`).Scan(&kind, &cause); err != nil {
		t.Fatal(err)
	}
	var c struct {
		Challenge struct{ FR string } `json:"challenge"`
		Mission   struct{ EN string } `json:"mission"`
	}
	_ = json.Unmarshal(cause, &c)
	if kind != "mission" || c.Challenge.FR != "Upsell février" || c.Mission.EN != "Product quiz" {
		t.Fatalf("mission entry: %s %s", kind, cause)
	}
	bal := func(u uuid.UUID) reward.Balance {
		t.Helper()
		var b reward.Balance
		if err := db.Pool.QueryRow(ctx, `SELECT spendable, lifetime, pending FROM wallet_balances WHERE user_id = $1`, u).
			Scan(&b.Spendable, &b.Lifetime, &b.Pending); err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Nothing settled yet: challenge points are pending; u3's own points
	// below zero were adjusted to zero.
	for u, want := range map[uuid.UUID]reward.Balance{u1: {0, 115, 115}, u2: {0, 55, 55}, u3: {0, 0, 0}} {
		if got := bal(u); got != want {
			t.Fatalf("after the migration, %s: %+v, want %+v", u, got, want)
		}
	}
	var results int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_messages WHERE kind = 'challenge.result' AND $1 = ANY(subject_ids)`, final).Scan(&results); err != nil {
		t.Fatal(err)
	}
	if results != 2 {
		t.Fatalf("%d results announced, want 2", results)
	}

	// The rewards area delivers them.
	jobs, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rdb, keys := testutil.Redis(t)
	lb := leaderboard.New(leaderboard.Deps{DB: db, Redis: rdb, Keys: keys, Log: quiet()})
	lb.SetJobs(jobs)
	t.Cleanup(lb.Close)
	svc := reward.New(reward.Deps{DB: db, Ledger: lb.Scores, Log: quiet()})
	runner := outbox.NewRunner(db, quiet())
	runner.MaxAttempts = 1
	runner.Register(svc.Consumer())
	for {
		pending, err := runner.Drain(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if !pending {
			break
		}
	}
	var dead int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox_dead_letters`).Scan(&dead)
	if dead != 0 {
		t.Fatalf("%d dead letters", dead)
	}
	for u, want := range map[uuid.UUID]reward.Balance{u1: {90, 115, 25}, u2: {55, 55, 0}} {
		if got := bal(u); got != want {
			t.Fatalf("after delivery, %s: %+v, want %+v", u, got, want)
		}
	}
	admin1 := rallye.Principal{TenantID: tenant, Roles: []rallye.Role{rallye.RoleAdmin}}
	awards, err := svc.UserBadges(ctx, admin1, u1)
	if err != nil {
		t.Fatal(err)
	}
	var keysHeld []string
	for _, a := range awards {
		keysHeld = append(keysHeld, a.Badge.Key)
	}
	slices.Sort(keysHeld)
	if want := []string{"challenge-winner", "podium", "upsell-badge", "upsell-trophy"}; !slices.Equal(keysHeld, want) {
		t.Fatalf("u1 holds %v, want %v", keysHeld, want)
	}
}
