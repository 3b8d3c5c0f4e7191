package kpi

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Alert says that a KPI crossed into at risk or off track for a target's
// period and scope. One alert is raised per target, period and level, the
// first time the status crosses into it: not on every event.
type Alert struct {
	ID          uuid.UUID
	TargetID    uuid.UUID
	KPIID       uuid.UUID
	KPIKey      string
	PeriodKind  period.Kind
	PeriodKey   string
	PeriodStart time.Time
	PeriodEnd   time.Time
	Scope       ScopeRef
	// Level is StatusAtRisk or StatusOffTrack.
	Level      Status
	Value      *float64
	Projection *float64
	Target     float64
	// OwnerID is the KPI's owner when the alert was raised.
	OwnerID        uuid.UUID
	RaisedAt       time.Time
	AcknowledgedAt time.Time
	AcknowledgedBy uuid.UUID
}

// Audience is what a person may see of KPI scopes and the objects on them.
type Audience struct {
	// All: admin, HR and integrations see everything.
	All     bool
	Me      uuid.UUID
	Manager bool
	// Teams are a manager's teams with their sub-teams; People their
	// members.
	Teams  []uuid.UUID
	People []uuid.UUID
}

// Sees reports whether the audience may see a scope: a manager sees the
// company, their teams and their teams' people; a rep themselves.
func (a Audience) Sees(s ScopeRef) bool {
	switch {
	case a.All:
		return true
	case s.Kind == ScopePerson && s.ID == a.Me:
		return true
	case !a.Manager:
		return false
	case s.Kind == ScopeCompany:
		return true
	case s.Kind == ScopeTeam:
		return slices.Contains(a.Teams, s.ID)
	}
	return slices.Contains(a.People, s.ID)
}

func audienceOf(ctx context.Context, tx pgx.Tx, p rallye.Principal) (Audience, error) {
	a := Audience{Me: p.UserID}
	if p.Has(rallye.RoleAdmin, rallye.RoleHR, rallye.RoleIntegration) {
		a.All = true
		return a, nil
	}
	if !p.Has(rallye.RoleManager) {
		return a, nil
	}
	a.Manager = true
	teams, err := org.ManagedTeams(ctx, tx, p.TenantID, p.UserID)
	if err != nil {
		return a, fmt.Errorf("managed teams: %w", err)
	}
	a.Teams = teams
	if len(teams) > 0 {
		rows, err := tx.Query(ctx, `SELECT DISTINCT user_id FROM team_members WHERE tenant_id = $1 AND team_id = ANY($2)`, p.TenantID, teams)
		if err != nil {
			return a, err
		}
		if a.People, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID]); err != nil {
			return a, err
		}
	}
	return a, nil
}

// AudienceOf returns what p may see.
func (s *Service) AudienceOf(ctx context.Context, p rallye.Principal) (Audience, error) {
	var a Audience
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		var err error
		a, err = audienceOf(ctx, tx, p)
		return err
	})
	return a, err
}

