package event

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Stored is an event as held: its current version and whether it counts.
type Stored struct {
	Event   Event
	Counted bool
}

// ListRequest selects a page of events, most recently received first.
type ListRequest struct {
	Size   int
	Cursor page.Cursor
	Type   Type
	Source string
	RepID  uuid.UUID
}

// List returns a page of the events the caller may see: all of the
// company's for admin, integration and HR; those counting for a manager's
// teams and sub-teams; a rep's own.
func (s *Store) List(ctx context.Context, p rallye.Principal, req ListRequest) ([]Stored, error) {
	var out []Stored
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		repFilter := req.RepID
		var teams []uuid.UUID // nil: no team restriction
		switch {
		case p.Has(rallye.RoleAdmin, rallye.RoleIntegration, rallye.RoleHR):
		case p.Has(rallye.RoleManager):
			var err error
			if teams, err = org.ManagedTeams(ctx, tx, p.TenantID, p.UserID); err != nil {
				return err
			}
			if teams == nil {
				teams = []uuid.UUID{}
			}
		default:
			if repFilter != uuid.Nil && repFilter != p.UserID {
				return nil // a rep sees only their own events
			}
			repFilter = p.UserID
		}
		before := req.Cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT e.counted, `+versionColumns+`
			FROM events e JOIN event_versions v ON v.tenant_id = e.tenant_id AND v.id = e.version_id
			WHERE e.tenant_id = $1 AND e.version_id < $2
			  AND ($3 = '' OR e.type = $3) AND ($4 = '' OR e.source = $4)
			  AND ($5::uuid IS NULL OR e.user_id = $5)
			  AND ($6::uuid[] IS NULL OR v.team_ids && $6)
			ORDER BY e.version_id DESC LIMIT $7`,
			p.TenantID, before, string(req.Type), req.Source, nullUser(repFilter), teams, req.Size)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st Stored
			if err := scanVersion(rows, &st.Event, &st.Counted); err != nil {
				return err
			}
			st.Event.TenantID = p.TenantID
			out = append(out, st)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// Watermark tells how far a source's data goes.
type Watermark struct {
	Source       string
	NewestEvent  time.Time
	LastReceived time.Time
	Events       int64
}

// Watermarks returns, per source, the newest event time delivered and when
// the source last sent an event.
func (s *Store) Watermarks(ctx context.Context, tenantID uuid.UUID) ([]Watermark, error) {
	var out []Watermark
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		out, err = SourceWatermarks(ctx, tx, tenantID)
		return err
	})
	return out, err
}

// SourceWatermarks is Watermarks inside the caller's transaction.
func SourceWatermarks(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) ([]Watermark, error) {
	rows, err := tx.Query(ctx, `SELECT source, newest_event_at, last_received_at, events
		FROM event_sources WHERE tenant_id = $1 ORDER BY source`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("source watermarks: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Watermark, error) {
		var w Watermark
		return w, r.Scan(&w.Source, &w.NewestEvent, &w.LastReceived, &w.Events)
	})
}

// CountedQuery selects events that count now (current versions, neither
// retracted nor withdrawn by a reopening).
type CountedQuery struct {
	Users    []uuid.UUID
	Types    []Type
	From, To time.Time // occurred_at in [From, To)
}

// Counted calls fn for every event of q, inside the caller's transaction:
// baselines computed from history (a rep's average deal before a challenge).
func Counted(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, q CountedQuery, fn func(Event) error) error {
	types := make([]string, len(q.Types))
	for i, t := range q.Types {
		types[i] = string(t)
	}
	rows, err := tx.Query(ctx, `SELECT `+versionColumns+`
		FROM events e JOIN event_versions v ON v.tenant_id = e.tenant_id AND v.id = e.version_id
		WHERE e.tenant_id = $1 AND e.counted AND e.user_id = ANY($2) AND e.type = ANY($3)
		  AND e.occurred_at >= $4 AND e.occurred_at < $5
		ORDER BY e.occurred_at, e.version_id`, tenantID, q.Users, types, q.From, q.To)
	if err != nil {
		return fmt.Errorf("read counted events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Event
		if err := scanVersion(rows, &e); err != nil {
			return err
		}
		e.TenantID = tenantID
		if err := fn(e); err != nil {
			return err
		}
	}
	return rows.Err()
}
