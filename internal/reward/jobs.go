package reward

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
)

// StreakRiskArgs is the periodic job announcing the streaks at risk of
// every company with daily streak rules.
type StreakRiskArgs struct{}

// Kind implements river.JobArgs.
func (StreakRiskArgs) Kind() string { return "reward.streak_risk" }

// StreakRiskWorker runs StreakRiskArgs jobs.
type StreakRiskWorker struct {
	river.WorkerDefaults[StreakRiskArgs]
	S *Service
}

// Work implements river.Worker.
func (w *StreakRiskWorker) Work(ctx context.Context, _ *river.Job[StreakRiskArgs]) error {
	var tenants []uuid.UUID
	// Across tenants: the job looks for every company with daily streaks.
	err := w.S.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT DISTINCT tenant_id FROM streak_rules WHERE active AND period = 'day'`)
		if err != nil {
			return err
		}
		tenants, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		return err
	}
	for _, t := range tenants {
		if _, err := w.S.CheckStreaksAtRisk(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// StreakRiskInterval is how often streaks at risk are looked for: hourly,
// so that each person hears of it within the hour after the company's
// streak_risk_hour in their time zone.
const StreakRiskInterval = time.Hour

// AddWorkers adds the area's workers to a River bundle and returns its
// periodic jobs.
func AddWorkers(ws *river.Workers, s *Service) []*river.PeriodicJob {
	river.AddWorker(ws, &StreakRiskWorker{S: s})
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(StreakRiskInterval),
		func() (river.JobArgs, *river.InsertOpts) { return StreakRiskArgs{}, nil }, nil)}
}
