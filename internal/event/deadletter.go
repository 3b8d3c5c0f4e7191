package event

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// RetryPolicy says how the feed retries a change a consumer fails to apply.
type RetryPolicy struct {
	// MaxAttempts is how many times the change is tried before it moves to
	// the dead letters.
	MaxAttempts int
	// Base is the wait after the first failure; it doubles after each
	// further one, up to Max. Each wait is jittered down to half of it, so
	// that instances and companies do not retry in step.
	Base, Max time.Duration
}

// DefaultRetry tries a change 8 times over about two minutes.
var DefaultRetry = RetryPolicy{MaxAttempts: 8, Base: time.Second, Max: 5 * time.Minute}

func (p RetryPolicy) attempts() int {
	if p.MaxAttempts <= 0 {
		return DefaultRetry.MaxAttempts
	}
	return p.MaxAttempts
}

// Delay returns the wait after the attempt-th failure (1 for the first).
func (p RetryPolicy) Delay(attempt int) time.Duration {
	base, ceiling := p.Base, p.Max
	if base <= 0 {
		base = DefaultRetry.Base
	}
	if ceiling < base {
		ceiling = max(base, DefaultRetry.Max)
	}
	d := base
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d/2 + rand.N(d/2+1)
}

// Open dead-letter states; a letter then ends "retried" (applied by a
// retry, exactly once) or "discarded" (never applied).
const (
	// deadWaiting: skipped; an operator may retry or discard it.
	deadWaiting = "dead"
	// deadRetrying: an operator asked for a retry; the feed applies it.
	deadRetrying = "retrying"
)

// maxErrorText bounds the error text kept with a failure.
const maxErrorText = 2000

func errorText(err error) string {
	s := err.Error()
	if len(s) > maxErrorText {
		s = s[:maxErrorText] + "…"
	}
	return s
}

