package event

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

// flaky is a consumer that writes each change it applies to a table, in
// the feed's transaction (so that a rolled-back attempt leaves nothing),
// and fails on the versions in poison.
type flaky struct {
	mu     sync.Mutex
	poison map[uuid.UUID]bool
	// calls counts Consume calls that held a poisoned change.
	calls int
	// ruleErrorOn reports a rule error for the changes of this external id.
	ruleErrorOn string
}

func (c *flaky) Name() string { return "flaky" }

func (c *flaky) Consume(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []Change) (Applied, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out Applied
	for _, ch := range changes {
		if c.poison[ch.Event.VersionID] {
			c.calls++
			return Applied{}, fmt.Errorf("cannot apply version %s", ch.Event.VersionID)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO flaky_applied (tenant_id, seq, version_id, sign) VALUES ($1, $2, $3, $4)`,
			tenantID, ch.Seq, ch.Event.VersionID, ch.Sign); err != nil {
			return Applied{}, err
		}
		if ch.Event.ExternalID == c.ruleErrorOn {
			out.RuleErrors = append(out.RuleErrors, RuleError{Rule: "test rule", Seq: ch.Seq, Event: ch.Event, Err: errors.New("no such key")})
		}
	}
	return out, nil
}

func (c *flaky) setPoison(versions ...uuid.UUID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.poison = map[uuid.UUID]bool{}
	for _, v := range versions {
		c.poison[v] = true
	}
}

func (c *flaky) poisonCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

type appliedChange struct {
	seq     int64
	version uuid.UUID
	sign    int
}

// TestFeedRetryAndDeadLetters makes a consumer fail on one change: the
// batch is isolated, the change is retried with growing (jittered) waits
// while the company's later changes wait, then dead-lettered after the
// configured attempts; the later changes are applied, a later change of the
// same event version is parked behind it, and an operator's retry applies
// both exactly once. Each step checks the applied changes against an
// in-order consumer (the reference) and the metrics.
func TestFeedRetryAndDeadLetters(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE flaky_applied (tenant_id uuid, seq bigint, version_id uuid, sign smallint)`); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	bad := &flaky{ruleErrorOn: "a2"}
	ref := &countingConsumer{}
	feed := NewFeed(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	feed.Register(ref)
	feed.Register(bad)
	feed.Now = clock.now
	feed.Retry = RetryPolicy{MaxAttempts: 3, Base: time.Second, Max: 4 * time.Second}

	spend := func(id string, revision int64) Row {
		return Row{HasAmount: true, Event: Event{Source: "ads", ExternalID: id, Revision: revision, Type: MarketingSpend,
			OccurredAt: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Amount: 100 * revision, Currency: "EUR", Channel: "ads"}}
	}
	store := NewStore(db)
	send := func(rows ...Row) {
		t.Helper()
		if _, err := store.Ingest(ctx, rallye.Principal{TenantID: tenant.ID}, rows); err != nil {
			t.Fatal(err)
		}
	}
	versionOf := func(id string) uuid.UUID {
		t.Helper()
		var v uuid.UUID
		err := db.ReadTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT version_id FROM events WHERE external_id = $1`, id).Scan(&v)
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// applied reads what the flaky consumer applied, in order.
	applied := func() []appliedChange {
		t.Helper()
		rows, err := db.Pool.Query(ctx, `SELECT seq, version_id, sign FROM flaky_applied ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (appliedChange, error) {
			var a appliedChange
			var sign int16
			err := r.Scan(&a.seq, &a.version, &sign)
			a.sign = int(sign)
			return a, err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// expected is the reference consumer's changes minus the skipped ones.
	expected := func(skip ...int64) []appliedChange {
		var out []appliedChange
		for _, ch := range ref.seen {
			if !slices.Contains(skip, ch.Seq) {
				out = append(out, appliedChange{ch.Seq, ch.Event.VersionID, ch.Sign})
			}
		}
		return out
	}
	sameChanges := func(t *testing.T, got, want []appliedChange) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("the consumer applied %v, want %v", got, want)
		}
	}
	metric := func(name string) float64 {
		m := feed.metrics
		switch name {
		case "applied":
			return promtest.ToFloat64(m.applied.WithLabelValues("flaky"))
		case "failed":
			return promtest.ToFloat64(m.failed.WithLabelValues("flaky"))
		case "dead":
			return promtest.ToFloat64(m.deadLettered.WithLabelValues("flaky"))
		case "rules":
			return promtest.ToFloat64(m.ruleErrors.WithLabelValues("flaky"))
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	wantMetrics := func(t *testing.T, applied, failed, dead, rules float64) {
		t.Helper()
		got := [4]float64{metric("applied"), metric("failed"), metric("dead"), metric("rules")}
		if got != [4]float64{applied, failed, dead, rules} {
			t.Fatalf("metrics applied, failed, dead-lettered, rule errors = %v, want %v", got, [4]float64{applied, failed, dead, rules})
		}
	}
	lagOf := func(t *testing.T) ConsumerLag {
		t.Helper()
		lags, err := feed.Lag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return lags["flaky"]
	}
	var failedErr *ChangeFailedError

	// 1. Five events; the third cannot be applied.
	send(spend("a1", 1), spend("a2", 1), spend("a3", 1), spend("a4", 1), spend("a5", 1))
	poison := versionOf("a3")
	bad.setPoison(poison)
	_, err = feed.Drain(ctx, tenant.ID)
	if !errors.As(err, &failedErr) || failedErr.Attempts != 1 || failedErr.Consumer != "flaky" {
		t.Fatalf("first drain: %v", err)
	}
	poisonSeq := failedErr.Seq
	if wait := failedErr.RetryAt.Sub(clock.now()); wait < 500*time.Millisecond || wait > time.Second {
		t.Fatalf("first wait %s, want within [0.5s, 1s]", wait)
	}
	if len(ref.seen) != 5 {
		t.Fatalf("the other consumer applied %d changes: a failing consumer must not hold it back", len(ref.seen))
	}
	// The batch of five failed once, then the failing change alone.
	sameChanges(t, applied(), expected(poisonSeq, ref.seen[3].Seq, ref.seen[4].Seq))
	wantMetrics(t, 2, 1, 0, 1)
	if l := lagOf(t); l.Changes != 3 || l.Seconds < 0 || l.DeadLetters != 0 {
		t.Fatalf("lag %+v, want 3 changes", l)
	}

	// 2. Before its time, the change is not tried again.
	calls := bad.poisonCalls()
	if _, err := feed.Drain(ctx, tenant.ID); err != nil {
		t.Fatalf("drain during the backoff: %v", err)
	}
	if bad.poisonCalls() != calls {
		t.Fatal("the change was tried again before its backoff ended")
	}

	// 3. The second attempt waits longer.
	clock.set(failedErr.RetryAt)
	_, err = feed.Drain(ctx, tenant.ID)
	if !errors.As(err, &failedErr) || failedErr.Attempts != 2 {
		t.Fatalf("second drain: %v", err)
	}
	if wait := failedErr.RetryAt.Sub(clock.now()); wait < time.Second || wait > 2*time.Second {
		t.Fatalf("second wait %s, want within [1s, 2s]", wait)
	}
	wantMetrics(t, 2, 2, 0, 1)

	// 4. The third attempt is the last: the change is dead-lettered and the
	// later ones are applied in the same drain.
	clock.set(failedErr.RetryAt)
	_, err = feed.Drain(ctx, tenant.ID)
	if !errors.As(err, &failedErr) || failedErr.Attempts != 3 || !failedErr.RetryAt.IsZero() {
		t.Fatalf("third drain: %v", err)
	}
	sameChanges(t, applied(), expected(poisonSeq))
	wantMetrics(t, 4, 3, 1, 1)
	if l := lagOf(t); l.Changes != 0 || l.Seconds != 0 || l.DeadLetters != 1 {
		t.Fatalf("lag %+v, want caught up with 1 dead letter", l)
	}
	letters, err := DeadLetters(ctx, db, DeadLetterQuery{TenantID: tenant.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 || letters[0].Seq != poisonSeq || letters[0].State != "dead" || letters[0].Attempts != 3 ||
		letters[0].Event.ExternalID != "a3" || letters[0].Consumer != "flaky" {
		t.Fatalf("dead letters %+v", letters)
	}
	root := letters[0].ID
	checkPending(t, db, tenant.ID, true)
	checkCountedAt(t, db, tenant.ID, []string{"a1", "a2", "a4", "a5"})

	// 5. A correction of the dead-lettered event: its take-back waits behind
	// the dead letter (same version), its new version is applied.
	send(spend("a3", 2))
	if _, err := feed.Drain(ctx, tenant.ID); err != nil {
		t.Fatalf("drain after the correction: %v", err)
	}
	takeBack := ref.seen[5].Seq
	if ref.seen[5].Event.VersionID != poison || ref.seen[5].Sign != -1 {
		t.Fatalf("the correction's first change is %+v, want the take-back of the poisoned version", ref.seen[5])
	}
	sameChanges(t, applied(), expected(poisonSeq, takeBack))
	wantMetrics(t, 5, 3, 2, 1)
	letters, err = DeadLetters(ctx, db, DeadLetterQuery{TenantID: tenant.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 2 || letters[0].Seq != takeBack || letters[0].Follows != poisonSeq || letters[0].State != "dead" {
		t.Fatalf("dead letters %+v, want the take-back parked behind %d", letters, poisonSeq)
	}

	// 6. The follower cannot be retried before the change it follows; the
	// root brings it along, and each is applied exactly once.
	if _, err := RetryDeadLetter(ctx, db, letters[0].ID); rallye.ErrorCode(err) != rallye.CodeFailedPrecondition {
		t.Fatalf("retrying the follower first: %v", err)
	}
	bad.setPoison() // fixed
	n, err := RetryDeadLetter(ctx, db, root)
	if err != nil || n != 2 {
		t.Fatalf("retry: %d, %v", n, err)
	}
	if _, err := feed.Drain(ctx, tenant.ID); err != nil {
		t.Fatalf("drain of the retry: %v", err)
	}
	// Retried out of order, but each exactly once: the same multiset as the
	// reference's.
	got := applied()
	slices.SortFunc(got, func(a, b appliedChange) int { return int(a.seq - b.seq) })
	sameChanges(t, got, expected())
	wantMetrics(t, 7, 3, 2, 1)
	if _, err := RetryDeadLetter(ctx, db, root); rallye.ErrorCode(err) != rallye.CodeFailedPrecondition {
		t.Fatalf("a second retry: %v", err)
	}
	if _, err := feed.Drain(ctx, tenant.ID); err != nil {
		t.Fatal(err)
	}
	sameChanges(t, applied(), got)
	open, err := DeadLetters(ctx, db, DeadLetterQuery{TenantID: tenant.ID})
	if err != nil || len(open) != 0 {
		t.Fatalf("open dead letters after the retry: %v, %v", open, err)
	}
	all, err := DeadLetters(ctx, db, DeadLetterQuery{TenantID: tenant.ID, Resolved: true})
	if err != nil || len(all) != 2 || all[0].State != "retried" || all[1].State != "retried" {
		t.Fatalf("resolved dead letters: %+v, %v", all, err)
	}
	checkPending(t, db, tenant.ID, false)
	checkCountedAt(t, db, tenant.ID, []string{"a1", "a2", "a3", "a4", "a5"})

	// 7. Discarding: the change is never applied, and stops holding the
	// company's challenges back.
	send(spend("a6", 1))
	bad.setPoison(versionOf("a6"))
	for range 3 {
		_, err = feed.Drain(ctx, tenant.ID)
		if !errors.As(err, &failedErr) {
			t.Fatalf("drain: %v", err)
		}
		clock.set(clock.now().Add(time.Hour))
	}
	letters, err = DeadLetters(ctx, db, DeadLetterQuery{TenantID: tenant.ID})
	if err != nil || len(letters) != 1 {
		t.Fatalf("dead letters %+v, %v", letters, err)
	}
	if n, err := DiscardDeadLetter(ctx, db, letters[0].ID); err != nil || n != 1 {
		t.Fatalf("discard: %d, %v", n, err)
	}
	if _, err := RetryDeadLetter(ctx, db, letters[0].ID); rallye.ErrorCode(err) != rallye.CodeFailedPrecondition {
		t.Fatalf("retrying a discarded letter: %v", err)
	}
	if _, err := RetryDeadLetter(ctx, db, uuid.New()); rallye.ErrorCode(err) != rallye.CodeNotFound {
		t.Fatalf("retrying an unknown letter: %v", err)
	}
	checkPending(t, db, tenant.ID, false)
	sameChanges(t, applied(), got)
}

func checkPending(t *testing.T, db *postgres.DB, tenantID uuid.UUID, want bool) {
	t.Helper()
	var got bool
	err := db.ReadTenant(context.Background(), tenantID, func(tx pgx.Tx) error {
		var err error
		got, err = Pending(context.Background(), tx, tenantID, "flaky")
		return err
	})
	if err != nil || got != want {
		t.Fatalf("pending = %v (%v), want %v", got, err, want)
	}
}

// checkCountedAt checks that a replay for the consumer leaves out what it
// skipped: a computation started from it and then fed by the retry counts
// every change once.
func checkCountedAt(t *testing.T, db *postgres.DB, tenantID uuid.UUID, want []string) {
	t.Helper()
	var got []string
	err := db.ReadTenant(context.Background(), tenantID, func(tx pgx.Tx) error {
		pos, err := Cursor(context.Background(), tx, tenantID, "flaky")
		if err != nil {
			return err
		}
		var evs []Event
		if err := CountedAt(context.Background(), tx, tenantID, "flaky", pos, nil, func(e Event) error {
			evs = append(evs, e)
			return nil
		}); err != nil {
			return err
		}
		for _, e := range evs {
			got = append(got, e.ExternalID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("counted at the cursor: %v, want %v", got, want)
	}
}
