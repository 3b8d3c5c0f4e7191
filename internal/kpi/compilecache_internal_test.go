package kpi

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rallyehq/rallye/internal/event"
)

// TestCompilerCachesStayBounded compiles many more distinct definitions
// (and their measures) than the caches hold: the caches keep their size,
// evict the least recently used, and the metrics count every lookup and
// eviction as a plain tally of the calls expects.
func TestCompilerCachesStayBounded(t *testing.T) {
	const size, distinct = 8, 50
	c := newCompiler(size, size)
	defs := make([]Definition, distinct)
	for i := range defs {
		defs[i] = Definition{Key: fmt.Sprintf("custom_%d", i), Formula: Formula{Aggregation: Count,
			Events: Selection{Types: []event.Type{event.DealWon}, Filter: fmt.Sprintf("amount > %d.0", i)}}}
	}
	var hits, misses, evicted [2]int // plan, measure: the reference tally
	held := [2]map[string]bool{{}, {}}
	order := [2][]string{}
	lookup := func(which int, key string) {
		if held[which][key] {
			hits[which]++
			// touched: most recently used
			for i, k := range order[which] {
				if k == key {
					order[which] = append(order[which][:i:i], order[which][i+1:]...)
					break
				}
			}
			order[which] = append(order[which], key)
			return
		}
		misses[which]++
		held[which][key] = true
		order[which] = append(order[which], key)
		if len(order[which]) > size {
			delete(held[which], order[which][0])
			order[which] = order[which][1:]
			evicted[which]++
		}
	}
	compile := func(i int) *plan {
		t.Helper()
		p, err := c.plan(defs[i])
		if err != nil {
			t.Fatal(err)
		}
		lookup(0, defs[i].Key)
		for _, spec := range p.measures() {
			m, err := c.measure(*spec)
			if err != nil {
				t.Fatal(err)
			}
			if m.id != spec.ID() {
				t.Fatalf("measure %s compiled as %s", spec.ID(), m.id)
			}
			lookup(1, spec.ID().String())
		}
		return p
	}

	first := compile(0)
	if again := compile(0); again != first {
		t.Fatal("the same definition was compiled twice")
	}
	for i := range distinct {
		compile(i)
		if c.plans.Len() > size || c.measures.Len() > size {
			t.Fatalf("after %d definitions the caches hold %d plans and %d measures, more than %d", i+1, c.plans.Len(), c.measures.Len(), size)
		}
	}
	for i := distinct - size; i < distinct; i++ { // the most recent: all hits
		compile(i)
	}
	if p := compile(0); p == first { // evicted long ago: compiled again
		t.Fatal("definition 0 was never evicted")
	}

	got := func(m prometheus.Metric) int {
		var out dto.Metric
		if err := m.Write(&out); err != nil {
			t.Fatal(err)
		}
		return int(out.GetCounter().GetValue() + out.GetGauge().GetValue())
	}
	for which, name := range []string{planCache, measureCache} {
		if h := got(c.lookups.WithLabelValues(name, "hit")); h != hits[which] {
			t.Errorf("%s hits: %d, want %d", name, h, hits[which])
		}
		if m := got(c.lookups.WithLabelValues(name, "miss")); m != misses[which] {
			t.Errorf("%s misses: %d, want %d", name, m, misses[which])
		}
		if e := got(c.evictions.WithLabelValues(name)); e != evicted[which] {
			t.Errorf("%s evictions: %d, want %d", name, e, evicted[which])
		}
		if n := got(c.entries.WithLabelValues(name)); n != len(held[which]) {
			t.Errorf("%s entries: %d, want %d", name, n, len(held[which]))
		}
	}
	if hits[0] < size || evicted[0] < distinct-size {
		t.Fatalf("the scenario did not exercise the cache: %d hits, %d evictions", hits[0], evicted[0])
	}
}

// BenchmarkCompileMiss is what a cache miss costs: a KPI version compiled
// with its measure (a CEL filter).
func BenchmarkCompileMiss(b *testing.B) {
	d := Definition{Key: "custom", Formula: Formula{Aggregation: Count,
		Events: Selection{Types: []event.Type{event.DealWon}, Filter: `amount > 1000.0 && segment == "enterprise"`}}}
	for b.Loop() {
		c := newCompiler(1, 1)
		p, err := c.plan(d)
		if err != nil {
			b.Fatal(err)
		}
		for _, spec := range p.measures() {
			if _, err := c.measure(*spec); err != nil {
				b.Fatal(err)
			}
		}
	}
}
