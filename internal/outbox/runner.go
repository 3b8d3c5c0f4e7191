package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
)

// Handler applies one message inside tx, the transaction that also advances
// the consumer's cursor. It returns work to run after commit (publishing to
// Redis), or nil. An error rolls the transaction back; the message is tried
// again with backoff, and dead-lettered after the runner's MaxAttempts.
type Handler func(ctx context.Context, tx pgx.Tx, d Delivery) (func(context.Context), error)

// Consumer is a named reader of the outbox.
type Consumer struct {
	// Name identifies the consumer's cursors. Renaming a consumer replays
	// the outbox to it (or skips it, with FromNow).
	Name string
	// Kinds are the kinds handled; the cursor moves past the others.
	// Empty: every kind.
	Kinds []Kind
	// FromNow starts a company's cursor at its newest message the first
	// time the consumer meets the company, instead of at the beginning:
	// for consumers whose effects are only useful fresh (notifications).
	FromNow bool
	Handle  Handler
}

// Runner delivers a company's messages to the registered consumers: woken by
// PostgreSQL notifications, with a periodic sweep as the safety net for a
// notification lost while no instance listened.
type Runner struct {
	db  *postgres.DB
	log *slog.Logger

	consumers []Consumer
	// BatchSize bounds the messages handled per transaction.
	BatchSize int
	// MaxAttempts is how many times a failing message is tried before it
	// is dead-lettered.
	MaxAttempts int
	// Backoff is the wait before the n-th retry (n from 1).
	Backoff func(n int) time.Duration
	// SweepInterval is how often every company with pending messages is
	// drained whatever the notifications.
	SweepInterval time.Duration
	// Now is the clock (time.Now by default).
	Now func() time.Time

	mu      sync.Mutex
	dirty   map[uuid.UUID]bool
	running map[uuid.UUID]bool
	wake    chan struct{}
}

// Defaults of a Runner.
const (
	DefaultBatchSize     = 200
	DefaultMaxAttempts   = 10
	DefaultSweepInterval = 30 * time.Second
)

// DefaultBackoff doubles from one second up to five minutes: ten attempts
// span about ten minutes, long enough for a dependency to come back.
func DefaultBackoff(n int) time.Duration {
	d := time.Second << min(n-1, 9)
	return min(d, 5*time.Minute)
}

// NewRunner returns a runner without consumers.
func NewRunner(db *postgres.DB, log *slog.Logger) *Runner {
	return &Runner{
		db: db, log: log, BatchSize: DefaultBatchSize, MaxAttempts: DefaultMaxAttempts, Backoff: DefaultBackoff,
		SweepInterval: DefaultSweepInterval, Now: time.Now,
		dirty: map[uuid.UUID]bool{}, running: map[uuid.UUID]bool{}, wake: make(chan struct{}, 1),
	}
}

// Register adds a consumer. Call it before Run.
func (r *Runner) Register(c Consumer) {
	if c.Name == "" || c.Handle == nil {
		panic("outbox: a consumer needs a name and a handler")
	}
	r.consumers = append(r.consumers, c)
}

func (r *Runner) names() []string {
	out := make([]string, len(r.consumers))
	for i, c := range r.consumers {
		out[i] = c.Name
	}
	return out
}

// Drain runs every consumer of a company until it has caught up or is
// waiting for a retry. It reports pending when another instance holds one of
// the consumers: the caller tries again shortly.
func (r *Runner) Drain(ctx context.Context, tenantID uuid.UUID) (pending bool, err error) {
	var errs []error
	for _, c := range r.consumers { // a failing consumer does not hold the others back
		for {
			n, wait, err := r.step(ctx, tenantID, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("outbox consumer %s: %w", c.Name, err))
				break
			}
			if n == 0 {
				pending = pending || wait
				break
			}
		}
	}
	return pending, errors.Join(errs...)
}

// handlerError is a handler's failure on the message at seq.
type handlerError struct {
	seq  int64
	kind Kind
	// first: the message was the first after the cursor, so the failure is
	// its own (not a batch's).
	first bool
	err   error
}

func (e *handlerError) Error() string {
	return fmt.Sprintf("message %d (%s): %v", e.seq, e.kind, e.err)
}
func (e *handlerError) Unwrap() error { return e.err }

// step handles one batch of a consumer: it returns how many messages it
// read, and whether another instance holds the consumer. A failed message
// waiting for its retry is neither: a timer wakes the company up.
func (r *Runner) step(ctx context.Context, tenantID uuid.UUID, c Consumer) (read int, wait bool, err error) {
	var after []func(context.Context)
	err = r.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		read, wait, after = 0, false, nil
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey(tenantID, c.Name)).Scan(&got); err != nil {
			return err
		}
		if !got {
			wait = true
			return nil
		}
		var seq int64
		var failures int
		var retryAt *time.Time
		err := tx.QueryRow(ctx, `SELECT seq, failures, retry_at FROM outbox_cursors WHERE tenant_id = $1 AND consumer = $2`,
			tenantID, c.Name).Scan(&seq, &failures, &retryAt)
		switch {
		case postgres.IsNoRows(err) && c.FromNow:
			_, err = tx.Exec(ctx, `INSERT INTO outbox_cursors (tenant_id, consumer, seq)
				SELECT $1, $2, coalesce(max(seq), 0) FROM outbox_messages WHERE tenant_id = $1`, tenantID, c.Name)
			return err
		case postgres.IsNoRows(err):
		case err != nil:
			return fmt.Errorf("read cursor: %w", err)
		}
		if retryAt != nil && r.Now().Before(*retryAt) {
			// Backing off: the timer set when the failure was recorded
			// wakes the company up (this one covers another instance's).
			r.retryLater(ctx, tenantID, retryAt.Sub(r.Now()))
			return nil
		}
		limit := r.BatchSize
		if failures > 0 { // find the failing message: one at a time
			limit = 1
		}
		ds, err := readMessages(ctx, tx, tenantID, seq, limit)
		if err != nil || len(ds) == 0 {
			return err
		}
		for i, d := range ds {
			if len(c.Kinds) > 0 && !slices.Contains(c.Kinds, d.Kind) {
				continue
			}
			fn, err := c.Handle(ctx, tx, d)
			if err != nil {
				return &handlerError{seq: d.Seq, kind: d.Kind, first: i == 0, err: err}
			}
			if fn != nil {
				after = append(after, fn)
			}
		}
		read = len(ds)
		_, err = tx.Exec(ctx, `INSERT INTO outbox_cursors (tenant_id, consumer, seq, updated_at)
			VALUES ($1, $2, $3, now())
			ON CONFLICT (tenant_id, consumer) DO UPDATE SET seq = excluded.seq, failures = 0, retry_at = NULL,
				last_error = NULL, updated_at = now()`,
			tenantID, c.Name, ds[len(ds)-1].Seq)
		return err
	})
	var he *handlerError
	if errors.As(err, &he) && ctx.Err() == nil {
		if rerr := r.recordFailure(ctx, tenantID, c, he); rerr != nil {
			return 0, false, errors.Join(err, rerr)
		}
		return 0, false, nil // retried after the backoff, not an error of the drain
	}
	if err == nil {
		for _, fn := range after {
			fn(ctx)
		}
	}
	return read, wait, err
}

// recordFailure counts a failure. A message that failed first after the
// cursor waits for its backoff and, once it failed MaxAttempts times, is
// dead-lettered and the cursor moves past it. A failure further in a batch
// is retried at once a message at a time, which isolates the culprit while
// the messages before it are applied.
func (r *Runner) recordFailure(ctx context.Context, tenantID uuid.UUID, c Consumer, he *handlerError) error {
	r.log.Warn("outbox consumer failed; will retry", "consumer", c.Name, "tenant_id", tenantID,
		"seq", he.seq, "kind", he.kind, "error", he.err)
	var retryIn time.Duration
	err := r.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		retryIn = 0
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(tenantID, c.Name)); err != nil {
			return err
		}
		var seq int64
		var failures int
		err := tx.QueryRow(ctx, `SELECT seq, failures FROM outbox_cursors WHERE tenant_id = $1 AND consumer = $2`,
			tenantID, c.Name).Scan(&seq, &failures)
		if err != nil && !postgres.IsNoRows(err) {
			return err
		}
		msg := he.err.Error()
		if len(msg) > 2000 {
			msg = msg[:2000]
		}
		next, err := readMessages(ctx, tx, tenantID, seq, 1)
		if err != nil {
			return err
		}
		if len(next) == 0 || next[0].Seq > he.seq {
			return nil // another instance moved the cursor meanwhile
		}
		var retryAt *time.Time
		if he.first && next[0].Seq == he.seq {
			failures++
			if failures >= r.MaxAttempts {
				if _, err := tx.Exec(ctx, `INSERT INTO outbox_dead_letters (tenant_id, consumer, seq, kind, attempts, error)
					VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
					tenantID, c.Name, he.seq, string(he.kind), failures, msg); err != nil {
					return err
				}
				r.log.Error("outbox message dead-lettered", "consumer", c.Name, "tenant_id", tenantID,
					"seq", he.seq, "kind", he.kind, "attempts", failures, "error", msg)
				_, err = tx.Exec(ctx, `INSERT INTO outbox_cursors (tenant_id, consumer, seq) VALUES ($1, $2, $3)
					ON CONFLICT (tenant_id, consumer) DO UPDATE SET seq = excluded.seq, failures = 0, retry_at = NULL,
						last_error = NULL, updated_at = now()`, tenantID, c.Name, he.seq)
				return err
			}
			retryIn = r.Backoff(failures)
			at := r.Now().Add(retryIn)
			retryAt = &at
		} else {
			failures = max(failures, 1) // one at a time from now on, at once
		}
		_, err = tx.Exec(ctx, `INSERT INTO outbox_cursors (tenant_id, consumer, seq, failures, retry_at, last_error)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, consumer) DO UPDATE SET failures = excluded.failures, retry_at = excluded.retry_at,
				last_error = excluded.last_error, updated_at = now()`,
			tenantID, c.Name, seq, failures, retryAt, msg)
		return err
	})
	if err == nil {
		r.retryLater(ctx, tenantID, retryIn)
	}
	return err
}

func readMessages(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, after int64, limit int) ([]Delivery, error) {
	rows, err := tx.Query(ctx, `SELECT seq, id, kind, coalesce(key, ''), subject_ids, payload, occurred_at
		FROM outbox_messages WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, tenantID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Delivery, error) {
		d := Delivery{TenantID: tenantID}
		err := row.Scan(&d.Seq, &d.ID, &d.Kind, &d.Key, &d.Subjects, &d.Payload, &d.OccurredAt)
		return d, err
	})
}

// Notify marks a company as having messages, for Run to drain.
func (r *Runner) Notify(tenantID uuid.UUID) {
	r.mu.Lock()
	r.dirty[tenantID] = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run delivers messages until ctx ends: it listens on Channel, sweeps every
// SweepInterval, and drains companies with workers goroutines.
func (r *Runner) Run(ctx context.Context, workers int) {
	if len(r.consumers) == 0 {
		<-ctx.Done()
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.listen(ctx) })
	wg.Go(func() { r.sweep(ctx) })
	for range max(workers, 1) {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Wait()
}

func (r *Runner) listen(ctx context.Context) {
	for ctx.Err() == nil {
		if err := r.listenOnce(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox notifications interrupted; reconnecting", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (r *Runner) listenOnce(ctx context.Context) error {
	conn, err := r.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+Channel); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `UNLISTEN `+Channel) }()
	// What was appended before we listened: checked after subscribing, so
	// no wake-up falls between the two.
	r.markPending(ctx)
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if id, err := uuid.Parse(n.Payload); err == nil {
			r.Notify(id)
		}
	}
}

func (r *Runner) sweep(ctx context.Context) {
	t := time.NewTicker(r.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.markPending(ctx)
		}
	}
}

// markPending marks the companies where some consumer is behind.
func (r *Runner) markPending(ctx context.Context) {
	var ids []uuid.UUID
	// Across tenants: the sweep looks for every company's pending messages.
	err := r.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT t.id FROM tenants t CROSS JOIN unnest($1::text[]) AS c(name)
			WHERE EXISTS (SELECT 1 FROM outbox_messages m WHERE m.tenant_id = t.id AND m.seq > coalesce(
				(SELECT k.seq FROM outbox_cursors k WHERE k.tenant_id = t.id AND k.consumer = c.name), 0))
			GROUP BY t.id`, r.names())
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("outbox sweep failed", "error", err)
		}
		return
	}
	for _, id := range ids {
		r.Notify(id)
	}
}

// take returns a dirty company no worker of this instance is draining.
func (r *Runner) take() (uuid.UUID, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.dirty {
		if !r.running[id] {
			delete(r.dirty, id)
			r.running[id] = true
			if len(r.dirty) > 0 {
				select {
				case r.wake <- struct{}{}:
				default:
				}
			}
			return id, true
		}
	}
	return uuid.Nil, false
}

func (r *Runner) done(id uuid.UUID) {
	r.mu.Lock()
	delete(r.running, id)
	again := len(r.dirty) > 0
	r.mu.Unlock()
	if again {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

func (r *Runner) work(ctx context.Context) {
	for {
		id, ok := r.take()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		pending, err := r.Drain(ctx, id)
		r.done(id)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.log.Error("outbox drain failed; will retry", "tenant_id", id, "error", err)
			r.retryLater(ctx, id, time.Second)
		case pending:
			// Held by another instance: it drains the company; check
			// again soon in case it stopped half-way.
			r.retryLater(ctx, id, 100*time.Millisecond)
		}
	}
}

func (r *Runner) retryLater(ctx context.Context, id uuid.UUID, d time.Duration) {
	time.AfterFunc(d, func() {
		if ctx.Err() == nil {
			r.Notify(id)
		}
	})
}
