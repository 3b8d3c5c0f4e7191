package postgres_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/testutil"
)

// TestUUIDEncoding checks the direct uuid encode plans, NULLs included.
func TestUUIDEncoding(t *testing.T) {
	db := testutil.DB(t)
	id := uuid.New()
	var nilID *uuid.UUID
	var got []*uuid.UUID
	var one uuid.UUID
	var isNull bool
	err := db.Pool.QueryRow(context.Background(), `SELECT $1::uuid, $2::uuid IS NULL, $3::uuid[]`, id, nilID, []*uuid.UUID{&id, nil}).Scan(&one, &isNull, &got)
	if err != nil || one != id || !isNull || len(got) != 2 || *got[0] != id || got[1] != nil {
		t.Fatalf("%v %v %v %v", one, isNull, got, err)
	}
}
