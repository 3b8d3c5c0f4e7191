package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/testutil"
)

type bundle struct {
	db      *postgres.DB
	tenants []uuid.UUID
}

// setup returns a fresh database with companies and an "applied" table the
// test consumers write to in their transaction.
func setup(t *testing.T, companies int) bundle {
	t.Helper()
	db := testutil.DB(t)
	ctx := context.Background()
	b := bundle{db: db}
	err := db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		for i := range companies {
			id := uuid.Must(uuid.NewV7())
			if _, err := tx.Exec(ctx, `INSERT INTO tenants (id, name, slug, time_zone, default_locale) VALUES ($1, $2, $3, 'Europe/Paris', 'fr')`,
				id, fmt.Sprintf("Co %d", i), fmt.Sprintf("co-%d", i)); err != nil {
				return err
			}
			b.tenants = append(b.tenants, id)
		}
		_, err := tx.Exec(ctx, `CREATE TABLE applied (tenant_id uuid, consumer text, n int, seq bigint, PRIMARY KEY (tenant_id, consumer, n))`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type payload struct {
	N      int  `json:"n"`
	Poison bool `json:"poison,omitempty"`
}

// recorder is a consumer writing each message's number to "applied" in the
// consumer's transaction: a message applied twice violates the primary key.
func recorder(name string) outbox.Consumer {
	return outbox.Consumer{Name: name, Handle: func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) (func(context.Context), error) {
		var p payload
		if err := d.Decode(&p); err != nil {
			return nil, err
		}
		_, err := tx.Exec(ctx, `INSERT INTO applied (tenant_id, consumer, n, seq) VALUES ($1, $2, $3, $4)`, d.TenantID, name, p.N, d.Seq)
		return nil, err
	}}
}

func (b bundle) appendN(t *testing.T, tenant uuid.UUID, from, n int, commit bool) {
	t.Helper()
	ctx := context.Background()
	errRollback := errors.New("rollback")
	err := b.db.InTenant(ctx, tenant, func(tx pgx.Tx) error {
		var msgs []outbox.Message
		for i := from; i < from+n; i++ {
			msgs = append(msgs, outbox.Message{TenantID: tenant, Kind: "test.thing", Payload: payload{N: i}, OccurredAt: time.Now()})
		}
		if err := outbox.Append(ctx, tx, msgs...); err != nil {
			return err
		}
		if !commit {
			return errRollback
		}
		return nil
	})
	if err != nil && !(errors.Is(err, errRollback) && !commit) {
		t.Fatal(err)
	}
}

// applied returns, per consumer, the numbers applied in the order of their
// sequence numbers.
func (b bundle) applied(t *testing.T, tenant uuid.UUID, consumer string) []int {
	t.Helper()
	var ns []int
	err := b.db.AcrossTenants(context.Background(), func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT n FROM applied WHERE tenant_id = $1 AND consumer = $2 ORDER BY seq`, tenant, consumer)
		if err != nil {
			return err
		}
		ns, err = pgx.CollectRows(rows, pgx.RowTo[int])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func drainAll(t *testing.T, r *outbox.Runner, tenants []uuid.UUID) {
	t.Helper()
	for _, id := range tenants {
		for {
			pending, err := r.Drain(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !pending {
				break
			}
		}
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestRolledBackAppendIsNeverDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	tenant := b.tenants[0]
	b.appendN(t, tenant, 0, 3, true)
	b.appendN(t, tenant, 3, 3, false)
	b.appendN(t, tenant, 6, 2, true)
	r := outbox.NewRunner(b.db, quiet())
	r.Register(recorder("a"))
	drainAll(t, r, b.tenants)
	want := []int{0, 1, 2, 6, 7}
	if got := b.applied(t, tenant, "a"); !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
}

// TestConcurrentProducersAndRunners appends from many transactions at once
// while two runners (two servers) drain: every committed message is applied
// exactly once per consumer, in each company's sequence order; rolled-back
// ones never.
func TestConcurrentProducersAndRunners(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runners := make([]*outbox.Runner, 2)
	var wg sync.WaitGroup
	for i := range runners {
		r := outbox.NewRunner(b.db, quiet())
		r.BatchSize = 7
		r.Register(recorder("a"))
		r.Register(recorder("b"))
		runners[i] = r
		wg.Go(func() { r.Run(ctx, 2) })
	}
	const producers, each = 8, 25
	var committed sync.Map // tenant -> *[]int
	var mu sync.Mutex
	var pw sync.WaitGroup
	for p := range producers {
		pw.Go(func() {
			for i := range each {
				tenant := b.tenants[rand.IntN(len(b.tenants))]
				n := p*1000 + i*10
				commit := rand.IntN(5) > 0
				b.appendN(t, tenant, n, 1+rand.IntN(3), commit)
				if commit {
					mu.Lock()
					v, _ := committed.LoadOrStore(tenant, &[]int{})
					l := v.(*[]int)
					*l = append(*l, n)
					mu.Unlock()
				}
			}
		})
	}
	pw.Wait()
	// Every committed message is applied (the runners were woken by
	// notifications), checked against the messages table itself.
	for _, tenant := range b.tenants {
		var want []int
		err := b.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT (payload->>'n')::int FROM outbox_messages WHERE tenant_id = $1 ORDER BY seq`, tenant)
			if err != nil {
				return err
			}
			want, err = pgx.CollectRows(rows, pgx.RowTo[int])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		v, _ := committed.Load(tenant)
		starts := map[int]bool{}
		if v != nil {
			for _, n := range *v.(*[]int) {
				starts[n] = true
			}
		}
		for _, n := range want {
			if !starts[n-n%10] {
				t.Fatalf("message %d stored but its transaction rolled back", n)
			}
		}
		for _, c := range []string{"a", "b"} {
			deadline := time.Now().Add(30 * time.Second)
			for {
				got := b.applied(t, tenant, c)
				if slices.Equal(got, want) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("consumer %s applied %d messages %v, want %d %v", c, len(got), got, len(want), want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	cancel()
	wg.Wait()
}

// TestFailuresRetryThenDeadLetter: a message failing transiently is retried
// and applied once; a poison message is dead-lettered after MaxAttempts and
// the messages after it flow.
func TestFailuresRetryThenDeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	tenant := b.tenants[0]
	var fails atomic.Int32
	var attempts atomic.Int32
	c := recorder("a")
	inner := c.Handle
	c.Handle = func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) (func(context.Context), error) {
		var p payload
		if err := d.Decode(&p); err != nil {
			return nil, err
		}
		switch {
		case p.N == 2 && fails.Add(1) <= 2:
			return nil, errors.New("transient")
		case p.Poison:
			attempts.Add(1)
			return nil, errors.New("poison")
		}
		return inner(ctx, tx, d)
	}
	now := time.Now()
	var clock sync.Mutex
	r := outbox.NewRunner(b.db, quiet())
	r.MaxAttempts = 4
	r.Backoff = func(n int) time.Duration { return time.Duration(n) * time.Minute }
	r.Now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func() { clock.Lock(); now = now.Add(time.Hour); clock.Unlock() }
	r.Register(c)
	b.appendN(t, tenant, 0, 4, true)
	err := b.db.InTenant(ctx, tenant, func(tx pgx.Tx) error {
		return outbox.Append(ctx, tx, outbox.Message{TenantID: tenant, Kind: "test.thing", Payload: payload{N: 4, Poison: true}, OccurredAt: now})
	})
	if err != nil {
		t.Fatal(err)
	}
	b.appendN(t, tenant, 5, 2, true)
	// Each drain stops at the failing message until its backoff is over
	// (the clock is advanced past it between drains).
	for range 20 {
		drainAll(t, r, b.tenants)
		advance()
	}
	if got, want := b.applied(t, tenant, "a"), []int{0, 1, 2, 3, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	// MaxAttempts failures of its own, plus at most one in each batch
	// that reached it before the messages ahead of it were applied.
	if got := attempts.Load(); got < int32(r.MaxAttempts) || got > int32(r.MaxAttempts+5) {
		t.Fatalf("poison tried %d times, want %d to %d", got, r.MaxAttempts, r.MaxAttempts+5)
	}
	var dead []outbox.DeadLetter
	err = b.db.ReadTenant(ctx, tenant, func(tx pgx.Tx) error {
		var err error
		dead, err = outbox.DeadLetters(ctx, tx, tenant, 10)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Consumer != "a" || dead[0].Error != "poison" {
		t.Fatalf("dead letters %+v, want the poison message", dead)
	}
}

// TestBackoffHoldsTheCursor: before its backoff is over a failed message is
// not tried again, and nothing after it is applied (company order).
func TestBackoffHoldsTheCursor(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	tenant := b.tenants[0]
	var calls atomic.Int32
	c := recorder("a")
	inner := c.Handle
	c.Handle = func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) (func(context.Context), error) {
		var p payload
		_ = d.Decode(&p)
		if p.N == 1 {
			calls.Add(1)
			return nil, errors.New("down")
		}
		return inner(ctx, tx, d)
	}
	r := outbox.NewRunner(b.db, quiet())
	r.Backoff = func(int) time.Duration { return time.Hour }
	r.Register(c)
	b.appendN(t, tenant, 0, 3, true)
	for range 5 {
		drainAll(t, r, b.tenants)
	}
	if got := b.applied(t, tenant, "a"); !slices.Equal(got, []int{0}) {
		t.Fatalf("applied %v, want [0]", got)
	}
	// One batch attempt, then one attempt of the message on its own; then
	// the backoff holds.
	if got := calls.Load(); got != 2 {
		t.Fatalf("tried %d times during the backoff", got)
	}
}

func TestFromNowSkipsHistory(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	tenant := b.tenants[0]
	b.appendN(t, tenant, 0, 3, true)
	r := outbox.NewRunner(b.db, quiet())
	c := recorder("fresh")
	c.FromNow = true
	r.Register(c)
	r.Register(recorder("all"))
	drainAll(t, r, b.tenants)
	b.appendN(t, tenant, 3, 2, true)
	drainAll(t, r, b.tenants)
	if got := b.applied(t, tenant, "fresh"); !slices.Equal(got, []int{3, 4}) {
		t.Fatalf("from-now consumer applied %v, want [3 4]", got)
	}
	if got := b.applied(t, tenant, "all"); !slices.Equal(got, seq(0, 5)) {
		t.Fatalf("consumer applied %v, want 0..4", got)
	}
}

func TestKeyedAppendIsStoredOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	tenant := b.tenants[0]
	for range 3 {
		err := b.db.InTenant(ctx, tenant, func(tx pgx.Tx) error {
			return outbox.Append(ctx, tx, outbox.Message{TenantID: tenant, Kind: "test.thing", Key: "once", Payload: payload{N: 9}, OccurredAt: time.Now()})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	r := outbox.NewRunner(b.db, quiet())
	r.Register(recorder("a"))
	drainAll(t, r, b.tenants)
	if got := b.applied(t, tenant, "a"); !slices.Equal(got, []int{9}) {
		t.Fatalf("applied %v, want [9]", got)
	}
}

// TestRunWakesOnAppend: with a sweep too slow to matter, messages appended
// before Run (found after subscribing) and after (notified) are delivered.
func TestRunWakesOnAppend(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	tenant := b.tenants[0]
	b.appendN(t, tenant, 0, 2, true)
	r := outbox.NewRunner(b.db, quiet())
	r.SweepInterval = time.Hour
	r.Register(recorder("a"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, 1) }()
	defer func() { cancel(); <-done }()
	b.appendN(t, tenant, 2, 2, true)
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(b.applied(t, tenant, "a"), seq(0, 4)) {
		if time.Now().After(deadline) {
			t.Fatalf("applied %v, want 0..3", b.applied(t, tenant, "a"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKindsFilter(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ctx := context.Background()
	tenant := b.tenants[0]
	err := b.db.InTenant(ctx, tenant, func(tx pgx.Tx) error {
		return outbox.Append(ctx, tx,
			outbox.Message{TenantID: tenant, Kind: "test.thing", Payload: payload{N: 1}, OccurredAt: time.Now()},
			outbox.Message{TenantID: tenant, Kind: "test.other", Payload: payload{N: 2}, OccurredAt: time.Now()},
			outbox.Message{TenantID: tenant, Kind: "test.thing", Payload: payload{N: 3}, OccurredAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	r := outbox.NewRunner(b.db, quiet())
	c := recorder("a")
	c.Kinds = []outbox.Kind{"test.thing"}
	r.Register(c)
	drainAll(t, r, b.tenants)
	if got := b.applied(t, tenant, "a"); !slices.Equal(got, []int{1, 3}) {
		t.Fatalf("applied %v, want [1 3]", got)
	}
	var pending bool
	_ = b.db.ReadTenant(ctx, tenant, func(tx pgx.Tx) error {
		var err error
		pending, err = outbox.Pending(ctx, tx, tenant, "a")
		return err
	})
	if pending {
		t.Fatal("the cursor did not move past the other kinds")
	}
}
