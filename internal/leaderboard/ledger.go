package leaderboard

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The points ledger (points_ledger) is Rallye's one source of truth for
// points. Record is its only writer; the wallet (internal/reward) reads it
// through the functions below, and its balances are kept equal to it by the
// database (migrations/00101_wallet.sql).

// LedgerEntry is a ledger row as the wallet's history reads it.
type LedgerEntry struct {
	// Seq orders a person's entries as they were recorded.
	Seq         int64
	Key         string
	UserID      uuid.UUID
	ChallengeID uuid.UUID
	Points      int64
	Kind        EntryKind
	Cause       json.RawMessage
	// EarnedAt is when the points were earned; RecordedAt when they were
	// written.
	EarnedAt, RecordedAt time.Time
}

// ReadLedger returns a person's entries, newest first, recorded before the
// entry numbered before (0: from the newest), at most limit.
func ReadLedger(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID, before int64, limit int) ([]LedgerEntry, error) {
	var out []LedgerEntry
	b := &pgx.Batch{}
	QueueReadLedger(b, tenantID, userID, before, limit, &out)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	return out, nil
}

// QueueReadLedger queues ReadLedger's query on a batch, for a caller
// reading several things in one round trip; dest is filled when the batch
// runs.
func QueueReadLedger(b *pgx.Batch, tenantID, userID uuid.UUID, before int64, limit int, dest *[]LedgerEntry) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	b.Queue(`SELECT seq, key, user_id, coalesce(challenge_id, '00000000-0000-0000-0000-000000000000'),
			points, kind, cause, earned_at, recorded_at
		FROM points_ledger WHERE tenant_id = $1 AND user_id = $2 AND seq < $3
		ORDER BY seq DESC LIMIT $4`, tenantID, userID, before, limit).Query(func(rows pgx.Rows) error {
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LedgerEntry, error) {
			var e LedgerEntry
			err := r.Scan(&e.Seq, &e.Key, &e.UserID, &e.ChallengeID, &e.Points, &e.Kind, &e.Cause, &e.EarnedAt, &e.RecordedAt)
			return e, err
		})
		if err != nil {
			return fmt.Errorf("read ledger: %w", err)
		}
		*dest = out
		return nil
	})
}

// ChallengeTotals returns each person's points in a challenge, as the ledger
// sums them.
func ChallengeTotals(ctx context.Context, tx pgx.Tx, tenantID, challengeID uuid.UUID) (map[uuid.UUID]int64, error) {
	rows, err := tx.Query(ctx, `SELECT user_id, sum(points)::bigint FROM points_ledger
		WHERE tenant_id = $1 AND challenge_id = $2 GROUP BY user_id`, tenantID, challengeID)
	if err != nil {
		return nil, fmt.Errorf("read challenge totals: %w", err)
	}
	out := map[uuid.UUID]int64{}
	var u uuid.UUID
	var p int64
	if _, err := pgx.ForEachRow(rows, []any{&u, &p}, func() error { out[u] = p; return nil }); err != nil {
		return nil, fmt.Errorf("read challenge totals: %w", err)
	}
	return out, nil
}
