package kpi

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Freshness is how far a company's roll-ups have got.
type Freshness struct {
	// AsOf: every event change accepted before this instant is counted in
	// the values read after it. When the roll-ups are caught up it is the
	// time of the check; otherwise when the oldest change not applied yet
	// was accepted.
	AsOf time.Time
	// CaughtUp: no accepted change was waiting for the roll-ups.
	CaughtUp bool
}

// Freshness tells how far the roll-up consumer has got for a company, from
// its cursor in the change feed: one index probe. Read it before the
// values: they then hold at least what it says.
func (s *Service) Freshness(ctx context.Context, tenantID uuid.UUID) (Freshness, error) {
	var f Freshness
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var pending *time.Time
		var now time.Time
		err := tx.QueryRow(ctx, `SELECT (SELECT c.created_at FROM event_changes c
				WHERE c.tenant_id = $1 AND c.seq > coalesce((SELECT seq FROM feed_cursors WHERE tenant_id = $1 AND consumer = $2), 0)
				ORDER BY c.seq LIMIT 1), statement_timestamp()`, tenantID, ConsumerName).Scan(&pending, &now)
		if err != nil {
			return fmt.Errorf("read roll-up position: %w", err)
		}
		if pending == nil {
			f = Freshness{AsOf: now, CaughtUp: true}
		} else {
			f = Freshness{AsOf: *pending}
		}
		return nil
	})
	return f, err
}
