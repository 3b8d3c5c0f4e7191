package org

import (
	"context"
	"fmt"
	"net/mail"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

const userColumns = `u.tenant_id, u.id, u.display_name, u.email, u.locale, u.time_zone, coalesce(u.external_id, ''),
	u.roles, u.active, u.created_at, u.updated_at, u.hire_date,
	coalesce((SELECT array_agg(m.team_id ORDER BY m.team_id) FROM team_members m
		WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id), '{}')`

func scanUser(row pgx.Row) (User, error) {
	var u User
	var roles []string
	var hired *time.Time
	err := row.Scan(&u.TenantID, &u.ID, &u.DisplayName, &u.Email, &u.Locale, &u.TimeZone, &u.ExternalID,
		&roles, &u.Active, &u.CreatedAt, &u.UpdatedAt, &hired, &u.TeamIDs)
	if hired != nil {
		u.HireDate = time.Date(hired.Year(), hired.Month(), hired.Day(), 0, 0, 0, 0, time.UTC)
	}
	for _, r := range roles {
		u.Roles = append(u.Roles, rallye.Role(r))
	}
	return u, err
}

func getUser(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (User, error) {
	u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.tenant_id = $1 AND u.id = $2`, tenantID, id))
	if postgres.IsNoRows(err) {
		return u, rallye.NotFound("user")
	}
	return u, err
}

// checkUserInput checks what protovalidate cannot: rules that need code. The
// field names are relative to the user object.
func checkUserInput(in UserInput) error {
	if in.DisplayName == "" {
		return rallye.Invalid("display_name", "is required")
	}
	if a, err := mail.ParseAddress(in.Email); err != nil || a.Address != in.Email {
		return rallye.Invalid("email", "is not an e-mail address")
	}
	if !in.Locale.Valid() {
		return rallye.Invalid("locale", "must be fr or en")
	}
	if err := checkTimeZone("time_zone", in.TimeZone); err != nil {
		return err
	}
	if !in.HireDate.IsZero() && (in.HireDate.Before(MinHireDate) || in.HireDate.After(MaxHireDate)) {
		return rallye.Invalid("hire_date", "must be from 1950-01-01 to 2099-12-31")
	}
	if len(in.Roles) == 0 {
		return rallye.Invalid("roles", "at least one role is required")
	}
	for _, r := range in.Roles {
		if !slices.Contains(rallye.PersonRoles, r) {
			return rallye.Invalid("roles", "%q is not a role a person can hold", r)
		}
	}
	return nil
}

func roleStrings(roles []rallye.Role) []string {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if !slices.Contains(out, string(r)) {
			out = append(out, string(r))
		}
	}
	slices.Sort(out)
	return out
}

func userWriteError(err error) error {
	switch {
	case postgres.IsUniqueViolation(err, "users_email_key"):
		return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "email", Message: "is used by another person of the company"}
	case postgres.IsUniqueViolation(err, "users_external_id_key"):
		return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "external_id", Message: "is used by another person of the company", Cause: err}
	}
	return err
}

func insertUser(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, in UserInput) (User, error) {
	if err := checkTeams(ctx, tx, tenantID, in.TeamIDs); err != nil {
		return User{}, err
	}
	_, err := tx.Exec(ctx, `INSERT INTO users (tenant_id, id, display_name, email, locale, time_zone, external_id, roles, hire_date)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		tenantID, id, in.DisplayName, in.Email, in.Locale, in.TimeZone, nullable(in.ExternalID), roleStrings(in.Roles),
		nullableDate(in.HireDate))
	if err != nil {
		return User{}, userWriteError(err)
	}
	if _, err := setTeams(ctx, tx, tenantID, id, in.TeamIDs); err != nil {
		return User{}, err
	}
	return getUser(ctx, tx, tenantID, id)
}

// checkTeams verifies that every team exists and is active.
func checkTeams(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, ids []uuid.UUID) error {
	if len(ids) == 0 {
		return nil
	}
	var found int
	err := tx.QueryRow(ctx, `SELECT count(*) FROM teams WHERE tenant_id = $1 AND id = ANY($2) AND active`,
		tenantID, ids).Scan(&found)
	if err != nil {
		return fmt.Errorf("check teams: %w", err)
	}
	if found != len(ids) {
		return &rallye.Error{Code: rallye.CodeNotFound, Field: "team_ids", Message: "a team does not exist or is deactivated"}
	}
	return nil
}

// setTeams makes the person a member of exactly ids and reports whether that
// changed anything.
func setTeams(ctx context.Context, tx pgx.Tx, tenantID, userID uuid.UUID, ids []uuid.UUID) (bool, error) {
	if ids == nil {
		ids = []uuid.UUID{}
	}
	del, err := tx.Exec(ctx, `DELETE FROM team_members WHERE tenant_id = $1 AND user_id = $2 AND NOT (team_id = ANY($3))`,
		tenantID, userID, ids)
	if err != nil {
		return false, fmt.Errorf("remove memberships: %w", err)
	}
	ins, err := tx.Exec(ctx, `INSERT INTO team_members (tenant_id, team_id, user_id)
		SELECT $1, unnest($3::uuid[]), $2 ON CONFLICT DO NOTHING`, tenantID, userID, ids)
	if err != nil {
		return false, fmt.Errorf("add memberships: %w", err)
	}
	return del.RowsAffected()+ins.RowsAffected() > 0, nil
}

// CreateUserRequest describes a new person.
type CreateUserRequest struct {
	User      UserInput
	RequestID string
}

// CreateUser creates a person, or returns the person an earlier call with the
// same request id created.
func (s *Service) CreateUser(ctx context.Context, p rallye.Principal, req CreateUserRequest) (User, error) {
	if err := checkUserInput(req.User); err != nil {
		return User{}, prefixField(err, "user.")
	}
	var user User
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{
			Caller: p, Operation: "CreateUser", RequestID: req.RequestID, Request: req,
		}, newID())
		if err != nil {
			return err
		}
		if !fresh {
			user, err = getUser(ctx, tx, p.TenantID, id)
			return err
		}
		user, err = insertUser(ctx, tx, p.TenantID, id, req.User)
		if err != nil {
			return prefixField(err, "user.")
		}
		return s.arrived(ctx, tx, p.TenantID, user.ExternalID)
	})
	return user, err
}

