package event

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// ParkedRetention is how long an event whose rep_external_id no person
// carries waits for that person (created with CreateUser, imported with
// ImportUsers, or given the CRM id with UpdateUser); after it, the event is
// dropped and the source has to send it again.
const ParkedRetention = 30 * 24 * time.Hour

// ParkedRow reports an event of a batch that was parked: valid, but for a
// rep no person carries yet.
type ParkedRow struct {
	Index         int
	RepExternalID string
}

// Parked is an event waiting for its rep.
type Parked struct {
	ID        uuid.UUID
	Event     Event
	ParkedAt  time.Time
	ExpiresAt time.Time
}

type parkRow struct {
	ev        Event
	hasAmount bool
}

// parkEvents keeps events for unknown reps, in the batch's transaction. A revision
// already parked stays as it is (a re-delivery parks nothing new); expired
// events of the company are dropped on the way.
func parkEvents(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, rows []parkRow) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `DELETE FROM parked_events WHERE tenant_id = $1 AND expires_at <= now()`, tenantID); err != nil {
		return fmt.Errorf("drop expired parked events: %w", err)
	}
	for _, r := range rows {
		doc, err := json.Marshal(r.ev)
		if err != nil {
			return fmt.Errorf("park event: %w", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO parked_events (tenant_id, id, source, external_id, revision, rep_external_id,
				event, has_amount, parked_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now() + $9::interval)
			ON CONFLICT (tenant_id, source, external_id, revision) DO NOTHING`,
			tenantID, uuid.Must(uuid.NewV7()), r.ev.Source, r.ev.ExternalID, r.ev.Revision, r.ev.RepExternalID,
			doc, r.hasAmount, ParkedRetention)
		if err != nil {
			return fmt.Errorf("park event: %w", err)
		}
	}
	return nil
}

// ReleaseParked ingests the company's parked events for reps that now carry
// one of externalIDs, in tx (the transaction that created, imported or
// renamed those people), as if they had just arrived: the same duplicates,
// corrections, deal rules and team attribution as IngestEvents, and the
// same feed changes. Expired events are not released.
func (s *Store) ReleaseParked(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, externalIDs []string) (Result, error) {
	if len(externalIDs) == 0 {
		return Result{}, nil
	}
	rows, err := tx.Query(ctx, `DELETE FROM parked_events
		WHERE tenant_id = $1 AND rep_external_id = ANY($2) AND expires_at > now()
		RETURNING id, event, has_amount`, tenantID, externalIDs)
	if err != nil {
		return Result{}, fmt.Errorf("release parked events: %w", err)
	}
	type released struct {
		id  uuid.UUID
		row Row
	}
	var out []released
	var id uuid.UUID
	var doc []byte
	var hasAmount bool
	_, err = pgx.ForEachRow(rows, []any{&id, &doc, &hasAmount}, func() error {
		var e Event
		if err := json.Unmarshal(doc, &e); err != nil {
			return err
		}
		out = append(out, released{id, Row{Event: e, HasAmount: hasAmount}})
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("release parked events: %w", err)
	}
	// In the order they were parked (ids are time-ordered).
	slices.SortFunc(out, func(a, b released) int { return compareUUIDs(a.id, b.id) })
	var total Result
	bounds := BoundsAt(s.Now(), s.MaxFuture)
	for chunk := range slices.Chunk(out, MaxBatch) {
		batch := make([]Row, len(chunk))
		for i, r := range chunk {
			batch[i] = r.row
		}
		outs, err := ingest(ctx, tx, tenantID, batch, bounds)
		if err != nil {
			return Result{}, err
		}
		res := summarize(batch, outs, 0)
		total.Accepted += res.Accepted
		total.Corrected += res.Corrected
		total.Duplicates += res.Duplicates
		total.Rejected = append(total.Rejected, res.Rejected...)
		total.Parked = append(total.Parked, res.Parked...)
	}
	return total, nil
}

func compareUUIDs(a, b uuid.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// ParkedQuery selects parked events.
type ParkedQuery struct {
	Size   int
	Cursor page.Cursor
	// RepExternalID: only this CRM id's events ("" for all).
	RepExternalID string
}

// ListParked lists the company's parked events, oldest first.
func (s *Store) ListParked(ctx context.Context, p rallye.Principal, q ParkedQuery) ([]Parked, error) {
	if p.TenantID == uuid.Nil {
		return nil, rallye.Errorf(rallye.CodePermissionDenied, "parked events belong to a company")
	}
	size := page.Size(int32(q.Size))
	var out []Parked
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, event, parked_at, expires_at FROM parked_events
			WHERE tenant_id = $1 AND expires_at > now() AND ($2 = '' OR rep_external_id = $2) AND id > $3
			ORDER BY id LIMIT $4`, p.TenantID, q.RepExternalID, q.Cursor.After, size)
		if err != nil {
			return fmt.Errorf("list parked events: %w", err)
		}
		var pk Parked
		var doc []byte
		_, err = pgx.ForEachRow(rows, []any{&pk.ID, &doc, &pk.ParkedAt, &pk.ExpiresAt}, func() error {
			pk.Event = Event{}
			if err := json.Unmarshal(doc, &pk.Event); err != nil {
				return err
			}
			out = append(out, pk)
			return nil
		})
		return err
	})
	return out, err
}
