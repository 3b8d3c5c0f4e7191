package challenge

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Finer authorization, on top of the role table of internal/api:
//
//   - admins see and manage every challenge; HR sees every challenge;
//   - a manager manages the challenges whose teams are among their teams and
//     sub-teams (org.ManagedTeams) and whose people listed by name belong to
//     those teams, and sees the challenges that cover one of their teams
//     (named, or through a parent team);
//   - anyone sees a published challenge they take part in or may join.
//
// A challenge the caller may not see is NotFound, like another company's.

// rights is what the caller may do with one challenge.
type rights struct {
	see, manage bool
}

// viewer caches what authorization needs about the caller.
type viewer struct {
	p       rallye.Principal
	managed []uuid.UUID // nil until read; managers only
	read    bool
}

func (v *viewer) managedTeams(ctx context.Context, tx pgx.Tx) ([]uuid.UUID, error) {
	if !v.read {
		v.read = true
		if v.p.Has(rallye.RoleManager) && v.p.IsPerson() {
			var err error
			if v.managed, err = org.ManagedTeams(ctx, tx, v.p.TenantID, v.p.UserID); err != nil {
				return nil, fmt.Errorf("managed teams: %w", err)
			}
		}
	}
	return v.managed, nil
}

// withinManaged reports whether a scope (teams, people) lies inside the
// manager's teams.
func (v *viewer) withinManaged(ctx context.Context, tx pgx.Tx, teams, users []uuid.UUID) (bool, error) {
	managed, err := v.managedTeams(ctx, tx)
	if err != nil || len(managed) == 0 {
		return false, err
	}
	for _, t := range teams {
		if !slices.Contains(managed, t) {
			return false, nil
		}
	}
	if len(users) == 0 {
		return true, nil
	}
	var inside int
	err = tx.QueryRow(ctx, `SELECT count(DISTINCT user_id) FROM team_members
		WHERE tenant_id = $1 AND user_id = ANY($2) AND team_id = ANY($3)`, v.p.TenantID, users, managed).Scan(&inside)
	if err != nil {
		return false, fmt.Errorf("check people: %w", err)
	}
	return inside == len(users), nil
}

// rightsOn returns the caller's rights on c.
func (v *viewer) rightsOn(ctx context.Context, tx pgx.Tx, c *Challenge) (rights, error) {
	switch {
	case v.p.Has(rallye.RoleAdmin):
		return rights{see: true, manage: true}, nil
	case v.p.Has(rallye.RoleHR):
		return rights{see: true}, nil
	}
	if v.p.Has(rallye.RoleManager) {
		ok, err := v.withinManaged(ctx, tx, c.TeamIDs, c.UserIDs)
		if err != nil {
			return rights{}, err
		}
		if ok {
			return rights{see: true, manage: true}, nil
		}
		// A challenge of their team, a sub-team or a parent team touches
		// their people.
		managed, _ := v.managedTeams(ctx, tx)
		covered, err := org.TeamAndDescendants(ctx, tx, c.TenantID, c.TeamIDs)
		if err != nil {
			return rights{}, fmt.Errorf("read teams: %w", err)
		}
		for _, t := range covered {
			if slices.Contains(managed, t) {
				return rights{see: true}, nil
			}
		}
	}
	if c.State == StateDraft || !v.p.IsPerson() {
		return rights{}, nil
	}
	var enrolled bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM challenge_enrollments
		WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = $3)`, c.TenantID, c.ID, v.p.UserID).Scan(&enrolled); err != nil {
		return rights{}, fmt.Errorf("read enrollment: %w", err)
	}
	if enrolled {
		return rights{see: true}, nil
	}
	o, err := loadOrg(ctx, tx, c.TenantID, []uuid.UUID{v.p.UserID})
	if err != nil {
		return rights{}, err
	}
	return rights{see: o.place(c, v.p.UserID).eligible}, nil
}

// visible reads a challenge the caller may see (NotFound otherwise).
func (v *viewer) visible(ctx context.Context, tx pgx.Tx, id uuid.UUID, lock lockMode) (*Challenge, rights, error) {
	c, err := getChallenge(ctx, tx, v.p.TenantID, id, lock)
	if err != nil {
		return nil, rights{}, err
	}
	r, err := v.rightsOn(ctx, tx, c)
	if err != nil {
		return nil, rights{}, err
	}
	if !r.see {
		return nil, rights{}, rallye.NotFound("challenge")
	}
	return c, r, nil
}

// managed reads a challenge the caller may manage: NotFound when they may
// not see it, PermissionDenied when they only see it.
func (v *viewer) managedChallenge(ctx context.Context, tx pgx.Tx, id uuid.UUID, lock lockMode) (*Challenge, error) {
	c, r, err := v.visible(ctx, tx, id, lock)
	if err != nil {
		return nil, err
	}
	if !r.manage {
		return nil, rallye.Errorf(rallye.CodePermissionDenied, "only the managers of the challenge's teams may change it")
	}
	return c, nil
}

// checkScope checks the teams and people of a challenge: they exist in the
// company and are active, and a manager may only name their own.
func (v *viewer) checkScope(ctx context.Context, tx pgx.Tx, teams, users []uuid.UUID) error {
	if len(teams) == 0 && len(users) == 0 {
		return rallye.Invalid("team_ids", "name at least one team or person")
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM teams WHERE tenant_id = $1 AND id = ANY($2) AND active`,
		v.p.TenantID, teams).Scan(&n); err != nil {
		return fmt.Errorf("check teams: %w", err)
	}
	if n != len(teams) {
		return &rallye.Error{Code: rallye.CodeNotFound, Field: "team_ids", Message: "a team does not exist or is deactivated"}
	}
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM users WHERE tenant_id = $1 AND id = ANY($2) AND active`,
		v.p.TenantID, users).Scan(&n); err != nil {
		return fmt.Errorf("check people: %w", err)
	}
	if n != len(users) {
		return &rallye.Error{Code: rallye.CodeNotFound, Field: "user_ids", Message: "a person does not exist or is deactivated"}
	}
	if v.p.Has(rallye.RoleAdmin) {
		return nil
	}
	ok, err := v.withinManaged(ctx, tx, teams, users)
	if err != nil {
		return err
	}
	if !ok {
		return &rallye.Error{Code: rallye.CodePermissionDenied, Field: "team_ids",
			Message: "a manager launches challenges for their own teams and sub-teams and their people"}
	}
	return nil
}

// uniqueIDs returns ids sorted without repeats (never nil: arrays are NOT
// NULL columns).
func uniqueIDs(ids []uuid.UUID) []uuid.UUID {
	out := append([]uuid.UUID{}, ids...)
	slices.SortFunc(out, compareIDs)
	return slices.Compact(out)
}
