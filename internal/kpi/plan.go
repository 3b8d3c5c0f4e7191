package kpi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/rallyehq/rallye/internal/idempotency"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// Criterion is an action plan's success criterion, such as
// "conversion_rate ≥ 0.30 for team X over the month": the plan's KPI read
// for Scope over the period of kind PeriodKind that contains the deadline,
// compared with Threshold.
type Criterion struct {
	Scope      ScopeRef    `json:"scope"`
	Operator   string      `json:"operator"` // >=, >, <=, <
	Threshold  float64     `json:"threshold"`
	PeriodKind period.Kind `json:"period_kind"`
}

func (c Criterion) holds(v float64) bool {
	switch c.Operator {
	case ">=":
		return v >= c.Threshold
	case ">":
		return v > c.Threshold
	case "<=":
		return v <= c.Threshold
	}
	return v < c.Threshold
}

// PlanStatus is where an action plan stands.
type PlanStatus string

// Plan statuses.
const (
	PlanOpen      PlanStatus = "open"
	PlanSucceeded PlanStatus = "succeeded"
	PlanFailed    PlanStatus = "failed"
	// PlanNoData: the KPI had no value at the deadline.
	PlanNoData PlanStatus = "no_data"
)

// ActionPlan follows the seed article's six-step method: a decision
// question (1), a KPI (2), the hypotheses recorded when validating the data
// (3-4), the action decided with an owner, a deadline and a success
// criterion (5), and, at the deadline, the measured result and what was
// learnt (6).
type ActionPlan struct {
	ID            uuid.UUID
	KPIKey        string
	Question      string
	Action        string
	Hypotheses    string
	OwnerID       uuid.UUID
	Deadline      time.Time
	Criterion     Criterion
	AlertID       uuid.UUID
	Status        PlanStatus
	MeasuredValue *float64
	EvaluatedAt   time.Time
	Learnings     string
	CreatedBy     uuid.UUID
	CreatedAt     time.Time
}

// CreatePlanRequest creates an action plan.
type CreatePlanRequest struct {
	KPIKey     string
	Question   string
	Action     string
	Hypotheses string
	OwnerID    uuid.UUID
	Deadline   time.Time
	Criterion  Criterion
	AlertID    uuid.UUID
	RequestID  string
}