// recordFailure notes a failed attempt of ch (the consumer's writes were
// rolled back to the savepoint), or moves ch to the dead letters when it has
// used its attempts; the transaction commits either way.
func (f *Feed) recordFailure(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string, ch Change,
	st cursorState, now time.Time, cause error, res *stepResult) error {
	attempts, first := 1, now
	if st.failure != nil && st.failure.seq == ch.Seq {
		attempts, first = st.failure.attempts+1, st.failure.firstFailed
	}
	res.failed = &ChangeFailedError{Consumer: consumer, Seq: ch.Seq, Attempts: attempts, Err: cause}
	if attempts >= f.Retry.attempts() {
		_, err := tx.Exec(ctx, `INSERT INTO feed_dead_letters (tenant_id, id, consumer, seq, version_id, sign, state,
				attempts, error, first_failed_at, dead_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'dead', $7, $8, $9, $10)`,
			tenantID, uuid.Must(uuid.NewV7()), consumer, ch.Seq, ch.Event.VersionID, int16(ch.Sign), attempts,
			errorText(cause), first, now)
		if err != nil {
			return fmt.Errorf("dead-letter change: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM feed_failures WHERE tenant_id = $1 AND consumer = $2`, tenantID, consumer); err != nil {
			return fmt.Errorf("clear failure: %w", err)
		}
		res.read = 1
		return advance(ctx, tx, tenantID, consumer, ch.Seq)
	}
	res.failed.RetryAt = now.Add(f.Retry.Delay(attempts))
	_, err := tx.Exec(ctx, `INSERT INTO feed_failures (tenant_id, consumer, seq, attempts, error, first_failed_at, next_attempt_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (tenant_id, consumer) DO UPDATE SET seq = excluded.seq, attempts = excluded.attempts,
			error = excluded.error, first_failed_at = excluded.first_failed_at, next_attempt_at = excluded.next_attempt_at`,
		tenantID, consumer, ch.Seq, attempts, errorText(cause), first, res.failed.RetryAt)
	if err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}

// park moves ch to the dead letters behind the open dead letter of its
// version: a version's changes are applied in order or not at all.
func park(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string, ch Change, pv parkedVersion, now time.Time) error {
	_, err := tx.Exec(ctx, `INSERT INTO feed_dead_letters (tenant_id, id, consumer, seq, version_id, sign, state, follows,
			attempts, error, first_failed_at, dead_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $10)`,
		tenantID, uuid.Must(uuid.NewV7()), consumer, ch.Seq, ch.Event.VersionID, int16(ch.Sign), pv.state, pv.follows,
		fmt.Sprintf("waits behind change %d of the same event version", pv.follows), now)
	if err != nil {
		return fmt.Errorf("park change: %w", err)
	}
	return nil
}

// retryDeadLetter applies the earliest dead letter an operator asked to
// retry, and marks it retried in the same transaction: exactly once. When
// the consumer fails again, the letter (and those of its version waiting
// behind it) go back to dead with the new error.
func (f *Feed) retryDeadLetter(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, c Consumer, applied *Applied, n *int, res *stepResult) error {
	var id uuid.UUID
	var seq int64
	var version uuid.UUID
	var attempts int
	err := tx.QueryRow(ctx, `SELECT id, seq, version_id, attempts FROM feed_dead_letters
		WHERE tenant_id = $1 AND consumer = $2 AND state = 'retrying' ORDER BY seq LIMIT 1 FOR UPDATE`,
		tenantID, c.Name()).Scan(&id, &seq, &version, &attempts)
	if err != nil {
		return fmt.Errorf("read dead letter: %w", err)
	}
	changes, err := readChanges(ctx, tx, tenantID, seq-1, 1)
	if err != nil {
		return err
	}
	if len(changes) != 1 || changes[0].Seq != seq {
		return fmt.Errorf("dead letter %s: change %d is not in the feed", id, seq)
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	a, cerr := c.Consume(ctx, sp, tenantID, changes)
	if cerr == nil {
		cerr = sp.Commit(ctx)
	}
	if cerr == nil {
		*applied, *n = a, 1
		_, err := tx.Exec(ctx, `UPDATE feed_dead_letters SET state = 'retried', attempts = attempts + 1, resolved_at = now()
			WHERE tenant_id = $1 AND id = $2`, tenantID, id)
		return err
	}
	_ = sp.Rollback(ctx)
	if transient(ctx, cerr) {
		return cerr
	}
	res.failed = &ChangeFailedError{Consumer: c.Name(), Seq: seq, Attempts: attempts + 1, Err: cerr, retry: true}
	if _, err := tx.Exec(ctx, `UPDATE feed_dead_letters SET state = 'dead', attempts = attempts + 1, error = $3, dead_at = now()
		WHERE tenant_id = $1 AND id = $2`, tenantID, id, errorText(cerr)); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE feed_dead_letters SET state = 'dead'
		WHERE tenant_id = $1 AND consumer = $2 AND version_id = $3 AND state = 'retrying'`, tenantID, c.Name(), version)
	return err
}

// DeadLetter is a change a consumer skipped: it kept failing, or it waits
// behind one of its event version that did.
type DeadLetter struct {
	ID       uuid.UUID
	TenantID uuid.UUID
	Consumer string
	Seq      int64
	Sign     int
	// State is dead, retrying, retried or discarded.
	State string
	// Follows is the seq of the failing change this one waits behind (0
	// when it failed itself).
	Follows  int64
	Attempts int
	// Error is the consumer's last error, for operators (it may name
	// internals: it is not shown to API callers).
	Error       string
	FirstFailed time.Time
	Dead        time.Time
	// Resolved is when it was retried or discarded (zero while open).
	Resolved time.Time
	// Event is the event version the change gives or takes back.
	Event Event
}

// Open reports whether the letter still waits for an operator.
func (d DeadLetter) Open() bool { return d.State == deadWaiting || d.State == deadRetrying }

// DeadLetterQuery selects dead letters.
type DeadLetterQuery struct {
	// TenantID restricts to one company; uuid.Nil lists every company
	// (operator commands only).
	TenantID uuid.UUID
	// Consumer restricts to one consumer ("" for all).
	Consumer string
	// Resolved includes retried and discarded letters.
	Resolved bool
	Size     int
	Cursor   page.Cursor
}

const deadLetterColumns = `d.id, d.tenant_id, d.consumer, d.seq, d.sign, d.state, d.follows, d.attempts, d.error,
	d.first_failed_at, d.dead_at, d.resolved_at`

func scanDeadLetter(r pgx.Row) (DeadLetter, error) {
	var d DeadLetter
	var sign int16
	var resolved *time.Time
	err := scanVersion(r, &d.Event, &d.ID, &d.TenantID, &d.Consumer, &d.Seq, &sign, &d.State, &d.Follows, &d.Attempts,
		&d.Error, &d.FirstFailed, &d.Dead, &resolved)
	d.Sign = int(sign)
	d.Event.TenantID = d.TenantID
	if resolved != nil {
		d.Resolved = *resolved
	}
	return d, err
}

// DeadLetters lists dead letters, newest first, with the event version of
// each.
func DeadLetters(ctx context.Context, db *postgres.DB, q DeadLetterQuery) ([]DeadLetter, error) {
	size := q.Size
	if size <= 0 {
		size = page.DefaultSize
	}
	after := q.Cursor.After
	if after == uuid.Nil {
		after = uuid.Max
	}
	var out []DeadLetter
	read := func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+deadLetterColumns+`, `+versionColumns+`
			FROM feed_dead_letters d
			JOIN event_versions v ON v.tenant_id = d.tenant_id AND v.id = d.version_id
			WHERE ($1 = '00000000-0000-0000-0000-000000000000'::uuid OR d.tenant_id = $1)
			  AND ($2 = '' OR d.consumer = $2) AND ($3 OR d.state IN ('dead', 'retrying')) AND d.id < $4
			ORDER BY d.id DESC LIMIT $5`, q.TenantID, q.Consumer, q.Resolved, after, size)
		if err != nil {
			return fmt.Errorf("list dead letters: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) { return scanDeadLetter(r) })
		return err
	}
	var err error
	if q.TenantID != uuid.Nil {
		err = db.ReadTenant(ctx, q.TenantID, read)
	} else {
		// Across tenants: `rallye feed dead-letters` without --tenant.
		err = db.AcrossTenants(ctx, read)
	}
	return out, err
}

// RetryDeadLetter asks the feed to apply a dead letter again, with the
// letters of the same event version that wait behind it; the servers apply
// them at once (they are notified), each exactly once. It returns how many
// letters it queued. Operator command: across companies.
//
// Errors: CodeNotFound for an unknown id; CodeFailedPrecondition when the
// letter is not dead (already retried, discarded or queued) or an earlier
// change of its event version is still dead (retry that one: it brings this
// one along).
func RetryDeadLetter(ctx context.Context, db *postgres.DB, id uuid.UUID) (int, error) {
	var n int
	err := db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		d, err := lockDeadLetter(ctx, tx, id)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE feed_dead_letters SET state = 'retrying'
			WHERE tenant_id = $1 AND consumer = $2 AND version_id = $3 AND state = 'dead' AND seq >= $4`,
			d.TenantID, d.Consumer, d.versionID, d.Seq)
		if err != nil {
			return fmt.Errorf("queue retry: %w", err)
		}
		n = int(tag.RowsAffected())
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, FeedChannel, d.TenantID.String())
		return err
	})
	return n, err
}

