package event

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/testutil"
)

type countingConsumer struct{ seen []Change }

func (c *countingConsumer) Name() string { return "counting" }
func (c *countingConsumer) Consume(_ context.Context, _ pgx.Tx, _ uuid.UUID, ch []Change) (func(context.Context), error) {
	c.seen = append(c.seen, ch...)
	return nil, nil
}

// TestFeedWaitsForOlderTransactions commits a later batch while an earlier
// one is still open: the consumer must not move past the open one.
func TestFeedWaitsForOlderTransactions(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	tenant, _, err := org.NewService(db).CreateTenant(ctx, org.NewTenant{Name: "A", Slug: "acme", TimeZone: "UTC",
		DefaultLocale: org.LocaleEN, Admin: org.UserInput{DisplayName: "A", Email: "a@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	// Two sources: batches of one source take turns on its watermark row.
	spend := func(id string) []Row {
		return []Row{{HasAmount: true, Event: Event{Source: "ads-" + id, ExternalID: id, Type: MarketingSpend,
			OccurredAt: time.Date(2026, 3, 3, 9, 0, 0, 0, time.UTC), Amount: 100, Currency: "EUR", Channel: "ads"}}}
	}
	consumer := &countingConsumer{}
	feed := NewFeed(db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	feed.Register(consumer)

	openTx := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
			if _, err := ingest(ctx, tx, tenant.ID, spend("early")); err != nil {
				return err
			}
			close(openTx)
			<-release
			return nil
		})
	}()
	<-openTx
	if err := db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
		_, err := ingest(ctx, tx, tenant.ID, spend("late"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	pending, err := feed.Drain(ctx, tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(consumer.seen) != 0 || !pending {
		t.Fatalf("with an older transaction open, the consumer saw %d changes (pending=%v)", len(consumer.seen), pending)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Other transactions of the cluster (other tests) may still hold the
	// feed back for a moment.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pending, err = feed.Drain(ctx, tenant.ID); err != nil || !pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drain after commit: still pending after 30s")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(consumer.seen) != 2 {
		t.Fatalf("consumer saw %d changes, want 2", len(consumer.seen))
	}
}
