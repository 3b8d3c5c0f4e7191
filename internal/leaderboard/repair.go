package leaderboard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/rallye"
)

// Rebuilding. A board missing from Redis (never built, flushed, restarted,
// expired) is rebuilt from PostgreSQL under a lock held in Redis: the
// builder fills side keys chunk by chunk, then swaps them in atomically.
// While it runs, Publish writes every change to the side keys too, and each
// key keeps the highest version it saw, so no change made during the
// rebuild is lost whichever order things happen in.
const (
	rebuildChunk = 5000
	lockTTL      = 30 * time.Second // renewed by every chunk
	// readWait is how long a read waits for a rebuild before answering
	// Unavailable (a million-row board takes longer; it keeps building).
	readWait = 3 * time.Second
)

var (
	errBuilding = errors.New("leaderboard: another rebuild holds the lock")
	errLostLock = errors.New("leaderboard: rebuild lock lost (Redis flushed or lock expired)")
	errFrozen   = errors.New("leaderboard: board is frozen")
)

// Rebuild rebuilds a board's live ranking from PostgreSQL, even when Redis
// has it (operators: `rallye leaderboard rebuild`). For a frozen board it
// removes the live copy instead. It returns the number of participants.
func (s *Service) Rebuild(ctx context.Context, tenantID, boardID uuid.UUID) (int, error) {
	n, err := s.rebuild(ctx, tenantID, boardID)
	if errors.Is(err, errFrozen) {
		return 0, s.dropLive(ctx, boardID)
	}
	return n, err
}

// BoardsToRebuild lists the boards of a company (every company when tenantID
// is uuid.Nil) for the rebuild command.
func (s *Service) BoardsToRebuild(ctx context.Context, tenantID uuid.UUID) ([]Board, error) {
	var out []Board
	// Across tenants: an operator command over every company.
	err := s.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = collectBoards(tx.Query(ctx, `SELECT `+boardColumns+` FROM boards
			WHERE $1 = '00000000-0000-0000-0000-000000000000'::uuid OR tenant_id = $1 ORDER BY tenant_id, starts_at, id`, tenantID))
		return err
	})
	return out, err
}

func (s *Service) rebuild(ctx context.Context, tenantID, boardID uuid.UUID) (int, error) {
	var b Board
	if err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		b, err = getBoard(ctx, tx, tenantID, boardID)
		return err
	}); err != nil {
		return 0, err
	}
	if b.Frozen() {
		return 0, errFrozen
	}
	k := keysOf(s.keys, b.ID)
	token := uuid.NewString()
	ok, err := s.redis.SetNX(ctx, k.build, token, lockTTL).Result()
	if err != nil {
		return 0, fmt.Errorf("take rebuild lock: %w", err)
	}
	if !ok {
		return 0, errBuilding
	}
	release := func() {
		// Free the lock early on failure; it would expire anyway.
		ctx := context.WithoutCancel(ctx)
		if v, _ := s.redis.Get(ctx, k.build).Result(); v == token {
			s.redis.Del(ctx, k.build)
		}
	}
	if err := s.redis.Unlink(ctx, k.bz, k.bv).Err(); err != nil {
		release()
		return 0, err
	}
	total := 0
	after := uuid.Nil
	for {
		var rows []scoreRow
		err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
			r, err := tx.Query(ctx, `SELECT member_id, points, reached_at, members, version FROM board_scores
				WHERE tenant_id = $1 AND board_id = $2 AND member_id > $3 ORDER BY member_id LIMIT $4`,
				tenantID, b.ID, after, rebuildChunk)
			if err != nil {
				return err
			}
			rows, err = pgx.CollectRows(r, scanScoreRow)
			return err
		})
		if err != nil {
			release()
			return 0, fmt.Errorf("read board rows: %w", err)
		}
		if len(rows) > 0 {
			args := make([]any, 0, 2+3*len(rows))
			args = append(args, token, lockTTL.Milliseconds())
			for _, row := range rows {
				args = append(args, string(row.Member[:]), scoreArg(b.score(row)), row.Version)
			}
			res, err := eval(ctx, s.redis, scriptCall{script: buildScores, keys: []string{k.build, k.bz, k.bv}, args: args})
			if err != nil {
				release()
				return 0, fmt.Errorf("write rebuilt rows: %w", err)
			}
			if n, _ := res.(int64); n < 0 {
				return 0, errLostLock
			}
			total += len(rows)
			after = rows[len(rows)-1].Member
		}
		if len(rows) < rebuildChunk {
			break
		}
	}
	res, err := eval(ctx, s.redis, scriptCall{script: finishBuild,
		keys: []string{k.ready, k.z, k.v, k.build, k.bz, k.bv, k.live}, args: []any{token, s.ttlMillis(b, s.now())}})
	if err != nil {
		release()
		return 0, fmt.Errorf("swap rebuilt board: %w", err)
	}
	if n, _ := res.(int64); n != 1 {
		return 0, errLostLock
	}
	s.log.InfoContext(ctx, "leaderboard rebuilt", "tenant_id", tenantID, "board_id", b.ID, "participants", total)
	return total, nil
}

