package leaderboard

import (
	"context"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/redisdb"
)

// RepairOnce runs one pass of a board's repair job (the tests do not wait
// for follow-ups, which depend on other databases' transactions).
func (s *Service) RepairOnce(ctx context.Context, tenantID, boardID uuid.UUID) error {
	_, err := s.repair(ctx, RepairArgs{TenantID: tenantID, BoardID: boardID})
	return err
}

// KeyNames returns every Redis name of a board (keys and channel).
func KeyNames(ks redisdb.Keyspace, boardID uuid.UUID) []string {
	k := keysOf(ks, boardID)
	return append(k.all(), k.live)
}

// Composite and Decompose expose the score encoding.
var (
	Composite = composite
	Decompose = decompose
	TieRange  = int64(tieRange)
)

// PendingRepairs counts the repair jobs waiting in the queue.
const PendingRepairsQuery = `SELECT count(*) FROM river_job WHERE kind = 'leaderboard.repair' AND state IN ('available', 'scheduled')`
