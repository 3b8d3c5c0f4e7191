package org

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

const teamColumns = `tenant_id, id, name, coalesce(parent_id, '00000000-0000-0000-0000-000000000000'), coalesce(external_id, ''), active, created_at, updated_at`

func scanTeam(row pgx.Row) (Team, error) {
	var t Team
	err := row.Scan(&t.TenantID, &t.ID, &t.Name, &t.ParentID, &t.ExternalID, &t.Active, &t.CreatedAt, &t.UpdatedAt)
	return t, err
}

func teamWriteError(err error) error {
	switch {
	case postgres.IsUniqueViolation(err, "teams_external_id_key"):
		return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "external_id", Message: "is used by another team"}
	case postgres.IsForeignKeyViolation(err, "teams_parent_fkey"):
		return rallye.NotFound("parent team")
	}
	return err
}

// CreateTeamRequest describes a new team.
type CreateTeamRequest struct {
	Name       string
	ParentID   uuid.UUID
	ExternalID string
	// RequestID makes the call safe to retry.
	RequestID string
}

// CreateTeam creates a team, or returns the team an earlier call with the
// same request id created.
func (s *Service) CreateTeam(ctx context.Context, p rallye.Principal, req CreateTeamRequest) (Team, error) {
	var team Team
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{
			Caller: p, Operation: "CreateTeam", RequestID: req.RequestID, Request: req,
		}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			team, err = getTeam(ctx, tx, p.TenantID, id)
			return err
		}
		if req.ParentID != uuid.Nil {
			if err := checkParentActive(ctx, tx, p.TenantID, req.ParentID); err != nil {
				return err
			}
		}
		team, err = scanTeam(tx.QueryRow(ctx, `INSERT INTO teams (tenant_id, id, name, parent_id, external_id)
			VALUES ($1, $2, $3, $4, $5) RETURNING `+teamColumns,
			p.TenantID, id, req.Name, nullableID(req.ParentID), nullable(req.ExternalID)))
		return teamWriteError(err)
	})
	return team, err
}

func checkParentActive(ctx context.Context, tx pgx.Tx, tenantID, parentID uuid.UUID) error {
	parent, err := getTeam(ctx, tx, tenantID, parentID)
	if rallye.ErrorCode(err) == rallye.CodeNotFound {
		return rallye.NotFound("parent team")
	}
	if err != nil {
		return err
	}
	if !parent.Active {
		return rallye.Errorf(rallye.CodeFailedPrecondition, "the parent team is deactivated")
	}
	return nil
}

