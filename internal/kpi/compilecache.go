package kpi

import (
	"crypto/sha256"
	"encoding/json"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Sizes of the compiled caches. Compiling is a few CEL programs (about
// 0.3 ms, BenchmarkCompileMiss), so a miss costs little; what matters is that the caches
// stop growing: every new or edited definition of every company would
// otherwise stay in memory for the life of the process. The model's KPIs
// are the same JSON in every company and share their entries.
const (
	planCacheSize    = 4096
	measureCacheSize = 8192
)

// compiler compiles KPI versions (plans) and measures once, keeping the
// most recently used (LRU), and counts its lookups and evictions.
type compiler struct {
	plans    *lru.Cache[[sha256.Size]byte, *plan]
	measures *lru.Cache[uuid.UUID, *compiledMeasure]

	lookups   *prometheus.CounterVec
	evictions *prometheus.CounterVec
	entries   *prometheus.GaugeVec
}

// Names of the caches in the metrics' cache label.
const (
	planCache    = "plan"
	measureCache = "measure"
)

func newCompiler(plans, measures int) *compiler {
	c := &compiler{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rallye_kpi_compile_cache_lookups_total",
			Help: "Lookups in the KPI compiler's caches, by cache (plan, measure) and result (hit, miss).",
		}, []string{"cache", "result"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rallye_kpi_compile_cache_evictions_total",
			Help: "Compiled KPI plans and measures evicted to keep the caches within their size, by cache.",
		}, []string{"cache"}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rallye_kpi_compile_cache_entries",
			Help: "Compiled KPI plans and measures held, by cache.",
		}, []string{"cache"}),
	}
	for _, name := range []string{planCache, measureCache} {
		c.lookups.WithLabelValues(name, "hit")
		c.lookups.WithLabelValues(name, "miss")
		c.evictions.WithLabelValues(name)
		c.entries.WithLabelValues(name)
	}
	planEvicted, measureEvicted := c.evictions.WithLabelValues(planCache), c.evictions.WithLabelValues(measureCache)
	var err error
	c.plans, err = lru.NewWithEvict(plans, func([sha256.Size]byte, *plan) { planEvicted.Inc() })
	if err != nil {
		panic(err) // only for a size below 1
	}
	c.measures, err = lru.NewWithEvict(measures, func(uuid.UUID, *compiledMeasure) { measureEvicted.Inc() })
	if err != nil {
		panic(err)
	}
	return c
}

// plan compiles a stored definition, or returns the plan compiled earlier.
// The key is a hash of the definition's JSON: the JSON itself can be large.
func (c *compiler) plan(d Definition) (*plan, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256(b)
	if p, ok := c.plans.Get(key); ok {
		c.lookups.WithLabelValues(planCache, "hit").Inc()
		return p, nil
	}
	c.lookups.WithLabelValues(planCache, "miss").Inc()
	p, err := compilePlan(d)
	if err != nil {
		return nil, err
	}
	c.plans.Add(key, p)
	c.entries.WithLabelValues(planCache).Set(float64(c.plans.Len()))
	return p, nil
}

// measure compiles a measure, or returns the one compiled earlier (its ID
// is a hash of its spec).
func (c *compiler) measure(spec MeasureSpec) (*compiledMeasure, error) {
	id := spec.ID()
	if m, ok := c.measures.Get(id); ok {
		c.lookups.WithLabelValues(measureCache, "hit").Inc()
		return m, nil
	}
	c.lookups.WithLabelValues(measureCache, "miss").Inc()
	m, err := compileMeasure(spec)
	if err != nil {
		return nil, err
	}
	c.measures.Add(id, m)
	c.entries.WithLabelValues(measureCache).Set(float64(c.measures.Len()))
	return m, nil
}

// collectors are the compiler's metrics.
func (c *compiler) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.lookups, c.evictions, c.entries}
}
