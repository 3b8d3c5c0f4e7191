package org

import (
	"context"
	"fmt"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

const tenantColumns = `id, name, slug, time_zone, default_locale, currency, created_at`

func scanTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	err := row.Scan(&t.ID, &t.Name, &t.Slug, &t.TimeZone, &t.DefaultLocale, &t.Currency, &t.CreatedAt)
	return t, err
}

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)

// NewTenant describes a company and its first admin.
type NewTenant struct {
	Name          string
	Slug          string
	TimeZone      string
	DefaultLocale Locale
	// Currency defaults to EUR.
	Currency string
	Admin    UserInput
}

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// CreateTenant creates a company with its first admin. It is an operator
// action (`rallye tenant create`): no RPC creates companies.
func (s *Service) CreateTenant(ctx context.Context, nt NewTenant) (Tenant, User, error) {
	if nt.Name == "" {
		return Tenant{}, User{}, rallye.Invalid("name", "is required")
	}
	if !slugPattern.MatchString(nt.Slug) {
		return Tenant{}, User{}, rallye.Invalid("slug", "must be 2 to 63 lowercase letters, digits or dashes")
	}
	if nt.TimeZone == "" {
		return Tenant{}, User{}, rallye.Invalid("time_zone", "is required")
	}
	if err := checkTimeZone("time_zone", nt.TimeZone); err != nil {
		return Tenant{}, User{}, err
	}
	if !nt.DefaultLocale.Valid() {
		return Tenant{}, User{}, rallye.Invalid("default_locale", "must be fr or en")
	}
	if nt.Currency == "" {
		nt.Currency = "EUR"
	}
	if !currencyPattern.MatchString(nt.Currency) {
		return Tenant{}, User{}, rallye.Invalid("currency", "must be an ISO 4217 code such as EUR")
	}
	nt.Admin.Roles = []rallye.Role{rallye.RoleAdmin}
	if nt.Admin.Locale == "" {
		nt.Admin.Locale = nt.DefaultLocale
	}
	if err := checkUserInput(nt.Admin); err != nil {
		return Tenant{}, User{}, err
	}
	var tenant Tenant
	var admin User
	id := newID()
	err := s.db.InTenant(ctx, id, func(tx pgx.Tx) error {
		var err error
		tenant, err = scanTenant(tx.QueryRow(ctx, `INSERT INTO tenants (id, name, slug, time_zone, default_locale, currency)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+tenantColumns, id, nt.Name, nt.Slug, nt.TimeZone, nt.DefaultLocale, nt.Currency))
		if postgres.IsUniqueViolation(err, "tenants_slug_key") {
			return &rallye.Error{Code: rallye.CodeAlreadyExists, Field: "slug", Message: "is taken by another company"}
		}
		if err != nil {
			return fmt.Errorf("insert tenant: %w", err)
		}
		admin, err = insertUser(ctx, tx, id, newID(), nt.Admin)
		return err
	})
	return tenant, admin, err
}

// TenantByRef finds a company by id or slug, across companies: it serves
// operator commands (`rallye token --tenant acme`).
func (s *Service) TenantByRef(ctx context.Context, ref string) (Tenant, error) {
	var t Tenant
	// Across tenants: an operator names a company by its slug.
	err := s.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		var err error
		if id, perr := uuid.Parse(ref); perr == nil {
			t, err = scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1`, id))
		} else {
			t, err = scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE slug = $1`, ref))
		}
		if postgres.IsNoRows(err) {
			return rallye.NotFound("company")
		}
		return err
	})
	return t, err
}

// Tenant returns the caller's company.
func (s *Service) Tenant(ctx context.Context, p rallye.Principal) (Tenant, error) {
	var t Tenant
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		t, err = getTenant(ctx, tx, p.TenantID)
		return err
	})
	return t, err
}

func getTenant(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Tenant, error) {
	t, err := scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1`, id))
	if postgres.IsNoRows(err) {
		return t, rallye.NotFound("company")
	}
	return t, err
}

// TenantPatch holds the fields to change; nil leaves a field as it is.
type TenantPatch struct {
	Name          *string
	TimeZone      *string
	DefaultLocale *Locale
}

// UpdateTenant changes the caller's company profile.
func (s *Service) UpdateTenant(ctx context.Context, p rallye.Principal, patch TenantPatch) (Tenant, error) {
	if patch.TimeZone != nil {
		if *patch.TimeZone == "" {
			return Tenant{}, rallye.Invalid("tenant.time_zone", "is required")
		}
		if err := checkTimeZone("tenant.time_zone", *patch.TimeZone); err != nil {
			return Tenant{}, err
		}
	}
	var t Tenant
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		t, err = scanTenant(tx.QueryRow(ctx, `UPDATE tenants SET
				name = coalesce($2, name),
				time_zone = coalesce($3, time_zone),
				default_locale = coalesce($4, default_locale),
				updated_at = now()
			WHERE id = $1 RETURNING `+tenantColumns, p.TenantID, patch.Name, patch.TimeZone, patch.DefaultLocale))
		if postgres.IsNoRows(err) {
			return rallye.NotFound("company")
		}
		return err
	})
	return t, err
}