func getTeam(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (Team, error) {
	t, err := scanTeam(tx.QueryRow(ctx, `SELECT `+teamColumns+` FROM teams WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if postgres.IsNoRows(err) {
		return t, rallye.NotFound("team")
	}
	return t, err
}

// Team returns one team of the caller's company.
func (s *Service) Team(ctx context.Context, p rallye.Principal, id uuid.UUID) (Team, error) {
	var t Team
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		t, err = getTeam(ctx, tx, p.TenantID, id)
		return err
	})
	return t, err
}

// TeamPatch holds the fields to change; nil leaves a field as it is. A
// ParentID of uuid.Nil moves the team to the top level.
type TeamPatch struct {
	Name       *string
	ParentID   *uuid.UUID
	ExternalID *string
}

// UpdateTeam changes a team.
func (s *Service) UpdateTeam(ctx context.Context, p rallye.Principal, id uuid.UUID, patch TeamPatch) (Team, error) {
	var team Team
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if _, err := getTeam(ctx, tx, p.TenantID, id); err != nil {
			return err
		}
		setParent := patch.ParentID != nil
		var parent *uuid.UUID
		if setParent && *patch.ParentID != uuid.Nil {
			parent = patch.ParentID
			if err := checkParentActive(ctx, tx, p.TenantID, *parent); err != nil {
				return err
			}
			var cycle bool
			err := tx.QueryRow(ctx, `WITH RECURSIVE up AS (
					SELECT id, parent_id FROM teams WHERE tenant_id = $1 AND id = $2
					UNION ALL
					SELECT t.id, t.parent_id FROM teams t JOIN up ON t.tenant_id = $1 AND t.id = up.parent_id
				) SELECT EXISTS (SELECT 1 FROM up WHERE id = $3)`, p.TenantID, *parent, id).Scan(&cycle)
			if err != nil {
				return fmt.Errorf("check team cycle: %w", err)
			}
			if cycle {
				return &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: "team.parent_id", Message: "a team cannot be placed under itself or one of its sub-teams"}
			}
		}
		var ext *string
		if patch.ExternalID != nil {
			ext = nullable(*patch.ExternalID)
		}
		var err error
		team, err = scanTeam(tx.QueryRow(ctx, `UPDATE teams SET
				name = coalesce($3, name),
				parent_id = CASE WHEN $4 THEN $5 ELSE parent_id END,
				external_id = CASE WHEN $6 THEN $7 ELSE external_id END,
				updated_at = now()
			WHERE tenant_id = $1 AND id = $2 RETURNING `+teamColumns,
			p.TenantID, id, patch.Name, setParent, parent, patch.ExternalID != nil, ext))
		return teamWriteError(err)
	})
	return team, err
}

// ListTeamsRequest selects a page of teams.
type ListTeamsRequest struct {
	Size            int
	Cursor          page.Cursor
	IncludeInactive bool
}

// ListTeams returns a page of teams in creation order.
func (s *Service) ListTeams(ctx context.Context, p rallye.Principal, req ListTeamsRequest) ([]Team, error) {
	var teams []Team
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+teamColumns+` FROM teams
			WHERE tenant_id = $1 AND id > $2 AND (active OR $3) ORDER BY id LIMIT $4`,
			p.TenantID, req.Cursor.After, req.IncludeInactive, req.Size)
		if err != nil {
			return err
		}
		teams, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Team, error) { return scanTeam(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return teams, nil
}

// DeactivateTeam deactivates a team that has no active sub-team.
func (s *Service) DeactivateTeam(ctx context.Context, p rallye.Principal, id uuid.UUID) (Team, error) {
	var team Team
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var activeChildren bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND parent_id = $2 AND active)`,
			p.TenantID, id).Scan(&activeChildren); err != nil {
			return err
		}
		if activeChildren {
			return rallye.Errorf(rallye.CodeFailedPrecondition, "deactivate the sub-teams first")
		}
		var err error
		team, err = scanTeam(tx.QueryRow(ctx, `UPDATE teams SET active = false,
				updated_at = CASE WHEN active THEN now() ELSE updated_at END
			WHERE tenant_id = $1 AND id = $2 RETURNING `+teamColumns, p.TenantID, id))
		if postgres.IsNoRows(err) {
			return rallye.NotFound("team")
		}
		return err
	})
	return team, err
}

// TeamAndDescendants returns the ids of a team and of every team below it.
// Managers act on the teams they belong to and on their sub-teams.
func TeamAndDescendants(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, roots []uuid.UUID) ([]uuid.UUID, error) {
	rows, err := tx.Query(ctx, `WITH RECURSIVE down AS (
			SELECT id FROM teams WHERE tenant_id = $1 AND id = ANY($2)
			UNION
			SELECT t.id FROM teams t JOIN down ON t.tenant_id = $1 AND t.parent_id = down.id
		) SELECT id FROM down`, tenantID, roots)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
}

// ManagedTeams returns the teams a person belongs to and every team below
// them: the teams a manager acts on.
func ManagedTeams(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID) ([]uuid.UUID, error) {
	rows, err := tx.Query(ctx, `SELECT team_id FROM team_members WHERE tenant_id = $1 AND user_id = $2`, tenantID, userID)
	if err != nil {
		return nil, err
	}
	roots, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil || len(roots) == 0 {
		return nil, err
	}
	return TeamAndDescendants(ctx, tx, tenantID, roots)
}
