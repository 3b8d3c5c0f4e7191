// Package analytics is what HR and managers read about challenges:
// participation over time and across challenges, by team and by tenure
// band, under the privacy rules below.
//
// Privacy (the README states the same):
//
//   - HR and admins see the whole company and individuals; managers see the
//     people of their teams and sub-teams (org.ManagedTeams), individuals
//     included; reps see only themselves, never an aggregate.
//   - An aggregate over fewer people than the company's minimum group size
//     (Settings.MinGroupSize, DefaultSettings.MinGroupSize unless an admin
//     changed it) is withheld. So is a group whose complement in the
//     population of the challenges is that small (1 to size-1 people): the
//     difference between the population's figure and the group's would
//     reveal them. When exactly one group of a partition (teams, tenure
//     bands) is withheld, the smallest other one is withheld too, so that
//     the total minus the others does not give it away.
//   - Figures over a subset of a group (points and completion over the
//     enrolled, a day's points over that day's active people) are withheld
//     when that subset is smaller than the minimum.
package analytics

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Settings are a company's analytics rules.
type Settings struct {
	// MinGroupSize: no aggregate over fewer people is shown.
	MinGroupSize int
}

// DefaultSettings apply until an admin changes them.
var DefaultSettings = Settings{MinGroupSize: 5}

// Bounds of Settings.MinGroupSize (the table checks them too).
const (
	MinMinGroupSize = 2
	MaxMinGroupSize = 1000
)

// Service is the analytics use cases.
type Service struct {
	db  *postgres.DB
	kpi KPISource
	now func() time.Time
}

// New returns the analytics service.
func New(db *postgres.DB) *Service {
	return &Service{db: db, now: time.Now}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

func readSettings(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (Settings, error) {
	st := DefaultSettings
	err := tx.QueryRow(ctx, `SELECT min_group_size FROM analytics_settings WHERE tenant_id = $1`, tenantID).
		Scan(&st.MinGroupSize)
	if postgres.IsNoRows(err) {
		return DefaultSettings, nil
	}
	if err != nil {
		return st, fmt.Errorf("read analytics settings: %w", err)
	}
	return st, nil
}

// Settings returns the company's analytics rules.
func (s *Service) Settings(ctx context.Context, p rallye.Principal) (Settings, error) {
	var st Settings
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		st, err = readSettings(ctx, tx, p.TenantID)
		return err
	})
	return st, err
}

// UpdateSettings sets the company's analytics rules (admins).
func (s *Service) UpdateSettings(ctx context.Context, p rallye.Principal, st Settings) (Settings, error) {
	if !p.Has(rallye.RoleAdmin) {
		return Settings{}, rallye.Errorf(rallye.CodePermissionDenied, "only admins change the analytics rules")
	}
	if st.MinGroupSize < MinMinGroupSize || st.MinGroupSize > MaxMinGroupSize {
		return Settings{}, rallye.Invalid("settings.min_group_size", "must be from %d to %d", MinMinGroupSize, MaxMinGroupSize)
	}
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO analytics_settings (tenant_id, min_group_size, updated_by)
			VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO UPDATE SET min_group_size = excluded.min_group_size,
				updated_by = excluded.updated_by, updated_at = now()`,
			p.TenantID, st.MinGroupSize, nullableID(p.UserID))
		return err
	})
	if err != nil {
		return Settings{}, fmt.Errorf("update analytics settings: %w", err)
	}
	return st, nil
}

func isNoRows(err error) bool { return postgres.IsNoRows(err) }

func nullableID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}