// prefixField qualifies the field of a domain error with the request path.
func prefixField(err error, prefix string) error {
	if e, ok := rallye.AsError(err); ok && e.Field != "" {
		c := *e
		c.Field = prefix + c.Field
		return &c
	}
	return err
}

// User returns one person of the caller's company.
func (s *Service) User(ctx context.Context, p rallye.Principal, id uuid.UUID) (User, error) {
	var u User
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		u, err = getUser(ctx, tx, p.TenantID, id)
		return err
	})
	return u, err
}

// Me returns the calling person and their company.
func (s *Service) Me(ctx context.Context, p rallye.Principal) (User, Tenant, error) {
	if err := requirePerson(p); err != nil {
		return User{}, Tenant{}, err
	}
	var u User
	var t Tenant
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		if u, err = getUser(ctx, tx, p.TenantID, p.UserID); err != nil {
			return err
		}
		t, err = getTenant(ctx, tx, p.TenantID)
		return err
	})
	return u, t, err
}

// UserPatch holds the fields to change; nil leaves a field as it is.
type UserPatch struct {
	DisplayName *string
	Email       *string
	Locale      *Locale
	TimeZone    *string
	ExternalID  *string
	Roles       *[]rallye.Role
	TeamIDs     *[]uuid.UUID
	// HireDate: a zero time clears it.
	HireDate *time.Time
}

// UpdateUser changes a person.
func (s *Service) UpdateUser(ctx context.Context, p rallye.Principal, id uuid.UUID, patch UserPatch) (User, error) {
	var user User
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		current, err := getUser(ctx, tx, p.TenantID, id)
		if err != nil {
			return err
		}
		in := applyPatch(current, patch)
		if err := checkUserInput(in); err != nil {
			return prefixField(err, "user.")
		}
		if patch.TeamIDs != nil {
			if err := checkTeams(ctx, tx, p.TenantID, in.TeamIDs); err != nil {
				return prefixField(err, "user.")
			}
		}
		user, _, err = s.writeUser(ctx, tx, current, in)
		if err != nil {
			return prefixField(err, "user.")
		}
		if user.ExternalID != current.ExternalID {
			return s.arrived(ctx, tx, p.TenantID, user.ExternalID)
		}
		return nil
	})
	if err == nil {
		s.Forget(p.TenantID, id)
	}
	return user, err
}

func applyPatch(u User, patch UserPatch) UserInput {
	in := UserInput{
		DisplayName: u.DisplayName, Email: u.Email, Locale: u.Locale, TimeZone: u.TimeZone,
		ExternalID: u.ExternalID, Roles: u.Roles, TeamIDs: u.TeamIDs, HireDate: u.HireDate,
	}
	if patch.HireDate != nil {
		in.HireDate = *patch.HireDate
	}
	if patch.DisplayName != nil {
		in.DisplayName = *patch.DisplayName
	}
	if patch.Email != nil {
		in.Email = *patch.Email
	}
	if patch.Locale != nil {
		in.Locale = *patch.Locale
	}
	if patch.TimeZone != nil {
		in.TimeZone = *patch.TimeZone
	}
	if patch.ExternalID != nil {
		in.ExternalID = *patch.ExternalID
	}
	if patch.Roles != nil {
		in.Roles = *patch.Roles
	}
	if patch.TeamIDs != nil {
		in.TeamIDs = *patch.TeamIDs
	}
	return in
}

// writeUser stores in over current and reports whether anything changed.
func (s *Service) writeUser(ctx context.Context, tx pgx.Tx, current User, in UserInput) (User, bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE users SET display_name = $3, email = $4, locale = $5, time_zone = $6,
			external_id = $7, roles = $8, hire_date = $9, updated_at = now()
		WHERE tenant_id = $1 AND id = $2
		  AND (display_name, email, locale, time_zone, coalesce(external_id, ''), roles, hire_date)
		      IS DISTINCT FROM ($3, $4, $5, $6, coalesce($7, ''), $8, $9::date)`,
		current.TenantID, current.ID, in.DisplayName, in.Email, in.Locale, in.TimeZone,
		nullable(in.ExternalID), roleStrings(in.Roles), nullableDate(in.HireDate))
	if err != nil {
		return User{}, false, userWriteError(err)
	}
	teamsChanged, err := setTeams(ctx, tx, current.TenantID, current.ID, in.TeamIDs)
	if err != nil {
		return User{}, false, err
	}
	changed := tag.RowsAffected() > 0 || teamsChanged
	if teamsChanged && tag.RowsAffected() == 0 {
		if _, err := tx.Exec(ctx, `UPDATE users SET updated_at = now() WHERE tenant_id = $1 AND id = $2`,
			current.TenantID, current.ID); err != nil {
			return User{}, false, err
		}
	}
	u, err := getUser(ctx, tx, current.TenantID, current.ID)
	return u, changed, err
}

// ListUsersRequest selects a page of people.
type ListUsersRequest struct {
	Size            int
	Cursor          page.Cursor
	TeamID          uuid.UUID
	IncludeInactive bool
}

// ListUsers returns a page of people in creation order.
func (s *Service) ListUsers(ctx context.Context, p rallye.Principal, req ListUsersRequest) ([]User, error) {
	var users []User
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if req.TeamID != uuid.Nil {
			if _, err := getTeam(ctx, tx, p.TenantID, req.TeamID); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `SELECT `+userColumns+` FROM users u
			WHERE u.tenant_id = $1 AND u.id > $2 AND (u.active OR $3)
			  AND ($4::uuid IS NULL OR EXISTS (SELECT 1 FROM team_members m
			       WHERE m.tenant_id = u.tenant_id AND m.user_id = u.id AND m.team_id = $4))
			ORDER BY u.id LIMIT $5`,
			p.TenantID, req.Cursor.After, req.IncludeInactive, nullableID(req.TeamID), req.Size)
		if err != nil {
			return err
		}
		users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// DeactivateUser deactivates a person; their credentials stop working.
func (s *Service) DeactivateUser(ctx context.Context, p rallye.Principal, id uuid.UUID) (User, error) {
	if p.UserID == id {
		return User{}, rallye.Errorf(rallye.CodeFailedPrecondition, "you cannot deactivate yourself")
	}
	var user User
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE users SET active = false, updated_at = now()
			WHERE tenant_id = $1 AND id = $2 AND active`, p.TenantID, id); err != nil {
			return err
		}
		var err error
		user, err = getUser(ctx, tx, p.TenantID, id)
		return err
	})
	if err == nil {
		s.Forget(p.TenantID, id)
	}
	return user, err
}

// Access returns a person's current standing for authentication.
func (s *Service) Access(ctx context.Context, tenantID, userID uuid.UUID) (auth.Access, error) {
	var a auth.Access
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var roles []string
		err := tx.QueryRow(ctx, `SELECT active, roles FROM users WHERE tenant_id = $1 AND id = $2`, tenantID, userID).
			Scan(&a.Active, &roles)
		if postgres.IsNoRows(err) {
			return rallye.NotFound("user")
		}
		for _, r := range roles {
			a.Roles = append(a.Roles, rallye.Role(r))
		}
		return err
	})
	return a, err
}

// UserByRef finds a person by id or e-mail, for operator commands such as
// `rallye token --user camille@example.com`.
func (s *Service) UserByRef(ctx context.Context, tenantID uuid.UUID, ref string) (User, error) {
	var u User
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		if id, perr := uuid.Parse(ref); perr == nil {
			u, err = getUser(ctx, tx, tenantID, id)
			return err
		}
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users u
			WHERE u.tenant_id = $1 AND lower(u.email) = lower($2)`, tenantID, ref))
		if postgres.IsNoRows(err) {
			return rallye.NotFound("user")
		}
		return err
	})
	return u, err
}

// Tenants lists every company, for the operator command `rallye tenant list`.
func (s *Service) Tenants(ctx context.Context) ([]Tenant, error) {
	var out []Tenant
	// Across tenants: an operator lists the deployment's companies.
	err := s.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY slug`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) { return scanTenant(r) })
		return err
	})
	return out, err
}