// ensureLive makes sure a board is in Redis, rebuilding it when it is not.
// Concurrent readers on this instance share one rebuild; readers on other
// instances wait for the lock holder. The rebuild outlives the request that
// started it. It returns errFrozen when the board turned out frozen.
func (s *Service) ensureLive(ctx context.Context, b Board) error {
	ch := s.rebuilds.DoChan(b.ID.String(), func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		_, err := s.rebuild(bctx, b.TenantID, b.ID)
		return nil, err
	})
	timer := time.NewTimer(readWait)
	defer timer.Stop()
	select {
	case res := <-ch:
		if !errors.Is(res.Err, errBuilding) {
			return res.Err
		}
	case <-timer.C:
		return unavailable()
	case <-ctx.Done():
		return ctx.Err()
	}
	// Another instance builds it: wait for the marker.
	k := keysOf(s.keys, b.ID)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			n, err := s.redis.Exists(ctx, k.ready).Result()
			if err != nil {
				return err
			}
			if n == 1 {
				return nil
			}
		case <-timer.C:
			return unavailable()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func unavailable() error {
	return &rallye.Error{Code: rallye.CodeUnavailable, Reason: "BOARD_REBUILDING",
		Message: "the ranking is being rebuilt; retry in a few seconds"}
}

// dropLive removes a board's live copy (frozen boards are read from
// PostgreSQL).
func (s *Service) dropLive(ctx context.Context, boardID uuid.UUID) error {
	k := keysOf(s.keys, boardID)
	return s.redis.Unlink(ctx, k.all()...).Err()
}

// RepairArgs is the job that copies a board's recent changes from
// PostgreSQL to Redis, healing Publish calls that failed after commit.
//
// Coalescing: a scoring transaction marks the board dirty (board_dirty) and
// inserts a job only when the mark is new. The job first deletes the mark,
// so a transaction that found the mark is one the job will see: it is
// either committed when the job reads, or in progress then, in which case
// the job follows up (WaitXID) until every such transaction has finished.
// A busy board thus has about one job per repairDelay, not one per change.
type RepairArgs struct {
	TenantID uuid.UUID `json:"tenant_id"`
	BoardID  uuid.UUID `json:"board_id"`
	// WaitXID, on a follow-up, is the transaction id below which every
	// transaction must have finished before the repair is complete.
	WaitXID int64 `json:"wait_xid,omitempty"`
}

// Kind implements river.JobArgs.
func (RepairArgs) Kind() string { return "leaderboard.repair" }

// repairDelay lets a burst of changes share one job (Deps.RepairDelay
// changes it).
const repairDelay = time.Second

// RepairWorker runs repair jobs.
type RepairWorker struct {
	river.WorkerDefaults[RepairArgs]
	svc *Service
}

// RepairWorker returns the worker to register with the job queue.
func (s *Service) RepairWorker() *RepairWorker { return &RepairWorker{svc: s} }

// Timeout implements river.Worker: a repair may rebuild a large board.
func (w *RepairWorker) Timeout(*river.Job[RepairArgs]) time.Duration { return 15 * time.Minute }

// Work implements river.Worker.
func (w *RepairWorker) Work(ctx context.Context, job *river.Job[RepairArgs]) error {
	followUp, err := w.svc.repair(ctx, job.Args)
	if err != nil || followUp == nil {
		return err
	}
	client, err := river.ClientFromContextSafely[pgx.Tx](ctx)
	if err != nil {
		return err
	}
	_, err = client.Insert(ctx, *followUp, &river.InsertOpts{ScheduledAt: w.svc.now().Add(w.svc.repairDelay)})
	return err
}