// CreatePlan records an action plan and schedules its evaluation at the
// deadline, in the same transaction. Errors: CodeInvalid (deadline not in the
// future, a bad criterion), CodeNotFound (KPI, owner, alert, criterion
// scope), CodePermissionDenied (a manager planning for a scope outside
// their teams).
func (s *Service) CreatePlan(ctx context.Context, p rallye.Principal, req CreatePlanRequest) (ActionPlan, error) {
	if !req.Deadline.After(s.Now()) {
		return ActionPlan{}, rallye.Invalid("deadline", "must be in the future")
	}
	c := req.Criterion
	switch c.Operator {
	case ">=", ">", "<=", "<":
	default:
		return ActionPlan{}, rallye.Invalid("criterion.operator", "must be one of >=, >, <=, <")
	}
	if math.IsNaN(c.Threshold) || math.IsInf(c.Threshold, 0) {
		return ActionPlan{}, rallye.Invalid("criterion.threshold", "must be a number")
	}
	if !c.PeriodKind.Valid() {
		return ActionPlan{}, rallye.Invalid("criterion.period", "is required")
	}
	if strings.TrimSpace(req.Question) == "" {
		return ActionPlan{}, rallye.Invalid("question", "is required")
	}
	if strings.TrimSpace(req.Action) == "" {
		return ActionPlan{}, rallye.Invalid("action", "is required")
	}
	var out ActionPlan
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		id, fresh, err := idempotency.Claim(ctx, tx, idempotency.Key{
			Caller: p, Operation: "CreateActionPlan", RequestID: req.RequestID, Request: req,
		}, newID())
		if err != nil {
			return err
		}
		aud, err := audienceOf(ctx, tx, p)
		if err != nil {
			return err
		}
		if !fresh {
			// A replay answers with the stored plan only if the caller may
			// still plan for its scope.
			if out, err = getPlan(ctx, tx, p.TenantID, id); err != nil {
				return err
			}
			if !aud.Sees(out.Criterion.Scope) {
				return rallye.Errorf(rallye.CodePermissionDenied, "you may not plan for this scope")
			}
			return nil
		}
		all, err := loadKPIs(ctx, tx, p.TenantID)
		if err != nil {
			return err
		}
		k, ok := all[req.KPIKey]
		if !ok {
			return rallye.NotFound("KPI")
		}
		if err := checkScope(ctx, tx, p.TenantID, c.Scope, "criterion.scope"); err != nil {
			return err
		}
		if !aud.Sees(c.Scope) {
			return rallye.Errorf(rallye.CodePermissionDenied, "you may not plan for this scope")
		}
		var ownerActive bool
		err = tx.QueryRow(ctx, `SELECT active FROM users WHERE tenant_id = $1 AND id = $2`, p.TenantID, req.OwnerID).Scan(&ownerActive)
		if postgres.IsNoRows(err) {
			return &rallye.Error{Code: rallye.CodeNotFound, Field: "owner_id", Message: "no such person in the company"}
		}
		if err != nil {
			return err
		}
		if !ownerActive {
			return &rallye.Error{Code: rallye.CodeFailedPrecondition, Field: "owner_id", Message: "the owner is deactivated"}
		}
		var alert *uuid.UUID
		if req.AlertID != uuid.Nil {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kpi_alerts WHERE tenant_id = $1 AND id = $2)`,
				p.TenantID, req.AlertID).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return rallye.NotFound("alert")
			}
			alert = &req.AlertID
		}
		crit, err := json.Marshal(c)
		if err != nil {
			return err
		}
		var by *uuid.UUID
		if p.UserID != uuid.Nil {
			by = &p.UserID
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kpi_action_plans (tenant_id, id, kpi_id, question, action, hypotheses, owner_id,
				deadline, criterion, alert_id, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			p.TenantID, id, k.ID, req.Question, req.Action, req.Hypotheses, req.OwnerID, req.Deadline, crit, alert, by); err != nil {
			return fmt.Errorf("insert action plan: %w", err)
		}
		if err := s.insertJob(ctx, tx, EvaluatePlanArgs{TenantID: p.TenantID, PlanID: id},
			&river.InsertOpts{ScheduledAt: req.Deadline}); err != nil {
			return fmt.Errorf("schedule evaluation: %w", err)
		}
		out, err = getPlan(ctx, tx, p.TenantID, id)
		return err
	})
	return out, err
}

const planColumns = `p.id, d.key, p.question, p.action, p.hypotheses, p.owner_id, p.deadline, p.criterion,
	coalesce(p.alert_id, '00000000-0000-0000-0000-000000000000'), p.status, p.measured_value, p.evaluated_at, p.learnings,
	coalesce(p.created_by, '00000000-0000-0000-0000-000000000000'), p.created_at`

func scanPlan(r pgx.Row) (ActionPlan, error) {
	var a ActionPlan
	var crit []byte
	var status string
	var evaluated *time.Time
	err := r.Scan(&a.ID, &a.KPIKey, &a.Question, &a.Action, &a.Hypotheses, &a.OwnerID, &a.Deadline, &crit, &a.AlertID,
		&status, &a.MeasuredValue, &evaluated, &a.Learnings, &a.CreatedBy, &a.CreatedAt)
	if err != nil {
		return a, err
	}
	a.Status = PlanStatus(status)
	if evaluated != nil {
		a.EvaluatedAt = *evaluated
	}
	return a, json.Unmarshal(crit, &a.Criterion)
}

func getPlan(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (ActionPlan, error) {
	a, err := scanPlan(tx.QueryRow(ctx, `SELECT `+planColumns+` FROM kpi_action_plans p
		JOIN kpi_definitions d ON d.tenant_id = p.tenant_id AND d.id = p.kpi_id WHERE p.tenant_id = $1 AND p.id = $2`, tenantID, id))
	if postgres.IsNoRows(err) {
		return a, rallye.NotFound("action plan")
	}
	return a, err
}

// planVisible: owners, their creator, and whoever sees the criterion's scope
// (managers of the team, admin, HR).
func planVisible(a Audience, plan ActionPlan) bool {
	return a.All || plan.OwnerID == a.Me || plan.CreatedBy == a.Me || (a.Manager && a.Sees(plan.Criterion.Scope))
}

// GetPlan returns an action plan the caller may see (else CodeNotFound).
func (s *Service) GetPlan(ctx context.Context, p rallye.Principal, id uuid.UUID) (ActionPlan, error) {
	var out ActionPlan
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		plan, err := getPlan(ctx, tx, p.TenantID, id)
		if err != nil {
			return err
		}
		a, err := audienceOf(ctx, tx, p)
		if err != nil {
			return err
		}
		if !planVisible(a, plan) {
			return rallye.NotFound("action plan")
		}
		out = plan
		return nil
	})
	return out, err
}

// ListPlansRequest selects a page of action plans, newest first.
type ListPlansRequest struct {
	Size   int
	Cursor page.Cursor
	Status PlanStatus
	KPIKey string
}

// ListPlans returns the action plans the caller may see.
func (s *Service) ListPlans(ctx context.Context, p rallye.Principal, req ListPlansRequest) ([]ActionPlan, error) {
	var out []ActionPlan
	err := s.db.ReadTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		a, err := audienceOf(ctx, tx, p)
		if err != nil {
			return err
		}
		before := req.Cursor.After
		for {
			if before == uuid.Nil {
				before = uuid.Max
			}
			rows, err := tx.Query(ctx, `SELECT `+planColumns+` FROM kpi_action_plans p
				JOIN kpi_definitions d ON d.tenant_id = p.tenant_id AND d.id = p.kpi_id
				WHERE p.tenant_id = $1 AND p.id < $2 AND ($3 = '' OR p.status = $3) AND ($4 = '' OR d.key = $4)
				ORDER BY p.id DESC LIMIT $5`, p.TenantID, before, string(req.Status), req.KPIKey, req.Size)
			if err != nil {
				return err
			}
			batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ActionPlan, error) { return scanPlan(r) })
			if err != nil {
				return err
			}
			for _, plan := range batch {
				if planVisible(a, plan) && len(out) < req.Size {
					out = append(out, plan)
				}
			}
			if len(batch) < req.Size || len(out) >= req.Size {
				return nil
			}
			before = batch[len(batch)-1].ID
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list action plans: %w", err)
	}
	return out, nil
}

// RecordLearnings stores what was learnt from a plan (step 6). The owner,
// its creator, a manager who sees its scope, or an admin.
func (s *Service) RecordLearnings(ctx context.Context, p rallye.Principal, id uuid.UUID, learnings string) (ActionPlan, error) {
	var out ActionPlan
	err := s.db.InTenant(ctx, p.TenantID, func(tx pgx.Tx) error {
		plan, err := getPlan(ctx, tx, p.TenantID, id)
		if err != nil {
			return err
		}
		a, err := audienceOf(ctx, tx, p)
		if err != nil {
			return err
		}
		if !planVisible(a, plan) {
			return rallye.NotFound("action plan")
		}
		if _, err := tx.Exec(ctx, `UPDATE kpi_action_plans SET learnings = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2`,
			p.TenantID, id, learnings); err != nil {
			return err
		}
		out, err = getPlan(ctx, tx, p.TenantID, id)
		return err
	})
	return out, err
}

// ErrTooEarly: an action plan was evaluated before its deadline.
var ErrTooEarly = errors.New("kpi: the action plan's deadline has not come")

// tooEarlyError tells how long until the deadline.
type tooEarlyError struct{ wait time.Duration }

func (e *tooEarlyError) Error() string { return fmt.Sprintf("%v (in %s)", ErrTooEarly, e.wait) }

func (e *tooEarlyError) Unwrap() error { return ErrTooEarly }

// EvaluatePlan reads the plan's KPI at its deadline and records whether the
// criterion held (idempotent: an evaluated plan is left as it is). Before the
// deadline (by the service clock) it returns an error wrapping ErrTooEarly.
func (s *Service) EvaluatePlan(ctx context.Context, tenantID, id uuid.UUID) (ActionPlan, error) {
	var out ActionPlan
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		plan, err := getPlan(ctx, tx, tenantID, id)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM kpi_action_plans WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tenantID, id); err != nil {
			return err
		}
		if plan.Status != PlanOpen {
			out = plan
			return nil
		}
		now := s.Now()
		if now.Before(plan.Deadline) {
			return &tooEarlyError{wait: plan.Deadline.Sub(now)}
		}
		r, err := s.newReader(ctx, tx, tenantID, plan.Deadline)
		if err != nil {
			return err
		}
		p := period.Of(plan.Criterion.PeriodKind, plan.Deadline.Add(-time.Nanosecond), r.loc)
		vals, err := r.values(ctx, []string{plan.KPIKey}, []ScopeRef{plan.Criterion.Scope}, []period.Period{p})
		if err != nil {
			return err
		}
		v := vals[0][0][plan.KPIKey].Value
		status := PlanNoData
		if v != nil {
			status = PlanFailed
			if plan.Criterion.holds(*v) {
				status = PlanSucceeded
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE kpi_action_plans SET status = $3, measured_value = $4, evaluated_at = $5, updated_at = now()
			WHERE tenant_id = $1 AND id = $2`, tenantID, id, string(status), v, now); err != nil {
			return err
		}
		out, err = getPlan(ctx, tx, tenantID, id)
		return err
	})
	return out, err
}
