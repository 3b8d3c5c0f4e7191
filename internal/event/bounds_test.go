package event_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
)

// TestTimeAndAmountBounds checks the bounds against the store's clock and
// skew, and that a watermark already beyond them (written before they
// existed) comes back within them at the source's next batch.
func TestTimeAndAmountBounds(t *testing.T) {
	b := setup(t, 1)
	ctx := context.Background()
	clock := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	b.store.Now = func() time.Time { return clock }
	b.store.MaxFuture = time.Hour

	base := event.Event{Source: "crm", Type: event.CallLogged, RepExternalID: "crm-rep-0"}
	won := func(amount, margin int64) event.Row {
		e := base
		e.Type, e.OpportunityID, e.DealKind = event.DealWon, uuid.NewString(), event.KindNew
		e.OccurredAt, e.OpportunityCreatedAt = clock.Add(-time.Hour), clock.Add(-48*time.Hour)
		e.Amount, e.GrossMargin, e.Currency = amount, margin, "EUR"
		return event.Row{Event: e, HasAmount: true}
	}
	at := func(t time.Time) event.Row {
		e := base
		e.OccurredAt = t
		return event.Row{Event: e}
	}
	tests := []struct {
		name  string
		row   event.Row
		field string // "" when accepted
	}{
		{"WithinSkew", at(clock.Add(59 * time.Minute)), ""},
		{"AtTheSkew", at(clock.Add(time.Hour)), ""},
		{"BeyondSkew", at(clock.Add(time.Hour + time.Second)), "occurred_at"},
		{"Year9999", at(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)), "occurred_at"},
		{"Absent", at(time.Time{}), "occurred_at"},
		{"Before2000", at(event.EarliestTime.Add(-time.Second)), "occurred_at"},
		{"At2000", at(event.EarliestTime), ""},
		{"AmountAtBound", won(event.MaxMinorUnits, 0), ""},
		{"AmountInt64Max", won(math.MaxInt64, 0), "amount.minor_units"},
		{"MarginInt64Min", won(100, math.MinInt64+1), "gross_margin.minor_units"},
		{"MarginAtBound", won(100, -event.MaxMinorUnits), ""},
	}
	rows := make([]event.Row, len(tests))
	for i, tt := range tests {
		rows[i] = tt.row
		rows[i].Event.ExternalID = tt.name
	}
	// A watermark poisoned before the bounds existed.
	err := b.db.InTenant(ctx, b.op.TenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO event_sources (tenant_id, source, newest_event_at, last_received_at, events)
			VALUES ($1, 'crm', '9999-12-31T23:59:59Z', now(), 1)`, b.op.TenantID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.store.Ingest(ctx, b.op, rows)
	if err != nil {
		t.Fatal(err)
	}
	rejected := map[int]event.RowError{}
	for _, r := range res.Rejected {
		rejected[r.Index] = r
	}
	accepted := 0
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := rejected[i]
			switch {
			case tt.field == "" && ok:
				t.Fatalf("rejected: %+v", r)
			case tt.field != "" && !ok:
				t.Fatalf("accepted, want a rejection on %s", tt.field)
			case ok && r.Field != tt.field:
				t.Fatalf("rejected on %s (%s), want %s", r.Field, r.Message, tt.field)
			}
		})
		if tt.field == "" {
			accepted++
		}
	}
	if res.Accepted != accepted {
		t.Fatalf("accepted %d, want %d", res.Accepted, accepted)
	}
	marks, err := b.store.Watermarks(ctx, b.op.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || !marks[0].NewestEvent.Equal(clock.Add(time.Hour)) {
		t.Fatalf("watermarks = %+v, want crm at %s (the clock plus the skew)", marks, clock.Add(time.Hour))
	}
}
