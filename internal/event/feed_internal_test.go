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
