package org

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Reps maps the people named by an event batch: by id and by CRM id. Both
// active and deactivated people resolve, so that late events of someone who
// left still count for the period they happened in.
type Reps struct {
	ByExternalID map[string]uuid.UUID
	Known        map[uuid.UUID]bool
	// Teams are each person's current teams.
	Teams map[uuid.UUID][]uuid.UUID
}

// ResolveReps looks people up inside the caller's transaction.
func ResolveReps(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, ids []uuid.UUID, externalIDs []string) (Reps, error) {
	r := Reps{ByExternalID: map[string]uuid.UUID{}, Known: map[uuid.UUID]bool{}, Teams: map[uuid.UUID][]uuid.UUID{}}
	if len(ids) == 0 && len(externalIDs) == 0 {
		return r, nil
	}
	rows, err := tx.Query(ctx, `SELECT u.id, coalesce(u.external_id, ''),
			coalesce((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m
				WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id), '{}')
		FROM users u WHERE u.tenant_id = $1 AND (u.id = ANY($2) OR u.external_id = ANY($3))`,
		tenantID, ids, externalIDs)
	if err != nil {
		return r, fmt.Errorf("resolve reps: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var ext string
		var teams []uuid.UUID
		if err := rows.Scan(&id, &ext, &teams); err != nil {
			return r, err
		}
		r.Known[id] = true
		if ext != "" {
			r.ByExternalID[ext] = id
		}
		r.Teams[id] = teams
	}
	return r, rows.Err()
}
