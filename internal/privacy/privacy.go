// Package privacy answers personal-data requests: an admin exports
// everything Rallye holds about one person (GDPR article 15) or erases them
// (article 17). It is the one place that knows every table holding
// something about a person (the list below); a new table referencing
// people adds its line here, and TestErasureLeavesNothingReadable, which
// searches every table of the schema for the person's name, email and CRM
// id, fails until it does.
//
// Erasure keeps the person's row as a pseudonym (their id only: no name,
// email, CRM id, time zone or hire date; inactive, erased_at set), so that
// the points ledger, challenge history and company totals stay whole. Their
// events are kept for the company's and teams' totals (roll-ups of those
// scopes are untouched) and detached from them (no user, no CRM rep id).
// What is about them alone goes: their KPI values, targets and alerts, team
// memberships, free texts (kudos messages sent and received, mission
// answers and review notes, redemption notes), their parked events, their
// place on every leaderboard (PostgreSQL rows, then the live Redis boards
// are rebuilt) and every copy of their name, email or CRM id inside stored
// JSON (ledger causes, the team feed, outbox messages, event attributes).
package privacy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// ErasedName is the display name an erased person keeps.
const ErasedName = "Personne effacée"

// BoardRebuilder rebuilds a board's live ranking from PostgreSQL
// (leaderboard.Service).
type BoardRebuilder interface {
	Rebuild(ctx context.Context, tenantID, boardID uuid.UUID) (int, error)
}

// Deps are what the service needs.
type Deps struct {
	DB     *postgres.DB
	Boards BoardRebuilder
	// Forget drops a person's cached credentials (auth.Authenticator).
	Forget func(tenantID, userID uuid.UUID)
	Log    *slog.Logger
	Now    func() time.Time
}

// Service answers personal-data requests.
type Service struct {
	d Deps
}

// New returns the service.
func New(d Deps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d}
}

// Request is the audit entry of a personal-data request.
type Request struct {
	ID          uuid.UUID
	Kind        string // "export" or "erasure"
	SubjectID   uuid.UUID
	RequestedBy uuid.UUID
	Reason      string
	Summary     map[string]any
	At          time.Time
}

func adminOnly(p rallye.Principal) error {
	if !p.Has(rallye.RoleAdmin) {
		return rallye.Errorf(rallye.CodePermissionDenied, "only admins answer personal-data requests")
	}
	return nil
}

type subject struct {
	name, email, crm string
	erased           bool
}

func readSubject(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID) (subject, error) {
	var s subject
	var crm *string
	var erased *time.Time
	err := tx.QueryRow(ctx, `SELECT display_name, email, external_id, erased_at FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE`,
		tenantID, userID).Scan(&s.name, &s.email, &crm, &erased)
	if err == pgx.ErrNoRows {
		return s, &rallye.Error{Code: rallye.CodeNotFound, Field: "user_id", Message: "the person does not exist"}
	}
	if err != nil {
		return s, fmt.Errorf("read person: %w", err)
	}
	if crm != nil {
		s.crm = *crm
	}
	s.erased = erased != nil
	return s, nil
}

func record(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, r Request) error {
	summary, _ := json.Marshal(r.Summary)
	_, err := tx.Exec(ctx, `INSERT INTO privacy_requests (tenant_id, id, kind, subject_id, requested_by, reason, summary, requested_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, tenantID, r.ID, r.Kind, r.SubjectID, nilID(r.RequestedBy), r.Reason, summary, r.At)
	if err != nil {
		return fmt.Errorf("record the request: %w", err)
	}
	return nil
}

func nilID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

// List returns the company's requests, most recent first (at most 500),
// only those about subject when it is set.
func (s *Service) List(ctx context.Context, p rallye.Principal, subjectID uuid.UUID) ([]Request, error) {
	if err := adminOnly(p); err != nil {
		return nil, err
	}
	var out []Request
	err := s.d.DB.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, kind, subject_id, requested_by, reason, summary, requested_at FROM privacy_requests
			WHERE tenant_id = $1 AND ($2::uuid IS NULL OR subject_id = $2) ORDER BY requested_at DESC, id LIMIT 500`,
			p.TenantID, nilID(subjectID))
		if err != nil {
			return fmt.Errorf("list requests: %w", err)
		}
		out = nil
		var r Request
		var by *uuid.UUID
		var summary []byte
		_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.Kind, &r.SubjectID, &by, &r.Reason, &summary, &r.At}, func() error {
			r.RequestedBy = uuid.Nil
			if by != nil {
				r.RequestedBy = *by
			}
			r.Summary = nil
			_ = json.Unmarshal(summary, &r.Summary)
			out = append(out, r)
			return nil
		})
		return err
	})
	return out, err
}
