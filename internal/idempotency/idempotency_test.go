package idempotency_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

func TestClaimAndPurge(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(key idempotency.Key, id uuid.UUID) (got uuid.UUID, fresh bool, err error) {
		err = db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			got, fresh, err = idempotency.Claim(ctx, tx, key, id)
			return err
		})
		return
	}
	key := idempotency.Key{TenantID: tenant.ID, Operation: "Op", RequestID: "r1", Request: map[string]int{"a": 1}}
	first, second := uuid.New(), uuid.New()
	if got, fresh, err := claim(key, first); err != nil || !fresh || got != first {
		t.Fatalf("first claim: %v %v %v", got, fresh, err)
	}
	if got, fresh, err := claim(key, second); err != nil || fresh || got != first {
		t.Fatalf("replay: %v %v %v, want the first id", got, fresh, err)
	}
	other := key
	other.Request = map[string]int{"a": 2}
	if _, _, err := claim(other, second); rallye.ErrorCode(err) != rallye.CodeInvalid {
		t.Fatalf("reuse with another request: %v", err)
	}
	noKey := key
	noKey.RequestID = ""
	if got, fresh, err := claim(noKey, second); err != nil || !fresh || got != second {
		t.Fatalf("without request id: %v %v %v", got, fresh, err)
	}

	err = db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE request_ids SET created_at = now() - interval '31 days'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&idempotency.PurgeWorker{DB: db}).Work(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, fresh, err := claim(key, second); err != nil || !fresh || got != second {
		t.Fatalf("after purge the request id should be free again: %v %v %v", got, fresh, err)
	}
}
