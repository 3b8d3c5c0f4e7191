package kpi

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Target is what a KPI should reach over each period of a kind, for a
// scope, with the thresholds that decide its status.
type Target struct {
	ID         uuid.UUID
	KPIID      uuid.UUID
	KPIKey     string
	PeriodKind period.Kind
	Scope      ScopeRef
	Target     float64
	// AtRisk and OffTrack are the thresholds: for a KPI where higher is
	// better, a projection at or above AtRisk is on track, from OffTrack up
	// to AtRisk at risk, below OffTrack off track (mirrored when lower is
	// better).
	AtRisk    float64
	OffTrack  float64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Status is how a KPI stands against its target.
type Status int16

// Statuses.
const (
	StatusUnknown  Status = 0 // no target, or no value to judge
	StatusOnTrack  Status = 1
	StatusAtRisk   Status = 2
	StatusOffTrack Status = 3
)

func (s Status) String() string {
	return [...]string{"unknown", "on_track", "at_risk", "off_track"}[s]
}

// statusOf judges v against t.
func statusOf(dir Direction, t Target, v *float64) Status {
	if v == nil {
		return StatusUnknown
	}
	x := *v
	if dir == LowerIsBetter {
		switch {
		case x <= t.AtRisk:
			return StatusOnTrack
		case x <= t.OffTrack:
			return StatusAtRisk
		}
		return StatusOffTrack
	}
	switch {
	case x >= t.AtRisk:
		return StatusOnTrack
	case x >= t.OffTrack:
		return StatusAtRisk
	}
	return StatusOffTrack
}

func meets(dir Direction, target float64, v *float64) *bool {
	if v == nil {
		return nil
	}
	ok := *v >= target
	if dir == LowerIsBetter {
		ok = *v <= target
	}
	return &ok
}

// Projection is the expected period-end value.
type Projection struct {
	// Value is the projected period-end value: for counts and sums the pace
	// so far (value ÷ elapsed share of the period, 0 so far giving 0); for
	// rates, averages, medians, stocks and composites the current value.
	Value *float64
	// Trend is the change from the previous period's value.
	Trend *float64
}

func project(agg Aggregation, p period.Period, now time.Time, cur, prev *float64) Projection {
	var pr Projection
	if cur != nil && prev != nil {
		pr.Trend = num(*cur - *prev)
	}
	if !p.Contains(now) {
		pr.Value = cur
		if now.Before(p.Start) {
			pr.Value = nil
		}
		return pr
	}
	if !agg.Cumulative() {
		pr.Value = cur
		return pr
	}
	elapsed := p.Elapsed(now)
	if elapsed <= 0 {
		return pr
	}
	so := 0.0
	if cur != nil {
		so = *cur
	}
	pr.Value = num(so / elapsed)
	return pr
}

// SetTargetRequest sets the target of a KPI for a period kind and scope.
type SetTargetRequest struct {
	KPIKey     string
	PeriodKind period.Kind
	Scope      ScopeRef
	Target     float64
	// AtRisk and OffTrack default to the target and to 80 % of it (120 %
	// when lower is better).
	AtRisk   *float64
	OffTrack *float64
}

// SetTarget creates or replaces a target. Errors: CodeInvalid (thresholds
// out of order for the KPI's direction, a period the KPI is not read over),
// CodeNotFound (KPI, team or person).
func (s *Service) SetTarget(ctx context.Context, p rallye.Principal, req SetTargetRequest) (Target, error) {
	if !req.PeriodKind.Valid() {
		return Target{}, rallye.Invalid("period", "is required")
	}
	if math.IsNaN(req.Target) || math.IsInf(req.Target, 0) {
		return Target{}, rallye.Invalid("target", "must be a number")
	}
	var out Target
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		k, ok := all[req.KPIKey]
		if !ok {
			return rallye.NotFound("KPI")
		}
		if err := checkScope(ctx, tx, p.TenantID, req.Scope, "scope"); err != nil {
			return err
		}
		dir := k.Current().Definition.Direction
		t := Target{KPIID: k.ID, KPIKey: k.Key, PeriodKind: req.PeriodKind, Scope: req.Scope, Target: req.Target}
		t.AtRisk, t.OffTrack = req.Target, req.Target*0.8
		if dir == LowerIsBetter {
			t.OffTrack = req.Target * 1.2
		}
		if req.Target < 0 {
			t.OffTrack = req.Target - math.Abs(req.Target)*0.2
			if dir == LowerIsBetter {
				t.OffTrack = req.Target + math.Abs(req.Target)*0.2
			}
		}
		if req.AtRisk != nil {
			t.AtRisk = *req.AtRisk
		}
		if req.OffTrack != nil {
			t.OffTrack = *req.OffTrack
		}
		if dir == HigherIsBetter && !(t.OffTrack <= t.AtRisk && t.AtRisk <= t.Target) {
			return rallye.Invalid("off_track", "thresholds must satisfy off_track ≤ at_risk ≤ target when higher is better")
		}
		if dir == LowerIsBetter && !(t.OffTrack >= t.AtRisk && t.AtRisk >= t.Target) {
			return rallye.Invalid("off_track", "thresholds must satisfy off_track ≥ at_risk ≥ target when lower is better")
		}
		err = tx.QueryRow(ctx, `INSERT INTO kpi_targets (tenant_id, id, kpi_id, period_kind, scope_kind, scope_id, target, at_risk, off_track)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (tenant_id, kpi_id, period_kind, scope_kind, scope_id) DO UPDATE SET
				target = excluded.target, at_risk = excluded.at_risk, off_track = excluded.off_track, updated_at = now()
			RETURNING id, created_at, updated_at`,
			p.TenantID, newID(), k.ID, string(req.PeriodKind), int16(req.Scope.Kind), req.Scope.ID, t.Target, t.AtRisk, t.OffTrack,
		).Scan(&t.ID, &t.CreatedAt, &t.UpdatedAt)
		if err != nil {
			return fmt.Errorf("write target: %w", err)
		}
		out = t
		return nil
	})
	return out, err
}

// checkScope checks that a scope's team or person is the company's.
func checkScope(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, s ScopeRef, field string) error {
	var exists bool
	var err error
	switch s.Kind {
	case ScopeCompany:
		if s.ID != uuid.Nil {
			return rallye.Invalid(field+".id", "must be empty for the company")
		}
		return nil
	case ScopeTeam:
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM teams WHERE tenant_id = $1 AND id = $2)`, tenantID, s.ID).Scan(&exists)
		if err == nil && !exists {
			return rallye.NotFound("team")
		}
	case ScopePerson:
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE tenant_id = $1 AND id = $2)`, tenantID, s.ID).Scan(&exists)
		if err == nil && !exists {
			return rallye.NotFound("person")
		}
	default:
		return rallye.Invalid(field+".kind", "is required")
	}
	return err
}

// DeleteTarget removes a target (and its alert states; raised alerts stay).
func (s *Service) DeleteTarget(ctx context.Context, p rallye.Principal, id uuid.UUID) error {
	return s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM kpi_targets WHERE tenant_id = $1 AND id = $2`, p.TenantID, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return rallye.NotFound("target")
		}
		return nil
	})
}

// ListTargetsRequest filters targets.
type ListTargetsRequest struct {
	KPIKey string
}

// ListTargets returns the company's targets.
func (s *Service) ListTargets(ctx context.Context, p rallye.Principal, req ListTargetsRequest) ([]Target, error) {
	var out []Target
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		out, err = loadTargets(ctx, tx, p.TenantID, req.KPIKey)
		return err
	})
	return out, err
}

func loadTargets(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, key string) ([]Target, error) {
	rows, err := tx.Query(ctx, `SELECT t.id, t.kpi_id, d.key, t.period_kind, t.scope_kind, t.scope_id, t.target, t.at_risk,
			t.off_track, t.created_at, t.updated_at
		FROM kpi_targets t JOIN kpi_definitions d ON d.tenant_id = t.tenant_id AND d.id = t.kpi_id
		WHERE t.tenant_id = $1 AND ($2 = '' OR d.key = $2)
		ORDER BY d.key, t.period_kind, t.scope_kind, t.scope_id`, tenantID, key)
	if err != nil {
		return nil, fmt.Errorf("read targets: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Target, error) {
		var t Target
		var kind string
		var sk int16
		err := r.Scan(&t.ID, &t.KPIID, &t.KPIKey, &kind, &sk, &t.Scope.ID, &t.Target, &t.AtRisk, &t.OffTrack, &t.CreatedAt, &t.UpdatedAt)
		t.PeriodKind, t.Scope.Kind = period.Kind(kind), ScopeKind(sk)
		return t, err
	})
}
