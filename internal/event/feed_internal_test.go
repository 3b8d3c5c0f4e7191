package event

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/testutil"
)

type countingConsumer struct{ seen []Change }

func (c *countingConsumer) Name() string { return "counting" }
func (c *countingConsumer) Consume(_ context.Context, _ pgx.Tx, _ uuid.UUID, ch []Change) (Applied, error) {
	c.seen = append(c.seen, ch...)
	return Applied{}, nil
}

// TestFeedCommitsInOrder holds a batch's transaction open after it wrote
// its changes: a later batch waits for it, a consumer sees neither before
// the first commits, and then sees them in seq order.
func TestFeedCommitsInOrder(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	// Two sources: batches of one source also take turns on its watermark.
	spend := func(id string) []Row {
		return []Row{{HasAmount: true, Event: Event{Source: "ads-" + id, ExternalID: id, Type: MarketingSpend,
			OccurredAt: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Amount: 100, Currency: "EUR", Channel: "ads"}}}
	}
	consumer := &countingConsumer{}
	feed := NewFeed(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	feed.Register(consumer)

	written := make(chan struct{})
	release := make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			if _, err := ingest(ctx, tx, tenant.ID, spend("early"), BoundsAt(time.Now(), DefaultMaxFuture)); err != nil {
				return err
			}
			close(written)
			<-release
			return nil
		})
	}()
	<-written
	second := make(chan error, 1)
	go func() {
		second <- db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			_, err := ingest(ctx, tx, tenant.ID, spend("late"), BoundsAt(time.Now(), DefaultMaxFuture))
			return err
		})
	}()
	if _, err := feed.Drain(ctx, tenant.ID); err != nil {
		t.Fatal(err)
	}
	if len(consumer.seen) != 0 {
		t.Fatalf("the consumer saw %d changes of uncommitted batches", len(consumer.seen))
	}
	select {
	case err := <-second:
		t.Fatalf("the later batch committed (%v) while the earlier one held the feed", err)
	default:
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	if pending, err := feed.Drain(ctx, tenant.ID); err != nil || pending {
		t.Fatalf("drain after commit: pending=%v err=%v", pending, err)
	}
	if len(consumer.seen) != 2 || consumer.seen[0].Event.ExternalID != "early" || consumer.seen[1].Seq <= consumer.seen[0].Seq {
		t.Fatalf("consumer saw %+v, want early then late", consumer.seen)
	}
}

// blockingConsumer holds its first batch until released.
type blockingConsumer struct {
	entered chan struct{}
	release chan struct{}
	once    bool
}

func (c *blockingConsumer) Name() string { return "blocking" }
func (c *blockingConsumer) Consume(ctx context.Context, _ pgx.Tx, _ uuid.UUID, _ []Change) (Applied, error) {
	if !c.once {
		c.once = true
		close(c.entered)
		select {
		case <-c.release:
		case <-ctx.Done():
			return Applied{}, ctx.Err()
		}
	}
	return Applied{}, nil
}

// signallingConsumer reports each batch it applied.
type signallingConsumer struct{ applied chan []Change }

func (c *signallingConsumer) Name() string { return "signalling" }
func (c *signallingConsumer) Consume(_ context.Context, _ pgx.Tx, _ uuid.UUID, ch []Change) (Applied, error) {
	c.applied <- ch
	return Applied{}, nil
}

// TestFeedConsumersOfACompanyDoNotWaitForEachOther: while one consumer of
// a company is stuck in a long batch (the KPI roll-ups of a backlog), the
// company's other consumer (the points behind the live ranks) applies the
// changes that keep arriving. Registered first, the stuck consumer would
// hold the other back if a worker ran a company's consumers in turn.
func TestFeedConsumersOfACompanyDoNotWaitForEachOther(t *testing.T) {
	db := testutil.DB(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	slow := &blockingConsumer{entered: make(chan struct{}), release: make(chan struct{})}
	fast := &signallingConsumer{applied: make(chan []Change, 100)}
	feed := NewFeed(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	feed.Register(slow)
	feed.Register(fast)
	ran := make(chan struct{})
	go func() { feed.Run(ctx, 2); close(ran) }()
	defer func() { cancel(); close(slow.release); <-ran }()

	store := func(id string) {
		t.Helper()
		err := db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			_, err := ingest(ctx, tx, tenant.ID, []Row{{HasAmount: true, Event: Event{Source: "ads", ExternalID: id, Type: MarketingSpend,
				OccurredAt: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Amount: 100, Currency: "EUR", Channel: "ads"}}},
				BoundsAt(time.Now(), DefaultMaxFuture))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	store("first")
	<-slow.entered // the slow consumer now holds its batch
	seen := map[string]bool{}
	want := []string{"first", "second", "third"}
	store("second")
	store("third")
	timeout := time.After(30 * time.Second)
	for len(seen) < len(want) {
		select {
		case batch := <-fast.applied:
			for _, ch := range batch {
				seen[ch.Event.ExternalID] = true
			}
		case <-timeout:
			t.Fatalf("the other consumer applied %v while the slow one held its batch, want %v", seen, want)
		}
	}
}

// TestReadChangesFetchesVersionsByKey: before any ANALYZE of a company's
// first thousands of events, reading a few changes fetches their versions
// by primary key, instead of filtering every version of the company for
// each change (the plan a flattened join got from stale statistics).
func TestReadChangesFetchesVersionsByKey(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 6 {
		var rows []Row
		for i := range MaxBatch {
			id := fmt.Sprintf("spend-%d-%d", b, i)
			rows = append(rows, Row{HasAmount: true, Event: Event{Source: "ads", ExternalID: id, Type: MarketingSpend,
				OccurredAt: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Amount: 100, Currency: "EUR", Channel: "ads"}})
		}
		if err := db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			_, err := ingest(ctx, tx, tenant.ID, rows, BoundsAt(time.Now(), DefaultMaxFuture))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	var plan []string
	err = db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, `SELECT max(seq) FROM event_changes WHERE tenant_id = $1`, tenant.ID).Scan(&last); err != nil {
			return err
		}
		// The generic plan, which a prepared statement uses after a few
		// executions: it cannot see the parameters' values.
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `PREPARE read_changes(uuid, bigint, int) AS `+readChangesSQL); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, fmt.Sprintf(`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE read_changes('%s', %d, 5000)`, tenant.ID, last-20))
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Rows Removed by Join Filter") || !strings.Contains(text, "event_versions_pkey") {
		t.Fatalf("reading 20 changes does not fetch their versions by key:\n%s", text)
	}
}