// EvaluateAlerts judges every target of the company for its current
// period, records the status, and raises an alert when the status crosses
// into at risk or off track. It returns the alerts raised.
func (s *Service) EvaluateAlerts(ctx context.Context, tenantID uuid.UUID) ([]Alert, error) {
	var raised []Alert
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		raised = nil
		// One evaluation at a time per company, whichever instance runs it.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('kpi-alerts:' || $1::text, 0))`, tenantID); err != nil {
			return err
		}
		targets, err := loadTargets(ctx, tx, tenantID, "")
		if err != nil || len(targets) == 0 {
			return err
		}
		r, err := s.newReader(ctx, tx, tenantID, s.Now())
		if err != nil {
			return err
		}
		type groupKey struct {
			kind  period.Kind
			scope ScopeKind
		}
		groups := map[groupKey][]Target{}
		for _, t := range targets {
			if kp, ok := r.kpis[t.KPIKey]; ok && !kp.Archived {
				k := groupKey{t.PeriodKind, t.Scope.Kind}
				groups[k] = append(groups[k], t)
			}
		}
		states, err := alertStates(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		for gk, ts := range groups {
			periods := Series(gk.kind, r.now, r.loc, 2)
			var keys []string
			var scopes []ScopeRef
			for _, t := range ts {
				if !slices.Contains(keys, t.KPIKey) {
					keys = append(keys, t.KPIKey)
				}
				if !slices.Contains(scopes, t.Scope) {
					scopes = append(scopes, t.Scope)
				}
			}
			vals, err := r.values(ctx, keys, scopes, periods)
			if err != nil {
				return err
			}
			cur := periods[1]
			for _, t := range ts {
				si := slices.Index(scopes, t.Scope)
				def := r.kpis[t.KPIKey].Current().Definition
				v, prev := vals[si][1][t.KPIKey].Value, vals[si][0][t.KPIKey].Value
				pr := project(def.Formula.Aggregation, cur, r.now, v, prev)
				st := statusOf(def.Direction, t, pr.Value)
				old := states[stateKey{t.ID, cur.Key()}]
				if st == old {
					continue
				}
				if _, err := tx.Exec(ctx, `INSERT INTO kpi_alert_states (tenant_id, target_id, period_key, status)
					VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, target_id, period_key)
					DO UPDATE SET status = excluded.status, updated_at = now()`, tenantID, t.ID, cur.Key(), int16(st)); err != nil {
					return fmt.Errorf("write alert state: %w", err)
				}
				if st < StatusAtRisk || st <= old {
					continue
				}
				a := Alert{ID: newID(), TargetID: t.ID, KPIID: t.KPIID, KPIKey: t.KPIKey, PeriodKind: t.PeriodKind,
					PeriodKey: cur.Key(), PeriodStart: cur.Start, PeriodEnd: cur.End, Scope: t.Scope, Level: st,
					Value: v, Projection: pr.Value, Target: t.Target, OwnerID: def.OwnerID, RaisedAt: s.Now()}
				tag, err := tx.Exec(ctx, `INSERT INTO kpi_alerts (tenant_id, id, target_id, kpi_id, period_kind, period_key,
						period_start, period_end, scope_kind, scope_id, level, value, projection, target, owner_id, raised_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT DO NOTHING`,
					tenantID, a.ID, a.TargetID, a.KPIID, string(a.PeriodKind), a.PeriodKey, a.PeriodStart, a.PeriodEnd,
					int16(a.Scope.Kind), a.Scope.ID, int16(a.Level), a.Value, a.Projection, a.Target, a.OwnerID, a.RaisedAt)
				if err != nil {
					return fmt.Errorf("raise alert: %w", err)
				}
				if tag.RowsAffected() == 1 {
					raised = append(raised, a)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("evaluate alerts: %w", err)
	}
	return raised, nil
}

type stateKey struct {
	target uuid.UUID
	period string
}

func alertStates(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (map[stateKey]Status, error) {
	rows, err := tx.Query(ctx, `SELECT target_id, period_key, status FROM kpi_alert_states WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[stateKey]Status{}
	for rows.Next() {
		var k stateKey
		var st int16
		if err := rows.Scan(&k.target, &k.period, &st); err != nil {
			return nil, err
		}
		out[k] = Status(st)
	}
	return out, rows.Err()
}

const alertColumns = `a.id, a.target_id, a.kpi_id, d.key, a.period_kind, a.period_key, a.period_start, a.period_end,
	a.scope_kind, a.scope_id, a.level, a.value, a.projection, a.target, a.owner_id, a.raised_at, a.acknowledged_at,
	a.acknowledged_by`

func scanAlert(r pgx.Row) (Alert, error) {
	var a Alert
	var kind string
	var sk, level int16
	var ackAt *time.Time
	var ackBy *uuid.UUID
	err := r.Scan(&a.ID, &a.TargetID, &a.KPIID, &a.KPIKey, &kind, &a.PeriodKey, &a.PeriodStart, &a.PeriodEnd, &sk, &a.Scope.ID,
		&level, &a.Value, &a.Projection, &a.Target, &a.OwnerID, &a.RaisedAt, &ackAt, &ackBy)
	a.PeriodKind, a.Scope.Kind, a.Level = period.Kind(kind), ScopeKind(sk), Status(level)
	if ackAt != nil {
		a.AcknowledgedAt = *ackAt
	}
	if ackBy != nil {
		a.AcknowledgedBy = *ackBy
	}
	return a, err
}

// ListAlertsRequest selects a page of alerts, most recent first.
type ListAlertsRequest struct {
	Size   int
	Cursor page.Cursor
	// Open keeps the alerts not acknowledged yet.
	Open   bool
	KPIKey string
}

// visibleSQL restricts rows with owner_id, scope_kind and scope_id to an
// audience ($2 all, $3 me, $4 manager, $5 teams, $6 people).
const visibleSQL = `($2 OR owner_id = $3 OR (scope_kind = 2 AND scope_id = $3)
	OR ($4 AND (scope_kind = 0 OR (scope_kind = 1 AND scope_id = ANY($5)) OR (scope_kind = 2 AND scope_id = ANY($6)))))`

// ListAlerts returns the alerts the caller may see: admin and HR all of
// them; a manager those on the company, their teams and their people, and
// those they own; anyone those they own and those on themselves.
func (s *Service) ListAlerts(ctx context.Context, p rallye.Principal, req ListAlertsRequest) ([]Alert, error) {
	var out []Alert
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		a, err := audienceOf(ctx, tx, p)
		if err != nil {
			return err
		}
		before := req.Cursor.After
		if before == uuid.Nil {
			before = uuid.Max
		}
		rows, err := tx.Query(ctx, `SELECT `+alertColumns+` FROM (SELECT * FROM kpi_alerts WHERE tenant_id = $1 AND `+visibleSQL+`) a
			JOIN kpi_definitions d ON d.tenant_id = a.tenant_id AND d.id = a.kpi_id
			WHERE a.id < $7 AND (NOT $8 OR a.acknowledged_at IS NULL) AND ($9 = '' OR d.key = $9)
			ORDER BY a.id DESC LIMIT $10`,
			p.TenantID, a.All, a.Me, a.Manager, a.Teams, a.People, before, req.Open, req.KPIKey, req.Size)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alert, error) { return scanAlert(r) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	return out, nil
}

// AcknowledgeAlert marks an alert as seen. Idempotent: acknowledging again
// keeps the first acknowledgement. CodeNotFound for an alert the caller may
// not see.
func (s *Service) AcknowledgeAlert(ctx context.Context, p rallye.Principal, id uuid.UUID) (Alert, error) {
	var out Alert
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		a, err := audienceOf(ctx, tx, p)
		if err != nil {
			return err
		}
		var by *uuid.UUID
		if p.UserID != uuid.Nil {
			by = &p.UserID
		}
		tag, err := tx.Exec(ctx, `UPDATE kpi_alerts SET acknowledged_at = coalesce(acknowledged_at, now()),
				acknowledged_by = CASE WHEN acknowledged_at IS NULL THEN $8 ELSE acknowledged_by END
			WHERE tenant_id = $1 AND id = $7 AND `+visibleSQL, p.TenantID, a.All, a.Me, a.Manager, a.Teams, a.People, id, by)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return rallye.NotFound("alert")
		}
		out, err = scanAlert(tx.QueryRow(ctx, `SELECT `+alertColumns+` FROM kpi_alerts a
			JOIN kpi_definitions d ON d.tenant_id = a.tenant_id AND d.id = a.kpi_id WHERE a.tenant_id = $1 AND a.id = $2`, p.TenantID, id))
		if postgres.IsNoRows(err) {
			return rallye.NotFound("alert")
		}
		return err
	})
	return out, err
}
