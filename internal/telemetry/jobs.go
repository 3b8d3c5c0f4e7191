package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// JobStates are the River job states whose counts the job-queue metric
// reports: waiting to run, running, and waiting to be retried after an
// error. (Completed, cancelled and discarded jobs are history, and scheduled
// ones include challenge ends weeks away.)
var JobStates = []string{"available", "running", "retryable"}

// jobQueueQueryTimeout bounds a scrape's query: a slow database must not
// hold the scrape (the series are then left out of that scrape).
const jobQueueQueryTimeout = 2 * time.Second

// JobQueue is a Prometheus collector of the River job queue's depth:
// rallye_jobs{queue, kind, state}, counted in PostgreSQL at each scrape.
// A series seen once stays reported (at 0 when the jobs are gone), so that
// a drained queue shows as 0 rather than as a gap.
type JobQueue struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	desc *prometheus.Desc

	mu   sync.Mutex
	seen map[jobSeries]bool
}

type jobSeries struct{ queue, kind, state string }

// NewJobQueue returns the collector of pool's River jobs.
func NewJobQueue(pool *pgxpool.Pool, log *slog.Logger) *JobQueue {
	return &JobQueue{pool: pool, log: log, seen: map[jobSeries]bool{},
		desc: prometheus.NewDesc("rallye_jobs", "River jobs by queue, kind and state (available, running, retryable).",
			[]string{"queue", "kind", "state"}, nil)}
}

// Describe implements prometheus.Collector.
func (j *JobQueue) Describe(ch chan<- *prometheus.Desc) { ch <- j.desc }

// Collect implements prometheus.Collector.
func (j *JobQueue) Collect(ch chan<- prometheus.Metric) {
	counts, err := j.count(context.Background())
	if err != nil {
		j.log.Warn("job queue metrics: count failed", "error", err)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for s := range counts {
		j.seen[s] = true
	}
	for s := range j.seen {
		ch <- prometheus.MustNewConstMetric(j.desc, prometheus.GaugeValue, float64(counts[s]), s.queue, s.kind, s.state)
	}
}

// count reads the number of jobs per queue, kind and state.
func (j *JobQueue) count(ctx context.Context) (map[jobSeries]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, jobQueueQueryTimeout)
	defer cancel()
	rows, err := j.pool.Query(ctx, `SELECT queue, kind, state::text, count(*) FROM river_job
		WHERE state = ANY($1::river_job_state[]) GROUP BY 1, 2, 3`, JobStates)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[jobSeries]int64{}
	for rows.Next() {
		var s jobSeries
		var n int64
		if err := rows.Scan(&s.queue, &s.kind, &s.state, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}
