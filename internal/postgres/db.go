// Package postgres is Rallye's shared storage plumbing: the connection pool,
// tenant-scoped transactions (with row-level security), migrations and the
// translation of PostgreSQL errors. Domain packages own their SQL; they reach
// the database through DB.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB wraps the pool. Every statement touching company data runs inside
// InTenant (one company) or AcrossTenants (explicitly all of them): outside
// those the row-level security policies show no rows at all.
type DB struct {
	Pool *pgxpool.Pool
}

// Open connects a pool to url and checks that the server answers.
func Open(ctx context.Context, url string, maxConns int32) (*DB, error) {
	return OpenWith(ctx, url, PoolOptions{MaxConns: maxConns})
}

// PoolOptions adjust the pool OpenWith opens.
type PoolOptions struct {
	// MaxConns caps the pool (0: pgx's default).
	MaxConns int32
	// Tracer, when set, traces the pool's queries (OpenTelemetry).
	Tracer pgx.QueryTracer
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, url string, o PoolOptions) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.Tracer != nil {
		cfg.ConnConfig.Tracer = o.Tracer
	}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		RegisterTypes(c.TypeMap())
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres at %s does not answer: %w", redact(cfg.ConnConfig), err)
	}
	return &DB{Pool: pool}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

func redact(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// TxFunc is the body of a transaction.
type TxFunc func(tx pgx.Tx) error

// InTenant runs fn in a read-write transaction that sees only tenantID's rows.
// fn may run more than once when PostgreSQL reports a serialization failure
// or a deadlock, so it must have no effect outside the transaction.
func (db *DB) InTenant(ctx context.Context, tenantID uuid.UUID, fn TxFunc) error {
	if tenantID == uuid.Nil {
		return errors.New("postgres: InTenant without a tenant")
	}
	return db.run(ctx, pgx.TxOptions{}, tenantID.String(), false, fn)
}

// ReadTenant is InTenant for read-only work.
func (db *DB) ReadTenant(ctx context.Context, tenantID uuid.UUID, fn TxFunc) error {
	if tenantID == uuid.Nil {
		return errors.New("postgres: ReadTenant without a tenant")
	}
	return db.run(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly}, tenantID.String(), false, fn)
}

// AcrossTenants runs fn in a transaction that sees every company's rows. It is
// for operator commands, schedulers and credential look-ups only; call sites
// say why in a comment.
func (db *DB) AcrossTenants(ctx context.Context, fn TxFunc) error {
	return db.run(ctx, pgx.TxOptions{}, "", true, fn)
}

// maxAttempts bounds the runs of a transaction body. Conflicts between
// concurrent writers of the same rows (serialization failures,
// deadlocks) clear once one of them commits, but with many concurrent
// writers a run can meet a new one; the randomised backoff keeps them from
// colliding again in step.
const maxAttempts = 10

// unreachableFor bounds how long a transaction is retried while PostgreSQL
// cannot be reached (a restart, a failover): long enough to ride out a
// quick restart, short enough for the caller's own retry to take over.
const unreachableFor = 3 * time.Second

// run runs fn in a transaction, again after a serialization failure or a
// deadlock (up to maxAttempts) and after a lost connection (for up to
// unreachableFor), with jittered backoff. A connection lost during COMMIT is
// not retried: the transaction may have committed. What still fails for
// those reasons is returned as a CodeUnavailable error (see Unavailable).
func (db *DB) run(ctx context.Context, opts pgx.TxOptions, tenant string, all bool, fn TxFunc) error {
	var err error
	started := time.Now()
	for attempt := 1; ; attempt++ {
		err = db.runOnce(ctx, opts, tenant, all, fn)
		if err == nil || ctx.Err() != nil || !retryable(err, attempt, time.Since(started)) {
			break
		}
		backoff := time.Duration(min(attempt*attempt, 25)) * 5 * time.Millisecond
		if !conflict(err) {
			backoff = min(50*time.Millisecond<<min(attempt-1, 4), 500*time.Millisecond)
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
	return Unavailable(err)
}

// commitError marks an error of COMMIT itself: if the connection was lost
// then, the transaction may or may not have committed.
type commitError struct{ err error }

func (e commitError) Error() string { return "commit: " + e.err.Error() }
func (e commitError) Unwrap() error { return e.err }

func (db *DB) runOnce(ctx context.Context, opts pgx.TxOptions, tenant string, all bool, fn TxFunc) (err error) {
	tx, err := db.Pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	done := false
	defer func() {
		// Roll back on an error, and also when fn panics or its goroutine
		// exits (t.Fatal in a test): otherwise the connection stays held
		// mid-transaction and closing the pool hangs. Roll back even when
		// ctx is cancelled, or the connection would go back to the pool
		// mid-transaction.
		if err != nil || !done {
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = tx.Rollback(rbCtx)
		}
	}()
	allFlag := ""
	if all {
		allFlag = "on"
	}
	if _, err = tx.Exec(ctx, `SELECT set_config('rallye.tenant_id', $1, true), set_config('rallye.all_tenants', $2, true)`, tenant, allFlag); err != nil {
		return fmt.Errorf("scope transaction: %w", err)
	}
	if err = fn(tx); err != nil {
		return err
	}
	done = true
	if err = tx.Commit(ctx); err != nil {
		return commitError{err}
	}
	return nil
}

// conflict reports a serialization failure or a deadlock: PostgreSQL
// rolled the transaction back, and running it again may succeed.
func conflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

func retryable(err error, attempt int, elapsed time.Duration) bool {
	if conflict(err) {
		return attempt < maxAttempts
	}
	var ce commitError
	if errors.As(err, &ce) {
		return false // a server error answering COMMIT would be a conflict, handled above
	}
	// PostgreSQL rolls back the transaction of a lost connection: running
	// it again is safe.
	return IsUnavailable(err) && elapsed < unreachableFor
}
