package leaderboard

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

const boardColumns = `tenant_id, id, kind, coalesce(challenge_id, '00000000-0000-0000-0000-000000000000'),
	coalesce(period, ''), starts_at, ends_at, shared_ranks, tick_seconds, frozen_at, coalesce(participant_count, 0)`

func scanBoard(row pgx.Row) (Board, error) {
	var b Board
	var ends, frozen *time.Time
	var tick int
	err := row.Scan(&b.TenantID, &b.ID, &b.Kind, &b.ChallengeID, &b.Period, &b.StartsAt, &ends,
		&b.SharedRanks, &tick, &frozen, &b.ParticipantCount)
	if ends != nil {
		b.EndsAt = *ends
	}
	if frozen != nil {
		b.FrozenAt = *frozen
	}
	b.Tick = time.Duration(tick) * time.Second
	return b, err
}

func collectBoards(rows pgx.Rows, err error) ([]Board, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Board, error) { return scanBoard(r) })
}

func getBoard(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (Board, error) {
	b, err := scanBoard(tx.QueryRow(ctx, `SELECT `+boardColumns+` FROM boards WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if postgres.IsNoRows(err) {
		return b, rallye.NotFound("board")
	}
	return b, err
}

func challengeBoards(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, challengeIDs []uuid.UUID, lock bool) ([]Board, error) {
	q := `SELECT ` + boardColumns + ` FROM boards WHERE tenant_id = $1 AND challenge_id = ANY($2) ORDER BY id`
	if lock {
		q += ` FOR UPDATE`
	}
	return collectBoards(tx.Query(ctx, q, tenantID, challengeIDs))
}

// challengeLock is the advisory lock key of a challenge's boards: recording
// and enrolling hold it shared, freezing holds it exclusively, so that no
// points land on a board after its final ranking was taken.
func challengeLock(challengeID uuid.UUID) int64 {
	return int64(binary.BigEndian.Uint64(challengeID[8:])) ^ 0x6c6561646572 // "leader"
}

func lockChallenges(ctx context.Context, tx pgx.Tx, ids []uuid.UUID, exclusive bool) error {
	fn := "pg_advisory_xact_lock_shared"
	if exclusive {
		fn = "pg_advisory_xact_lock"
	}
	for _, id := range ids {
		if _, err := tx.Exec(ctx, `SELECT `+fn+`($1)`, challengeLock(id)); err != nil {
			return fmt.Errorf("lock challenge boards: %w", err)
		}
	}
	return nil
}

// location returns the company's time zone, cached: periods are cut in it.
func (s *Service) location(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (*time.Location, error) {
	if loc, ok := s.zoneCache.Get(tenantID); ok {
		return loc, nil
	}
	var tz string
	if err := tx.QueryRow(ctx, `SELECT time_zone FROM tenants WHERE id = $1`, tenantID).Scan(&tz); err != nil {
		if postgres.IsNoRows(err) {
			return nil, rallye.NotFound("company")
		}
		return nil, fmt.Errorf("read time zone: %w", err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		loc = time.UTC // time zones are checked when set
	}
	s.zoneCache.Add(tenantID, loc)
	return loc, nil
}

// board returns a board's settings (cached). A current period board that
// nobody scored on yet exists virtually: it is empty.
func (s *Service) board(ctx context.Context, tenantID, id uuid.UUID) (Board, error) {
	key := boardKey{tenantID, id}
	if b, ok := s.boardCache.Get(key); ok {
		return b, nil
	}
	var b Board
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		b, err = getBoard(ctx, tx, tenantID, id)
		if rallye.ErrorCode(err) != rallye.CodeNotFound {
			return err
		}
		loc, lerr := s.location(ctx, tx, tenantID)
		if lerr != nil {
			return lerr
		}
		for _, p := range Periods {
			if cur := periodBoard(tenantID, p, s.now(), loc); cur.ID == id {
				cur.virtual = true
				b = cur
				return nil
			}
		}
		return err
	})
	if err != nil {
		return Board{}, err
	}
	if !b.virtual {
		s.boardCache.Add(key, b)
	}
	return b, nil
}

// forgetBoard drops a board from the cache after it changed (frozen).
func (s *Service) forgetBoard(tenantID, id uuid.UUID) { s.boardCache.Remove(boardKey{tenantID, id}) }

// CurrentPeriods returns the company's period boards of the period
// containing now, with the instant of their next reset (EndsAt). The ids are
// valid even before anyone scored: such a board reads empty.
func (s *Service) CurrentPeriods(ctx context.Context, p rallye.Principal) ([]Board, error) {
	var out []Board
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		loc, err := s.location(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		now := s.now()
		for _, per := range Periods {
			out = append(out, periodBoard(p.TenantID, per, now, loc))
		}
		return nil
	})
	return out, err
}
