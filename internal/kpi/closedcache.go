package kpi

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rallyehq/rallye/internal/period"
)

// closedCacheSize bounds the closed-period cache: an entry is one measure's
// distribution or distinct count for one scope and period (a level-2 board
// of the model holds about a hundred).
const closedCacheSize = 16384

// closedCache keeps, in memory, the medians, percentiles and distinct
// counts of closed periods (ended before today): they are the expensive
// part of a read (every value or key of the period is read and sorted),
// and they only change when an event arrives late for such a period. Each
// entry carries the generation it was computed at (the sum of the
// kpi_generations of the months the period covers, read before its data);
// the roll-ups add one to a month's generation in the transaction that
// changes its rows, so an entry whose generation differs from the one a
// reader sees is ignored and recomputed. Values are exactly those of an
// uncached read: the cache holds what the same query returned.
type closedCache struct {
	c       *lru.Cache[closedKey, closedEntry]
	lookups *prometheus.CounterVec
}

func newClosedCache(size int) *closedCache {
	c, err := lru.New[closedKey, closedEntry](size)
	if err != nil {
		panic(err) // only for a size below 1
	}
	cc := &closedCache{c: c, lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rallye_kpi_closed_cache_lookups_total",
		Help: "Lookups of closed periods' medians, percentiles (table values) and distinct counts (table keys) in the read cache, by result (hit, miss).",
	}, []string{"table", "result"})}
	for _, t := range []string{"values", "keys"} {
		cc.lookups.WithLabelValues(t, "hit")
		cc.lookups.WithLabelValues(t, "miss")
	}
	return cc
}

func tableName(table byte) string {
	if table == 'k' {
		return "keys"
	}
	return "values"
}

// closedKey names one measure's data for one read scope and period.
type closedKey struct {
	tenant uuid.UUID
	// table is 'v' (kpi_values: distributions) or 'k' (kpi_keys).
	table byte
	kind  int16
	// group is the read scope's storage scopes, sorted (a team's sets).
	group    string
	measure  uuid.UUID
	from, to time.Time
	// qs are the quantiles computed (distributions).
	qs string
}

type closedEntry struct {
	gen  int64
	dist *distCell
	keys *keysCell
}

// groupKey is a group's storage scopes in a canonical order.
func groupKey(ids []uuid.UUID) string {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	var b strings.Builder
	for _, id := range sorted {
		b.Write(id[:])
	}
	return b.String()
}

func quantilesKey(qs []float64) string {
	sorted := slices.Clone(qs)
	slices.Sort(sorted)
	parts := make([]string, len(sorted))
	for i, q := range sorted {
		parts[i] = strconv.FormatFloat(q, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

func monthOf(d time.Time) time.Time { return time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC) }

// closedPeriods tells which periods (cut at bounds, local days) ended on or
// before today: the cacheable ones.
func (r *reader) closedPeriods(bounds []time.Time) []bool {
	today := period.Date(r.now, r.loc)
	out := make([]bool, len(bounds)-1)
	for i := range out {
		out[i] = !bounds[i+1].After(today)
	}
	return out
}

// generations returns, per measure, the generation of each period (the sum
// of its months'), for the closed periods.
func (r *reader) generations(ctx context.Context, measures []uuid.UUID, bounds []time.Time, closed []bool) (map[uuid.UUID][]int64, error) {
	last := -1
	for i, c := range closed {
		if c {
			last = i
		}
	}
	out := map[uuid.UUID][]int64{}
	if last < 0 || len(measures) == 0 {
		return out, nil
	}
	rows, err := r.tx.Query(ctx, `SELECT measure_id, month, gen FROM kpi_generations
		WHERE tenant_id = $1 AND measure_id = ANY($2) AND month >= $3 AND month < $4`,
		r.tenant, measures, monthOf(bounds[0]), bounds[last+1])
	if err != nil {
		return nil, fmt.Errorf("read generations: %w", err)
	}
	gens := map[genKey]int64{}
	for rows.Next() {
		var k genKey
		var g int64
		if err := rows.Scan(&k.measure, &k.month, &g); err != nil {
			rows.Close()
			return nil, err
		}
		gens[genKey{k.measure, monthOf(k.month)}] = g
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, m := range measures {
		v := make([]int64, len(closed))
		for pi, c := range closed {
			if !c {
				continue
			}
			for mo := monthOf(bounds[pi]); mo.Before(bounds[pi+1]); mo = mo.AddDate(0, 1, 0) {
				v[pi] += gens[genKey{m, mo}]
			}
		}
		out[m] = v
	}
	return out, nil
}

// cachedFetch reads one table's cells through the cache: it takes the
// closed periods' cells whose generation is current from the cache, reads
// what is left with one query (fetch, over the groups, measures and
// consecutive periods still needed), and keeps the closed cells it read.
// get and put move a cell between res and an entry.
func (r *reader) cachedFetch(ctx context.Context, table byte, qs string, gs groupSet, measures []uuid.UUID, bounds []time.Time,
	get func(c cell) closedEntry, put func(c cell, e closedEntry),
	fetch func(sids []uuid.UUID, gis []int32, measures []uuid.UUID, from, to time.Time) error) error {
	type miss struct {
		c   cell
		key closedKey
		gen int64
	}
	var misses []miss
	closed := r.closedPeriods(bounds)
	var gens map[uuid.UUID][]int64
	if r.cache != nil {
		var err error
		// Read before the data: what is cached under a generation holds at
		// least the rows of that generation.
		if gens, err = r.generations(ctx, measures, bounds, closed); err != nil {
			return err
		}
	}
	needGroup := map[int]bool{}
	needMeasure := map[uuid.UUID]bool{}
	lo, hi := len(closed), -1
	for gi, g := range gs.groups {
		if len(g.ids) == 0 {
			continue
		}
		gk := ""
		for _, m := range measures {
			for pi := range closed {
				c := cell{gi, pi, m}
				if r.cache != nil && closed[pi] {
					if gk == "" {
						gk = groupKey(g.ids)
					}
					key := closedKey{tenant: r.tenant, table: table, kind: gs.kind, group: gk, measure: m,
						from: bounds[pi], to: bounds[pi+1], qs: qs}
					gen := gens[m][pi]
					if e, ok := r.cache.c.Get(key); ok && e.gen == gen {
						r.cache.lookups.WithLabelValues(tableName(table), "hit").Inc()
						put(c, e)
						continue
					}
					r.cache.lookups.WithLabelValues(tableName(table), "miss").Inc()
					misses = append(misses, miss{c, key, gen})
				}
				needGroup[gi], needMeasure[m] = true, true
				lo, hi = min(lo, pi), max(hi, pi)
			}
		}
	}
	if hi < 0 {
		return nil
	}
	var sids []uuid.UUID
	var gis []int32
	for gi, g := range gs.groups {
		if needGroup[gi] {
			for _, id := range g.ids {
				sids, gis = append(sids, id), append(gis, int32(gi))
			}
		}
	}
	ms := make([]uuid.UUID, 0, len(needMeasure))
	for _, m := range measures {
		if needMeasure[m] {
			ms = append(ms, m)
		}
	}
	if err := fetch(sids, gis, ms, bounds[lo], bounds[hi+1]); err != nil {
		return err
	}
	for _, m := range misses {
		e := get(m.c)
		e.gen = m.gen
		r.cache.c.Add(m.key, e)
	}
	return nil
}
