package event

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rallyehq/rallye/internal/postgres"
)

// feedMetrics counts, per consumer, what the feed did on this instance, and
// reads the lag of every consumer from PostgreSQL when scraped.
type feedMetrics struct {
	applied      *prometheus.CounterVec
	failed       *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	ruleErrors   *prometheus.CounterVec
	lag          *lagCollector
	consumers    []string
}

func newFeedMetrics(db *postgres.DB) *feedMetrics {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"consumer"})
	}
	m := &feedMetrics{
		applied: counter("rallye_feed_changes_applied_total",
			"Changes applied by a consumer (retried dead letters included), on this instance."),
		failed: counter("rallye_feed_change_failures_total",
			"Failed attempts to apply a change (PostgreSQL being unavailable is not counted: it is retried as is), on this instance."),
		deadLettered: counter("rallye_feed_changes_dead_lettered_total",
			"Changes moved to the dead letters: those that used their attempts, and later changes of their event version parked behind them."),
		ruleErrors: counter("rallye_feed_rule_errors_total",
			"Rules (scoring rules, mission and KPI filters and values) that could not be evaluated for a change, which the change skipped."),
	}
	m.lag = &lagCollector{db: db, metrics: m,
		changes: prometheus.NewDesc("rallye_feed_lag_changes",
			"Committed changes a consumer has not applied yet, over every company.", []string{"consumer"}, nil),
		seconds: prometheus.NewDesc("rallye_feed_lag_seconds",
			"Age of the oldest change a consumer has not applied yet (0 when it is caught up).", []string{"consumer"}, nil),
		dead: prometheus.NewDesc("rallye_feed_dead_letters_open",
			"Dead letters waiting for an operator (rallye feed dead-letters).", []string{"consumer"}, nil),
	}
	return m
}

// Collectors returns the feed's Prometheus metrics, for the server's
// registry. The lag metrics are read from PostgreSQL at scrape time (at
// most every few seconds): every instance reports the same figures.
func (f *Feed) Collectors() []prometheus.Collector {
	m := f.metrics
	return []prometheus.Collector{m.applied, m.failed, m.deadLettered, m.ruleErrors, m.lag}
}

// lagCollector reads the consumers' lag from PostgreSQL.
type lagCollector struct {
	db                     *postgres.DB
	metrics                *feedMetrics
	changes, seconds, dead *prometheus.Desc

	mu    sync.Mutex
	at    time.Time
	cache []prometheus.Metric
}

// lagCacheFor spares PostgreSQL when several scrapers ask at once.
const lagCacheFor = 5 * time.Second

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.changes
	ch <- c.seconds
	ch <- c.dead
}

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) > lagCacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ms, err := c.read(ctx)
		cancel()
		if err != nil {
			return // a scrape without lag figures; the next one tries again
		}
		c.cache, c.at = ms, time.Now()
	}
	for _, m := range c.cache {
		ch <- m
	}
}

// ConsumerLag is how far a consumer is behind, over every company.
type ConsumerLag struct {
	// Changes committed and not applied yet.
	Changes int64
	// Seconds is the age of the oldest of them (0 when caught up).
	Seconds float64
	// DeadLetters waiting for an operator.
	DeadLetters int64
}

// Lag reads each registered consumer's lag over every company.
func (f *Feed) Lag(ctx context.Context) (map[string]ConsumerLag, error) {
	return f.metrics.lag.lags(ctx)
}

func (c *lagCollector) lags(ctx context.Context) (map[string]ConsumerLag, error) {
	out := map[string]ConsumerLag{}
	if len(c.metrics.consumers) == 0 {
		return out, nil
	}
	// Across tenants: the lag is over every company.
	err := c.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT c.consumer, coalesce(sum(l.n), 0)::bigint,
				coalesce(extract(epoch FROM now() - min(l.oldest)), 0)::float8,
				(SELECT count(*) FROM feed_dead_letters d WHERE d.consumer = c.consumer AND d.state IN ('dead', 'retrying'))
			FROM unnest($1::text[]) AS c(consumer)
			CROSS JOIN tenants t
			LEFT JOIN feed_cursors f ON f.tenant_id = t.id AND f.consumer = c.consumer
			CROSS JOIN LATERAL (SELECT count(*) AS n, min(e.created_at) AS oldest FROM event_changes e
				WHERE e.tenant_id = t.id AND e.seq > coalesce(f.seq, 0)) l
			GROUP BY c.consumer`, c.metrics.consumers)
		if err != nil {
			return err
		}
		var name string
		var l ConsumerLag
		_, err = pgx.ForEachRow(rows, []any{&name, &l.Changes, &l.Seconds, &l.DeadLetters}, func() error {
			l.Seconds = max(l.Seconds, 0)
			out[name] = l
			return nil
		})
		return err
	})
	return out, err
}

func (c *lagCollector) read(ctx context.Context) ([]prometheus.Metric, error) {
	lags, err := c.lags(ctx)
	if err != nil {
		return nil, err
	}
	var out []prometheus.Metric
	for name, l := range lags {
		out = append(out,
			prometheus.MustNewConstMetric(c.changes, prometheus.GaugeValue, float64(l.Changes), name),
			prometheus.MustNewConstMetric(c.seconds, prometheus.GaugeValue, l.Seconds, name),
			prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(l.DeadLetters), name))
	}
	return out, nil
}
