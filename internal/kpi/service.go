package kpi

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/rallyehq/rallye/internal/postgres"
)

// Jobs enqueues durable jobs inside a transaction (a *river.Client).
type Jobs interface {
	InsertTx(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
}

// Service is the KPI use cases: definitions, roll-ups, values, targets,
// alerts and action plans.
type Service struct {
	db       *postgres.DB
	jobs     Jobs
	log      *slog.Logger
	compiler *compiler
	// Now is the clock; tests fix it.
	Now func() time.Time
	// OnChange is called after roll-ups commit with the measures whose
	// values changed (the server publishes them for live dashboards).
	OnChange func(ctx context.Context, tenantID uuid.UUID, measures []uuid.UUID)
	// UncachedReads reads every period's medians, percentiles and distinct
	// counts from the roll-ups, without the closed-period cache (tests
	// compare the two).
	UncachedReads bool

	closed *closedCache
}

// NewService returns the KPI service. jobs may be nil in tests that run
// backfills and evaluations themselves.
func NewService(db *postgres.DB, jobs Jobs, log *slog.Logger) *Service {
	return &Service{db: db, jobs: jobs, log: log, Now: time.Now, compiler: newCompiler(planCacheSize, measureCacheSize),
		closed: newClosedCache(closedCacheSize)}
}

// Collectors are the service's Prometheus metrics (the compiler's caches
// and the closed-period read cache), for the server's registry.
func (s *Service) Collectors() []prometheus.Collector {
	return append(s.compiler.collectors(), s.closed.lookups)
}

// SetJobs sets the job queue (the River client is built after its workers,
// which need the service).
func (s *Service) SetJobs(j Jobs) { s.jobs = j }

// Rollups returns the change-feed consumer that keeps the roll-ups.
func (s *Service) Rollups() Rollups { return Rollups{s: s} }

func (s *Service) published(ctx context.Context, tenantID uuid.UUID, measures []uuid.UUID) {
	if s.OnChange != nil {
		s.OnChange(ctx, tenantID, measures)
	}
}

func (s *Service) insertJob(ctx context.Context, tx pgx.Tx, args river.JobArgs, opts *river.InsertOpts) error {
	if s.jobs == nil {
		return nil
	}
	_, err := s.jobs.InsertTx(ctx, tx, args, opts)
	return err
}

// scheduleAlertCheck enqueues an alert evaluation for the company at the end
// of the current second: every roll-up batch of that second shares one job
// (unique per second), which runs after all of them.
func (s *Service) scheduleAlertCheck(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	if s.jobs == nil {
		return nil
	}
	var has bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kpi_targets WHERE tenant_id = $1)`, tenantID).Scan(&has); err != nil {
		return err
	}
	if !has {
		return nil
	}
	at := time.Now().Truncate(time.Second).Add(time.Second)
	return s.insertJob(ctx, tx, EvaluateAlertsArgs{TenantID: tenantID}, &river.InsertOpts{
		ScheduledAt: at, UniqueOpts: river.UniqueOpts{ByArgs: true, ByPeriod: time.Second},
	})
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }
