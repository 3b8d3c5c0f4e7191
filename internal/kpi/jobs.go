package kpi

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// BackfillArgs computes a company's new measures over its history. It is
// enqueued with the KPI version that created the measure.
type BackfillArgs struct {
	TenantID  uuid.UUID `json:"tenant_id"`
	MeasureID uuid.UUID `json:"measure_id"`
}

// Kind implements river.JobArgs.
func (BackfillArgs) Kind() string { return "kpi.backfill" }

// EvaluateAlertsArgs evaluates a company's targets and raises alerts.
type EvaluateAlertsArgs struct {
	TenantID uuid.UUID `json:"tenant_id"`
}

// Kind implements river.JobArgs.
func (EvaluateAlertsArgs) Kind() string { return "kpi.evaluate_alerts" }

// SweepAlertsArgs is the periodic job that evaluates every company with
// targets: statuses also change with time alone (the pace of a count drops
// as a period goes by without events).
type SweepAlertsArgs struct{}

// Kind implements river.JobArgs.
func (SweepAlertsArgs) Kind() string { return "kpi.sweep_alerts" }

// EvaluatePlanArgs evaluates an action plan's success criterion; it is
// scheduled for the plan's deadline when the plan is created.
type EvaluatePlanArgs struct {
	TenantID uuid.UUID `json:"tenant_id"`
	PlanID   uuid.UUID `json:"plan_id"`
}

// Kind implements river.JobArgs.
func (EvaluatePlanArgs) Kind() string { return "kpi.evaluate_plan" }

// SweepInterval is how often every company's alerts are evaluated.
const SweepInterval = 5 * time.Minute

// AddWorkers registers the KPI jobs' workers, and returns the periodic
// jobs to schedule.
func AddWorkers(w *river.Workers, s *Service) []*river.PeriodicJob {
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[BackfillArgs]) error {
		return s.Backfill(ctx, j.Args.TenantID)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EvaluateAlertsArgs]) error {
		_, err := s.EvaluateAlerts(ctx, j.Args.TenantID)
		return err
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, _ *river.Job[SweepAlertsArgs]) error {
		return s.sweepAlerts(ctx)
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[EvaluatePlanArgs]) error {
		_, err := s.EvaluatePlan(ctx, j.Args.TenantID, j.Args.PlanID)
		var early *tooEarlyError
		if errors.As(err, &early) {
			return river.JobSnooze(early.wait)
		}
		return err
	}))
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(SweepInterval),
			func() (river.JobArgs, *river.InsertOpts) { return SweepAlertsArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true}),
	}
}

// sweepAlerts evaluates every company that has targets.
func (s *Service) sweepAlerts(ctx context.Context) error {
	var tenants []uuid.UUID
	// Across tenants: the scheduler looks for every company with targets.
	err := s.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT tenant_id FROM kpi_targets`)
		if err != nil {
			return err
		}
		tenants, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range tenants {
		if _, err := s.EvaluateAlerts(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
