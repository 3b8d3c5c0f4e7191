package idempotency_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
	"github.com/rallyehq/rallye/migrations"
)

type fixture struct {
	db     *postgres.DB
	tenant org.Tenant
	admin  org.User
}

func setup(t *testing.T) fixture {
	t.Helper()
	db := testutil.DB(t)
	tenant, admin, err := org.NewService(db).CreateTenant(context.Background(), org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{db: db, tenant: tenant, admin: admin}
}

func (f fixture) claim(t *testing.T, key idempotency.Key, id uuid.UUID) (got uuid.UUID, fresh bool, err error) {
	t.Helper()
	ctx := context.Background()
	err = f.db.InTenant(ctx, f.tenant.ID, func(tx pgx.Tx) error {
		got, fresh, err = idempotency.Claim(ctx, tx, key, id)
		return err
	})
	return
}

func TestClaimAndPurge(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	caller := rallye.Principal{TenantID: f.tenant.ID, UserID: f.admin.ID}
	key := idempotency.Key{Caller: caller, Operation: "Op", RequestID: "r1", Request: map[string]int{"a": 1}}
	first, second := uuid.New(), uuid.New()
	if got, fresh, err := f.claim(t, key, first); err != nil || !fresh || got != first {
		t.Fatalf("first claim: %v %v %v", got, fresh, err)
	}
	if got, fresh, err := f.claim(t, key, second); err != nil || fresh || got != first {
		t.Fatalf("replay: %v %v %v, want the first id", got, fresh, err)
	}
	other := key
	other.Request = map[string]int{"a": 2}
	if _, _, err := f.claim(t, other, second); rallye.ErrorCode(err) != rallye.CodeInvalid {
		t.Fatalf("reuse with another request: %v", err)
	}
	noKey := key
	noKey.RequestID = ""
	if got, fresh, err := f.claim(t, noKey, second); err != nil || !fresh || got != second {
		t.Fatalf("without request id: %v %v %v", got, fresh, err)
	}

	err := f.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE request_ids SET created_at = now() - interval '31 days'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&idempotency.PurgeWorker{DB: f.db}).Work(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, fresh, err := f.claim(t, key, second); err != nil || !fresh || got != second {
		t.Fatalf("after purge the request id should be free again: %v %v %v", got, fresh, err)
	}
}

// TestRequestIDsBelongToTheirCaller: the same request id from another person
// or API key of the company is a request of its own, whatever its body:
// never the first caller's object, never "already used".
func TestRequestIDsBelongToTheirCaller(t *testing.T) {
	t.Parallel()
	f := setup(t)
	a := rallye.Principal{TenantID: f.tenant.ID, UserID: f.admin.ID}
	person := func() rallye.Principal { return rallye.Principal{TenantID: f.tenant.ID, UserID: uuid.New()} }
	apiKey := func() rallye.Principal { return rallye.Principal{TenantID: f.tenant.ID, APIKeyID: uuid.New()} }
	aID := uuid.New()
	if _, fresh, err := f.claim(t, idempotency.Key{Caller: a, Operation: "Op", RequestID: "r1", Request: "a's"}, aID); err != nil || !fresh {
		t.Fatalf("a's claim: %v %v", fresh, err)
	}
	tests := []struct {
		name    string
		caller  rallye.Principal
		request string
	}{
		{"OtherPersonSameBody", person(), "a's"},
		{"OtherPersonOtherBody", person(), "b's"},
		{"APIKeySameBody", apiKey(), "a's"},
		{"APIKeyOtherBody", apiKey(), "key's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := uuid.New()
			got, fresh, err := f.claim(t, idempotency.Key{Caller: tt.caller, Operation: "Op", RequestID: "r1", Request: tt.request}, own)
			if err != nil || !fresh || got != own {
				t.Fatalf("got %v fresh %v err %v; want a fresh claim of %v (a's object is %v)", got, fresh, err, own, aID)
			}
			// Their own replay is theirs.
			got, fresh, err = f.claim(t, idempotency.Key{Caller: tt.caller, Operation: "Op", RequestID: "r1", Request: tt.request}, uuid.New())
			if err != nil || fresh || got != own {
				t.Fatalf("replay: got %v fresh %v err %v, want %v", got, fresh, err, own)
			}
		})
	}
}

// TestMigrationKeysExistingRowsByCaller rolls the per-caller migration back,
// writes request ids as the old schema had them, and applies it again: the
// rows stay, a challenge's id goes to its creator, and ids whose object does
// not say who created it go to nobody.
func TestMigrationKeysExistingRowsByCaller(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	const version = 30
	sqlDB := stdlib.OpenDBFromPool(f.db.Pool)
	defer sqlDB.Close()
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.ApplyVersion(ctx, version, false); err != nil {
		t.Fatalf("roll back: %v", err)
	}
	challengeID, teamID := uuid.New(), uuid.New()
	err = f.db.InTenant(ctx, f.tenant.ID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO challenges (tenant_id, id, kind, definition, state, time_zone, created_by)
			VALUES ($1, $2, 'custom', '{}', 'draft', 'UTC', $3)`, f.tenant.ID, challengeID, f.admin.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO request_ids (tenant_id, operation, request_id, request_hash, resource_id)
			VALUES ($1, 'CreateChallenge', 'launch', '\x00', $2), ($1, 'CreateTeam', 'north', '\x00', $3)`,
			f.tenant.ID, challengeID, teamID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provider.ApplyVersion(ctx, version, true); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	callers := map[string]uuid.UUID{}
	err = f.db.InTenant(ctx, f.tenant.ID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT request_id, caller_id FROM request_ids`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var caller uuid.UUID
			if err := rows.Scan(&id, &caller); err != nil {
				return err
			}
			callers[id] = caller
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uuid.UUID{"launch": f.admin.ID, "north": uuid.Nil}
	if len(callers) != len(want) || callers["launch"] != want["launch"] || callers["north"] != want["north"] {
		t.Fatalf("request ids after the migration: %v, want %v", callers, want)
	}
}
