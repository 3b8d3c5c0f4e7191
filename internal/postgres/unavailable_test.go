package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
	"github.com/rallyehq/rallye/internal/testutil/faultproxy"
)

// proxied opens a pool on a fresh database through a proxy the test cuts.
func proxied(t *testing.T) (*postgres.DB, *faultproxy.Proxy) {
	t.Helper()
	raw := testutil.DatabaseURL(t)
	proxy := faultproxy.Start(t, faultproxy.Target(raw))
	db, err := postgres.Open(context.Background(), proxy.URL(raw), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE notes (body text)`); err != nil {
		t.Fatal(err)
	}
	return db, proxy
}

func countNotes(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM notes`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func insertNote(runs *atomic.Int32) postgres.TxFunc {
	return func(tx pgx.Tx) error {
		runs.Add(1)
		_, err := tx.Exec(context.Background(), `INSERT INTO notes VALUES ('hello')`)
		return err
	}
}

func wantUnavailable(t *testing.T, err error, reason string) {
	t.Helper()
	e, ok := rallye.AsError(err)
	if !ok || e.Code != rallye.CodeUnavailable || e.Reason != reason || e.RetryAfter <= 0 {
		t.Fatalf("error %v, want unavailable with reason %s and a retry delay", err, reason)
	}
}

// TestTransactionRidesOutARestart: a transaction begun while PostgreSQL is
// out of reach waits for it (within the budget) and commits once; the pool
// reconnects.
func TestTransactionRidesOutARestart(t *testing.T) {
	t.Parallel()
	db, proxy := proxied(t)
	proxy.Cut()
	var runs atomic.Int32
	done := make(chan error, 1)
	go func() { done <- db.AcrossTenants(context.Background(), insertNote(&runs)) }()
	waitFor(t, "a refused connection", func() bool { return proxy.Refused() > 0 })
	proxy.Restore()
	if err := <-done; err != nil {
		t.Fatalf("the transaction failed across a restart: %v", err)
	}
	if n := countNotes(t, db); n != 1 {
		t.Fatalf("%d notes, want 1", n)
	}
}

// TestTransactionRerunsAfterALostConnection: the connection drops in the
// middle of a transaction (PostgreSQL rolled it back): it runs again and
// commits once.
func TestTransactionRerunsAfterALostConnection(t *testing.T) {
	t.Parallel()
	db, proxy := proxied(t)
	var runs atomic.Int32
	ready, resume := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.AcrossTenants(context.Background(), func(tx pgx.Tx) error {
			if err := insertNote(&runs)(tx); err != nil {
				return err
			}
			if runs.Load() == 1 {
				close(ready)
				<-resume
			}
			_, err := tx.Exec(context.Background(), `SELECT 1`)
			return err
		})
	}()
	<-ready
	proxy.Cut()
	proxy.Restore()
	close(resume)
	if err := <-done; err != nil {
		t.Fatalf("the transaction failed: %v", err)
	}
	if runs.Load() != 2 || countNotes(t, db) != 1 {
		t.Fatalf("%d runs, %d notes; want 2 runs and 1 note", runs.Load(), countNotes(t, db))
	}
}

// TestCommitLostIsNotRerun: the connection drops after COMMIT was sent:
// the transaction may have committed (here it did), so it is not run again
// and the caller gets unavailable, to retry idempotently.
func TestCommitLostIsNotRerun(t *testing.T) {
	t.Parallel()
	db, proxy := proxied(t)
	cut := proxy.CutWhenClientSends(faultproxy.PostgresCommit)
	var runs atomic.Int32
	err := db.AcrossTenants(context.Background(), insertNote(&runs))
	<-cut
	wantUnavailable(t, err, postgres.ReasonUnavailable)
	proxy.Restore()
	// The server may still be committing when the client learns it lost
	// the connection.
	waitFor(t, "the commit to land", func() bool { return countNotes(t, db) == 1 })
	if runs.Load() != 1 {
		t.Fatalf("%d runs, want 1", runs.Load())
	}
}

// TestUnreachableIsUnavailable: PostgreSQL stays away: after its budget the
// transaction gives up with unavailable, not an internal error.
func TestUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	db, proxy := proxied(t)
	proxy.Cut()
	var runs atomic.Int32
	start := time.Now()
	err := db.AcrossTenants(context.Background(), insertNote(&runs))
	wantUnavailable(t, err, postgres.ReasonUnavailable)
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("gave up after %s", took)
	}
	if runs.Load() != 0 {
		t.Fatalf("the body ran %d times without a connection", runs.Load())
	}
}

// TestConflictsAreRetriedThenUnavailable: a deadlock or serialization
// failure is retried a bounded number of times, then unavailable.
func TestConflictsAreRetriedThenUnavailable(t *testing.T) {
	t.Parallel()
	db := testutil.DB(t)
	for _, code := range []string{"40001", "40P01"} {
		t.Run(code, func(t *testing.T) {
			var runs atomic.Int32
			err := db.AcrossTenants(context.Background(), func(pgx.Tx) error {
				runs.Add(1)
				return &pgconn.PgError{Code: code}
			})
			wantUnavailable(t, err, postgres.ReasonContention)
			if runs.Load() != 10 {
				t.Fatalf("%d runs, want 10", runs.Load())
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != code {
				t.Fatalf("the cause is lost: %v", err)
			}
		})
	}
}