// repair syncs the rows of a board changed since its watermark and returns
// the follow-up job to run, if any.
func (s *Service) repair(ctx context.Context, a RepairArgs) (*RepairArgs, error) {
	var b Board
	var xmin, xmax, synced int64
	err := s.inTenant(ctx, a.TenantID, func(tx pgx.Tx) error {
		if a.WaitXID != 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `DELETE FROM board_dirty WHERE tenant_id = $1 AND board_id = $2`, a.TenantID, a.BoardID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("clear dirty mark: %w", err)
	}
	// The snapshot is read after the mark's deletion committed, and before
	// the rows: every transaction that saw the mark is committed (its rows
	// are read below) or listed as in progress in this snapshot.
	err = s.db.ReadTenant(ctx, a.TenantID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint
			FROM pg_current_snapshot() s`).Scan(&xmin, &xmax); err != nil {
			return err
		}
		var err error
		b, err = getBoard(ctx, tx, a.TenantID, a.BoardID)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT synced_xid FROM boards WHERE tenant_id = $1 AND id = $2`, a.TenantID, a.BoardID).Scan(&synced)
	})
	if rallye.ErrorCode(err) == rallye.CodeNotFound {
		return nil, nil // the company or board is gone
	}
	if err != nil {
		return nil, fmt.Errorf("read board: %w", err)
	}
	if b.Frozen() {
		return nil, s.dropLive(ctx, b.ID)
	}
	k := keysOf(s.keys, b.ID)
	live, err := s.redis.Exists(ctx, k.ready).Result()
	if err != nil {
		return nil, err
	}
	if live == 0 {
		if _, err := s.rebuild(ctx, b.TenantID, b.ID); err != nil && !errors.Is(err, errBuilding) {
			return nil, err
		}
	} else if err := s.syncSince(ctx, b, synced); err != nil {
		return nil, err
	}
	if err := s.inTenant(ctx, a.TenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE boards SET synced_xid = greatest(synced_xid, $3) WHERE tenant_id = $1 AND id = $2`,
			a.TenantID, a.BoardID, xmin)
		return err
	}); err != nil {
		return nil, fmt.Errorf("advance watermark: %w", err)
	}
	switch {
	case a.WaitXID == 0 && xmin == xmax: // nothing was in progress
		return nil, nil
	case a.WaitXID == 0:
		return &RepairArgs{TenantID: a.TenantID, BoardID: a.BoardID, WaitXID: xmax}, nil
	case xmin >= a.WaitXID:
		return nil, nil
	}
	return &a, nil
}

// syncSince copies rows written by transactions from xid on into Redis
// (keeping, per member, the highest version).
func (s *Service) syncSince(ctx context.Context, b Board, xid int64) error {
	return s.db.ReadTenant(ctx, b.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT member_id, points, reached_at, members, version FROM board_scores
			WHERE tenant_id = $1 AND board_id = $2 AND xact >= $3`, b.TenantID, b.ID, xid)
		if err != nil {
			return err
		}
		defer rows.Close()
		now := s.now()
		var batch []scoreRow
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			_, err := eval(ctx, s.redis, s.setCall(b, batch, false, now))
			batch = batch[:0]
			return err
		}
		for rows.Next() {
			row, err := scanScoreRow(rows)
			if err != nil {
				return err
			}
			batch = append(batch, row)
			if len(batch) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return flush()
	})
}

// SweepArgs is the periodic job that re-enqueues repairs whose job was lost
// and lets the live copies of boards whose period ended expire from Redis.
type SweepArgs struct{}

// Kind implements river.JobArgs.
func (SweepArgs) Kind() string { return "leaderboard.sweep" }

// SweepInterval is how often the sweep runs.
const SweepInterval = 5 * time.Minute

// SweepWorker runs the sweep.
type SweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	svc *Service
}

// SweepWorker returns the worker to register with the job queue.
func (s *Service) SweepWorker() *SweepWorker { return &SweepWorker{svc: s} }

// Work implements river.Worker.
func (w *SweepWorker) Work(ctx context.Context, _ *river.Job[SweepArgs]) error {
	s := w.svc
	var ended []uuid.UUID
	// Across tenants: housekeeping of every company's boards.
	err := s.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT tenant_id, board_id FROM board_dirty WHERE marked_at < now() - interval '1 minute'`)
		if err != nil {
			return err
		}
		var t, b uuid.UUID
		var params []river.InsertManyParams
		if _, err := pgx.ForEachRow(rows, []any{&t, &b}, func() error {
			params = append(params, river.InsertManyParams{Args: RepairArgs{TenantID: t, BoardID: b}})
			return nil
		}); err != nil {
			return err
		}
		if len(params) > 0 {
			if _, err := s.jobs.InsertManyTx(ctx, tx, params); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE board_dirty SET marked_at = now() WHERE marked_at < now() - interval '1 minute'`); err != nil {
				return err
			}
		}
		rows, err = tx.Query(ctx, `SELECT id FROM boards WHERE frozen_at IS NULL
			AND ends_at < now() - interval '1 hour' AND ends_at > now() - interval '30 days'`)
		if err != nil {
			return err
		}
		ended, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return err
	}
	pipe := s.redis.Pipeline()
	for _, id := range ended {
		k := keysOf(s.keys, id)
		for _, key := range []string{k.ready, k.z, k.v} {
			pipe.ExpireNX(ctx, key, endedTTL)
		}
	}
	if len(ended) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("expire ended boards: %w", err)
		}
	}
	return nil
}
