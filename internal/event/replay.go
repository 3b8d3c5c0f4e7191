package event

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
)

// Position is a place in a company's feed: the sequence of the last change
// applied (0 before the first).
type Position struct {
	Seq int64
}

// LockConsumer takes, until tx ends, the lock under which the feed runs a
// consumer for a company: while it is held no batch of that consumer is
// applied, so the consumer's cursor and what it derived stay still. It waits
// for a running batch to finish.
func LockConsumer(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(tenantID, consumer))
	if err != nil {
		return fmt.Errorf("lock feed consumer %s: %w", consumer, err)
	}
	return nil
}

// Cursor returns how far a consumer has applied a company's feed.
func Cursor(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string) (Position, error) {
	var p Position
	err := tx.QueryRow(ctx, `SELECT seq FROM feed_cursors WHERE tenant_id = $1 AND consumer = $2`,
		tenantID, consumer).Scan(&p.Seq)
	if postgres.IsNoRows(err) {
		return Position{}, nil
	}
	if err != nil {
		return p, fmt.Errorf("read feed cursor: %w", err)
	}
	return p, nil
}

// CountedAt calls fn with every event version that counted once the feed
// was applied up to and including pos, leaving out the changes consumer
// skipped (dead letters not retried): the state the consumer, at pos, has
// seen. Consumers use it to compute something new (a new KPI measure) over
// the history and then follow the feed from pos; a dead letter retried
// later then reaches the new computation too. types, when not empty, keeps
// versions of those types. fn must not use tx (its rows are being read).
func CountedAt(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string, pos Position, types []Type, fn func(Event) error) error {
	var filter []string
	for _, t := range types {
		filter = append(filter, string(t))
	}
	rows, err := tx.Query(ctx, `SELECT `+versionColumns+`
		FROM (SELECT version_id FROM event_changes e
		      WHERE tenant_id = $1 AND seq <= $2
		        AND NOT EXISTS (SELECT 1 FROM feed_dead_letters d
		            WHERE d.tenant_id = $1 AND d.consumer = $4 AND d.seq = e.seq AND d.state <> 'retried')
		      GROUP BY version_id HAVING sum(sign) > 0) c
		JOIN event_versions v ON v.tenant_id = $1 AND v.id = c.version_id
		WHERE $3::text[] IS NULL OR v.type = ANY($3)`, tenantID, pos.Seq, filter, consumer)
	if err != nil {
		return fmt.Errorf("replay feed: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Event
		if err := scanVersion(rows, &e); err != nil {
			return err
		}
		e.TenantID = tenantID
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}
