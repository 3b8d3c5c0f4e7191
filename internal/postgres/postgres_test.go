package postgres_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/testutil"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestEveryCompanyTableIsWalled checks that each table with a tenant_id
// column has row-level security enabled and forced.
func TestEveryCompanyTableIsWalled(t *testing.T) {
	db := testutil.DB(t)
	rows, err := db.Pool.Query(context.Background(), `
		SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
		  AND (EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
		       OR c.relname = 'tenants')`)
	if err != nil {
		t.Fatal(err)
	}
	type table struct {
		name          string
		rls, forceRLS bool
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (table, error) {
		var tb table
		return tb, r.Scan(&tb.name, &tb.rls, &tb.forceRLS)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) < 5 {
		t.Fatalf("found only %d company tables", len(tables))
	}
	for _, tb := range tables {
		if !tb.rls || !tb.forceRLS {
			t.Errorf("table %s: row level security enabled=%v forced=%v", tb.name, tb.rls, tb.forceRLS)
		}
	}
}

// TestMigrateConcurrently starts several migrations at once on an empty
// database, as several instances starting together would.
func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testutil.AdminURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("rallye_migrate_test_%d", time.Now().UnixNano())
	empty := testutil.AdminURL(name)
	if err := postgres.EnsureDatabase(ctx, empty); err != nil {
		t.Fatalf("EnsureDatabase: %v", err)
	}
	if err := postgres.EnsureDatabase(ctx, empty); err != nil {
		t.Fatalf("EnsureDatabase again: %v", err)
	}
	pool, err := pgxpool.New(ctx, empty)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer admin.Close(context.Background())
		pool.Close()
		if _, err := admin.Exec(context.Background(), `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.Migrate(ctx, pool, quiet()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	var versions int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	hash, _ := postgres.SchemaHash()
	if versions == 0 || hash == "" {
		t.Fatalf("no migration recorded (%d) or no schema hash", versions)
	}
}

// A transaction whose function panics is rolled back and its connection
// returned, so the pool can still be closed.
func TestPanickingTransactionIsRolledBack(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	func() {
		defer func() { _ = recover() }()
		_ = db.AcrossTenants(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TEMP TABLE panicked (x int)`); err != nil {
				t.Fatal(err)
			}
			panic("boom")
		})
	}()
	if st := db.Pool.Stat(); st.AcquiredConns() != 0 {
		t.Fatalf("%d connections still held after the panic", st.AcquiredConns())
	}
}
