package reward

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// GrantColumns are the columns of the grants export, in order (stable: new
// columns only ever go at the end; the README lists them).
var GrantColumns = []string{
	"entry_seq", "earned_at", "user_id", "crm_id", "display_name", "kind", "points", "challenge_id",
	"reason", "granted_by_id", "granted_by",
}

// GrantsExportRequest selects the ledger entries of the grants export.
type GrantsExportRequest struct {
	// Start (included) and End (excluded) bound the entries' times.
	Start, End time.Time
	// TeamID: only the people of this team and its sub-teams (uuid.Nil:
	// everyone the caller sees).
	TeamID uuid.UUID
	// ChallengeID: only this challenge's entries (uuid.Nil: all).
	ChallengeID uuid.UUID
}

// ExportGrants streams the points ledger entries of the window, in the
// order they were recorded, as rows of GrantColumns through row. HR and
// admins read everyone's; managers those of the people of their teams and
// sub-teams; anyone else their own. Rows go to row as PostgreSQL sends
// them (pgx reads the result as a stream): memory does not grow with the
// number of entries.
func (s *Service) ExportGrants(ctx context.Context, p rallye.Principal, req GrantsExportRequest, row func(cells ...any) error) error {
	switch {
	case !req.End.After(req.Start):
		return rallye.Invalid("end_time", "must be after start_time")
	case req.End.Sub(req.Start) > MaxExportWindow:
		return rallye.Invalid("end_time", "an export covers at most 366 days")
	}
	return s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		everyone := p.Has(rallye.RoleAdmin, rallye.RoleHR)
		var teams []uuid.UUID // nil: no team condition
		if !everyone && p.Has(rallye.RoleManager) && p.IsPerson() {
			managed, err := org.ManagedTeams(ctx, tx, p.TenantID, p.UserID)
			if err != nil {
				return fmt.Errorf("managed teams: %w", err)
			}
			teams = append(managed, uuid.Nil) // never empty: a manager of no team sees only themselves
		}
		if req.TeamID != uuid.Nil {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2)`,
				p.TenantID, req.TeamID).Scan(&exists); err != nil {
				return fmt.Errorf("read team: %w", err)
			}
			if !exists {
				return &rallye.Error{Code: rallye.CodeNotFound, Field: "team_id", Message: "the team does not exist"}
			}
			if !everyone && !slices.Contains(teams, req.TeamID) {
				return &rallye.Error{Code: rallye.CodePermissionDenied, Field: "team_id", Message: "this team is not one of yours"}
			}
			sub, err := org.TeamAndDescendants(ctx, tx, p.TenantID, []uuid.UUID{req.TeamID})
			if err != nil {
				return fmt.Errorf("read sub-teams: %w", err)
			}
			teams = sub
		}
		if req.ChallengeID != uuid.Nil {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM challenges WHERE tenant_id = $1 AND id = $2)`,
				p.TenantID, req.ChallengeID).Scan(&exists); err != nil {
				return fmt.Errorf("read challenge: %w", err)
			}
			if !exists {
				return &rallye.Error{Code: rallye.CodeNotFound, Field: "challenge_id", Message: "the challenge does not exist"}
			}
		}
		self := uuid.Nil
		if !everyone && teams == nil {
			if !p.IsPerson() {
				return denied("only HR, admins, managers and the people themselves export points")
			}
			self = p.UserID
		}
		rows, err := tx.Query(ctx, `SELECT l.seq, l.earned_at, l.user_id, coalesce(u.external_id, ''), coalesce(u.display_name, ''),
				l.kind, l.points, l.challenge_id, coalesce(l.cause->>'reason', ''), l.cause->>'by_id', coalesce(g.display_name, '')
			FROM points_ledger l
			LEFT JOIN users u ON u.tenant_id = l.tenant_id AND u.id = l.user_id
			LEFT JOIN users g ON g.tenant_id = l.tenant_id AND g.id = (l.cause->>'by_id')::uuid
			WHERE l.tenant_id = $1 AND l.earned_at >= $2 AND l.earned_at < $3
			  AND ($4::uuid IS NULL OR l.challenge_id = $4)
			  AND ($5::uuid IS NULL OR l.user_id = $5)
			  AND ($6::uuid[] IS NULL OR l.user_id = $7 OR l.user_id IN (
				SELECT m.user_id FROM team_members m WHERE m.tenant_id = $1 AND m.team_id = ANY($6)))
			ORDER BY l.seq`,
			p.TenantID, req.Start, req.End, nilUUID(req.ChallengeID), nilUUID(self), teams, callerSelf(p, req.TeamID))
		if err != nil {
			return fmt.Errorf("export grants: %w", err)
		}
		defer rows.Close()
		var (
			seq                         int64
			at                          time.Time
			userID                      uuid.UUID
			crm, name, kind, reason, by string
			points                      int64
			challengeID                 *uuid.UUID
			byID                        *string
		)
		for rows.Next() {
			if err := rows.Scan(&seq, &at, &userID, &crm, &name, &kind, &points, &challengeID, &reason, &byID, &by); err != nil {
				return fmt.Errorf("export grants: %w", err)
			}
			var ch, bid any
			if challengeID != nil {
				ch = challengeID.String()
			}
			if byID != nil {
				bid = *byID
			}
			if err := row(seq, at, userID.String(), empty(crm), empty(name), kind, points, ch, empty(reason), bid, empty(by)); err != nil {
				return err
			}
		}
		return rows.Err()
	})
}

// callerSelf is the person whose own entries a manager also sees (their
// own wallet), unless a team is asked for.
func callerSelf(p rallye.Principal, team uuid.UUID) any {
	if team != uuid.Nil || !p.IsPerson() {
		return nil
	}
	return p.UserID
}

func nilUUID(id uuid.UUID) any {
	if id == uuid.Nil {
		return nil
	}
	return id
}

func empty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