// DiscardDeadLetter gives up a dead letter for good, with the letters of
// the same event version that wait behind it (they cannot apply without
// it). It returns how many it discarded. Operator command: across
// companies. Errors as RetryDeadLetter.
func DiscardDeadLetter(ctx context.Context, db *postgres.DB, id uuid.UUID) (int, error) {
	var n int
	err := db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		d, err := lockDeadLetter(ctx, tx, id)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE feed_dead_letters SET state = 'discarded', resolved_at = now()
			WHERE tenant_id = $1 AND consumer = $2 AND version_id = $3 AND state = 'dead' AND seq >= $4`,
			d.TenantID, d.Consumer, d.versionID, d.Seq)
		if err != nil {
			return fmt.Errorf("discard: %w", err)
		}
		n = int(tag.RowsAffected())
		return nil
	})
	return n, err
}

type lockedLetter struct {
	DeadLetter
	versionID uuid.UUID
}

func lockDeadLetter(ctx context.Context, tx pgx.Tx, id uuid.UUID) (lockedLetter, error) {
	var d lockedLetter
	err := tx.QueryRow(ctx, `SELECT tenant_id, consumer, seq, version_id, state FROM feed_dead_letters WHERE id = $1 FOR UPDATE`,
		id).Scan(&d.TenantID, &d.Consumer, &d.Seq, &d.versionID, &d.State)
	if postgres.IsNoRows(err) {
		return d, rallye.NotFound("dead letter")
	}
	if err != nil {
		return d, fmt.Errorf("read dead letter: %w", err)
	}
	if d.State != deadWaiting {
		return d, rallye.Errorf(rallye.CodeFailedPrecondition, "dead letter %s is %s, not dead", id, d.State)
	}
	var earlier int64
	err = tx.QueryRow(ctx, `SELECT coalesce(min(seq), 0) FROM feed_dead_letters
		WHERE tenant_id = $1 AND consumer = $2 AND version_id = $3 AND state IN ('dead', 'retrying') AND seq < $4`,
		d.TenantID, d.Consumer, d.versionID, d.Seq).Scan(&earlier)
	if err != nil {
		return d, fmt.Errorf("read dead letters of the version: %w", err)
	}
	if earlier != 0 {
		return d, rallye.Errorf(rallye.CodeFailedPrecondition,
			"change %d of the same event version is still dead-lettered: act on it first (this one follows it)", earlier)
	}
	return d, nil
}

// DeadLetters lists the dead letters of the caller's company (the admin
// RPC; rules.go allows admins only).
func (s *Store) DeadLetters(ctx context.Context, p rallye.Principal, q DeadLetterQuery) ([]DeadLetter, error) {
	q.TenantID = p.TenantID
	if q.TenantID == uuid.Nil {
		return nil, rallye.Errorf(rallye.CodePermissionDenied, "dead letters belong to a company")
	}
	q.Size = page.Size(int32(q.Size))
	return DeadLetters(ctx, s.db, q)
}
