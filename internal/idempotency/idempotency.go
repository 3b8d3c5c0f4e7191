// Package idempotency makes create operations safe to retry: the client
// sends a request id, and the first transaction that claims it records which
// object it creates, in the same transaction as the object. A retry (even a
// concurrent one) finds the claim and returns the object created the first
// time instead of creating another.
//
// Request ids belong to their caller, as Stripe's idempotency keys belong to
// an account: the key is (company, caller, operation, request id), where the
// caller is the person or the API key. Another caller sending the same id
// makes a request of its own: it never receives the first caller's object,
// and cannot learn that the id was used.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Key identifies one client request.
type Key struct {
	// Caller makes the request: its company, and the person or API key
	// whose request ids these are.
	Caller    rallye.Principal
	Operation string // such as "CreateTeam"
	RequestID string // chosen by the client; "" disables idempotency
	// Request is the request itself; a replay must carry the same one.
	Request any
}

// CallerID is whose request ids a principal uses: the person, or the API
// key (uuid.Nil for the server acting on its own).
func CallerID(p rallye.Principal) uuid.UUID {
	if p.IsPerson() {
		return p.UserID
	}
	return p.APIKeyID
}

// Claim claims key for newID inside tx. It returns the id of the object the
// request creates and whether this transaction must create it (fresh). When
// fresh is false the caller already made this request: the caller returns
// the existing object, after checking that it may still see it (the rights
// of a replay are those of now). A request id the caller reused for a
// different request is rallye.CodeInvalid on the field "request_id".
//
// A concurrent claim of the same key waits for the first transaction to end,
// so exactly one creates the object.
func Claim(ctx context.Context, tx pgx.Tx, key Key, newID uuid.UUID) (id uuid.UUID, fresh bool, err error) {
	if key.RequestID == "" {
		return newID, true, nil
	}
	body, err := json.Marshal(key.Request)
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("hash request: %w", err)
	}
	hash := sha256.Sum256(body)
	tenant, caller := key.Caller.TenantID, CallerID(key.Caller)
	var claimed uuid.UUID
	err = tx.QueryRow(ctx, `INSERT INTO request_ids (tenant_id, caller_id, operation, request_id, request_hash, resource_id)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING resource_id`,
		tenant, caller, key.Operation, key.RequestID, hash[:], newID).Scan(&claimed)
	if err == nil {
		return claimed, true, nil
	}
	if err != pgx.ErrNoRows {
		return uuid.Nil, false, fmt.Errorf("claim request id: %w", err)
	}
	var prevHash []byte
	err = tx.QueryRow(ctx, `SELECT request_hash, resource_id FROM request_ids
		WHERE tenant_id = $1 AND caller_id = $2 AND operation = $3 AND request_id = $4`,
		tenant, caller, key.Operation, key.RequestID).Scan(&prevHash, &claimed)
	if err != nil {
		return uuid.Nil, false, fmt.Errorf("read claimed request id: %w", err)
	}
	if string(prevHash) != string(hash[:]) {
		return uuid.Nil, false, &rallye.Error{
			Code: rallye.CodeInvalid, Field: "request_id", Reason: "REQUEST_ID_REUSED",
			Message: "you already used it for a different request",
		}
	}
	return claimed, false, nil
}

// Retention is how long request ids are kept: a client retrying later than
// that is making a new request.
const Retention = 30 * 24 * time.Hour

// PurgeArgs is the periodic job that forgets request ids older than
// Retention.
type PurgeArgs struct{}

// Kind implements river.JobArgs.
func (PurgeArgs) Kind() string { return "idempotency.purge" }

// PurgeWorker deletes expired request ids.
type PurgeWorker struct {
	river.WorkerDefaults[PurgeArgs]
	DB *postgres.DB
}

// Work implements river.Worker.
func (w *PurgeWorker) Work(ctx context.Context, _ *river.Job[PurgeArgs]) error {
	// Across tenants: housekeeping of every company's request ids.
	return w.DB.AcrossTenants(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM request_ids WHERE created_at < now() - $1::interval`, Retention)
		return err
	})
}
