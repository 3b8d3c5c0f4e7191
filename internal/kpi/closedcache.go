package kpi

import (
	"cmp"
	"context"
	"fmt"
	"math"
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
	if table&0x7f == 'k' {
		return "keys"
	}
	return "values"
}

// closedKey names one measure's data for one read scope and period.
type closedKey struct {
	tenant uuid.UUID
	// table is 'v' (kpi_values: distributions) or 'k' (kpi_keys), with
	// the high bit for the rows of a current period's days before today.
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
	// raw holds the rows of the current period's days before today.
	raw *rawCell
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

// generations reads the generations of measures' buckets of one grain from
// day from to day to.
func (r *reader) generations(ctx context.Context, measures []uuid.UUID, grain int16, from, to time.Time) (gens, error) {
	out := gens{}
	if len(measures) == 0 || !from.Before(to) {
		return out, nil
	}
	rows, err := r.tx.Query(ctx, `SELECT measure_id, bucket, gen FROM kpi_generations
		WHERE tenant_id = $1 AND measure_id = ANY($2) AND grain = $3 AND bucket >= $4 AND bucket < $5`,
		r.tenant, measures, grain, from, to)
	if err != nil {
		return nil, fmt.Errorf("read generations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m uuid.UUID
		var d time.Time
		var g int64
		if err := rows.Scan(&m, &d, &g); err != nil {
			return nil, err
		}
		out[genKey{m, grain, time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)}] = g
	}
	return out, rows.Err()
}

type gens map[genKey]int64

// months is the generation of measure m's days from to to read at month
// grain (the sum of the months they touch).
func (g gens) months(m uuid.UUID, from, to time.Time) int64 {
	var sum int64
	for mo := monthOf(from); mo.Before(to); mo = mo.AddDate(0, 1, 0) {
		sum += g[genKey{m, grainMonth, mo}]
	}
	return sum
}

// days is the generation of measure m's days from to to read at day grain.
func (g gens) days(m uuid.UUID, from, to time.Time) int64 {
	var sum int64
	for d := from; d.Before(to); d = d.AddDate(0, 0, 1) {
		sum += g[genKey{m, grainDay, d}]
	}
	return sum
}

// valueCount is a value and how many events gave it.
type valueCount struct {
	v float64
	n int64
}

// rawCell is one measure's rows for a group over some days: the values and
// their counts (sorted by value) or the distinct keys, per breakdown value
// and in total.
type rawCell struct {
	byDim     map[string][]valueCount
	total     []valueCount
	keysByDim map[string]map[string]bool
	keysTotal map[string]bool
}

type groupMeasure struct {
	gi int
	m  uuid.UUID
}

// tableOps is what cachedFetch needs of one roll-up table.
type tableOps struct {
	table byte
	// qs names the quantiles computed (distributions).
	qs string
	// get and put move a cell between res and a cache entry.
	get func(c cell) closedEntry
	put func(c cell, e closedEntry)
	// fetch computes the cells of groups (storage scopes sids of groups
	// gis) and measures ms from day from to day to, per period, into res.
	fetch func(sids []uuid.UUID, gis []int32, ms []uuid.UUID, from, to time.Time) error
	// raw reads the rows themselves over from to to, per group and measure.
	raw func(sids []uuid.UUID, gis []int32, ms []uuid.UUID, from, to time.Time) (map[groupMeasure]*rawCell, error)
	// finish computes a cell into res from the rows of two parts of its
	// period (either may be nil).
	finish func(c cell, a, b *rawCell)
}

// cachedFetch reads one table's cells through the cache:
//   - a closed period's cell whose generation is current comes from the
//     cache; the others are computed by one query (fetch, over the groups,
//     measures and consecutive periods still needed) and kept;
//   - the current period, when it began before today, is cut at today: the
//     rows of its days before today are kept as they are (raw, under the
//     generation of those days), today's and later rows are read, and the
//     cell is computed from both in Go, exactly as PostgreSQL does;
//   - other periods (starting today or later) are computed by the query.
func (r *reader) cachedFetch(ctx context.Context, gs groupSet, measures []uuid.UUID, bounds []time.Time, ops tableOps) error {
	type miss struct {
		c   cell
		key closedKey
		gen int64
	}
	var misses []miss
	closed := r.closedPeriods(bounds)
	today := period.Date(r.now, r.loc)
	cur := -1
	var monthGens, dayGens gens
	if r.cache != nil {
		last := -1
		for pi, c := range closed {
			if c {
				last = pi
			} else if bounds[pi].Before(today) && bounds[pi+1].After(today) {
				cur = pi
			}
		}
		// Read before the data: what is cached under a generation holds at
		// least the rows of that generation.
		var err error
		if last >= 0 {
			if monthGens, err = r.generations(ctx, measures, grainMonth, monthOf(bounds[0]), bounds[last+1]); err != nil {
				return err
			}
		}
		if cur >= 0 {
			if dayGens, err = r.generations(ctx, measures, grainDay, bounds[cur], today); err != nil {
				return err
			}
		}
	}
	needGroup := map[int]bool{}
	needMeasure := map[uuid.UUID]bool{}
	lo, hi := len(closed), -1
	groupKeys := make([]string, len(gs.groups))
	for gi, g := range gs.groups {
		if len(g.ids) == 0 {
			continue
		}
		if r.cache != nil {
			groupKeys[gi] = groupKey(g.ids)
		}
		for _, m := range measures {
			for pi := range closed {
				c := cell{gi, pi, m}
				if pi == cur {
					continue
				}
				if r.cache != nil && closed[pi] {
					key := closedKey{tenant: r.tenant, table: ops.table, kind: gs.kind, group: groupKeys[gi], measure: m,
						from: bounds[pi], to: bounds[pi+1], qs: ops.qs}
					gen := monthGens.months(m, bounds[pi], bounds[pi+1])
					if e, ok := r.cache.c.Get(key); ok && e.gen == gen {
						r.cache.lookups.WithLabelValues(tableName(ops.table), "hit").Inc()
						ops.put(c, e)
						continue
					}
					r.cache.lookups.WithLabelValues(tableName(ops.table), "miss").Inc()
					misses = append(misses, miss{c, key, gen})
				}
				needGroup[gi], needMeasure[m] = true, true
				lo, hi = min(lo, pi), max(hi, pi)
			}
		}
	}
	if hi >= 0 {
		sids, gis := storageScopes(gs, func(gi int) bool { return needGroup[gi] })
		ms := make([]uuid.UUID, 0, len(needMeasure))
		for _, m := range measures {
			if needMeasure[m] {
				ms = append(ms, m)
			}
		}
		if err := ops.fetch(sids, gis, ms, bounds[lo], bounds[hi+1]); err != nil {
			return err
		}
		for _, m := range misses {
			e := ops.get(m.c)
			e.gen = m.gen
			r.cache.c.Add(m.key, e)
		}
	}
	if cur < 0 {
		return nil
	}
	// The current period: its days before today from the cache (or read and
	// kept), today and later read.
	prefix := map[groupMeasure]*rawCell{}
	var prefixMisses []miss
	needGroup = map[int]bool{}
	needMeasure = map[uuid.UUID]bool{}
	for gi, g := range gs.groups {
		if len(g.ids) == 0 {
			continue
		}
		for _, m := range measures {
			key := closedKey{tenant: r.tenant, table: ops.table | 0x80, kind: gs.kind, group: groupKeys[gi], measure: m,
				from: bounds[cur], to: today}
			gen := dayGens.days(m, bounds[cur], today)
			if e, ok := r.cache.c.Get(key); ok && e.gen == gen {
				r.cache.lookups.WithLabelValues(tableName(ops.table), "hit").Inc()
				prefix[groupMeasure{gi, m}] = e.raw
				continue
			}
			r.cache.lookups.WithLabelValues(tableName(ops.table), "miss").Inc()
			prefixMisses = append(prefixMisses, miss{cell{gi, cur, m}, key, gen})
			needGroup[gi], needMeasure[m] = true, true
		}
	}
	if len(prefixMisses) > 0 {
		sids, gis := storageScopes(gs, func(gi int) bool { return needGroup[gi] })
		ms := make([]uuid.UUID, 0, len(needMeasure))
		for _, m := range measures {
			if needMeasure[m] {
				ms = append(ms, m)
			}
		}
		got, err := ops.raw(sids, gis, ms, bounds[cur], today)
		if err != nil {
			return err
		}
		for _, pm := range prefixMisses {
			k := groupMeasure{pm.c.gi, pm.c.measure}
			prefix[k] = got[k]
			r.cache.c.Add(pm.key, closedEntry{gen: pm.gen, raw: got[k]})
		}
	}
	sids, gis := storageScopes(gs, func(int) bool { return true })
	rest, err := ops.raw(sids, gis, measures, today, bounds[cur+1])
	if err != nil {
		return err
	}
	for gi, g := range gs.groups {
		if len(g.ids) == 0 {
			continue
		}
		for _, m := range measures {
			k := groupMeasure{gi, m}
			ops.finish(cell{gi, cur, m}, prefix[k], rest[k])
		}
	}
	return nil
}

// storageScopes lists the storage scopes of the groups keep accepts, with
// their group's index.
func storageScopes(gs groupSet, keep func(gi int) bool) ([]uuid.UUID, []int32) {
	var sids []uuid.UUID
	var gis []int32
	for gi, g := range gs.groups {
		if keep(gi) {
			for _, id := range g.ids {
				sids, gis = append(sids, id), append(gis, int32(gi))
			}
		}
	}
	return sids, gis
}

// mergeCounts merges two lists of values sorted by value, adding the counts
// of equal values.
func mergeCounts(a, b []valueCount) []valueCount {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]valueCount, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareFloat8(a[i].v, b[j].v); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, valueCount{a[i].v, a[i].n + b[j].n})
			i, j = i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// nth is the value of rank k (from 0) of a sorted list of counted values.
func nth(vs []valueCount, k int64) float64 {
	for _, v := range vs {
		if k < v.n {
			return v.v
		}
		k -= v.n
	}
	return vs[len(vs)-1].v
}

// percentileCont is PostgreSQL's percentile_cont over a sorted list of
// counted values holding count values, with its arithmetic (so that the
// result is the very float it computes): the ranks around q × (count − 1),
// linearly interpolated.
func percentileCont(vs []valueCount, count int64, q float64) float64 {
	pos := q * float64(count-1)
	first, second := math.Floor(pos), math.Ceil(pos)
	lo := nth(vs, int64(first))
	if first == second {
		return lo
	}
	hi := nth(vs, int64(second))
	return lo + (pos-first)*(hi-lo)
}

func countOf(vs []valueCount) int64 {
	var n int64
	for _, v := range vs {
		n += v.n
	}
	return n
}

// sortCounts sorts counted values by value, adding up equal ones.
func sortCounts(m map[float64]int64) []valueCount {
	out := make([]valueCount, 0, len(m))
	for v, n := range m {
		out = append(out, valueCount{v, n})
	}
	slices.SortFunc(out, func(a, b valueCount) int { return compareFloat8(a.v, b.v) })
	return out
}

// compareFloat8 orders values as PostgreSQL orders float8: NaN after every
// other value and equal to itself (Go's cmp.Compare puts it first).
func compareFloat8(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	}
	return cmp.Compare(a, b)
}

// rawValues reads the values of measures ms (with how many events gave
// each) for the storage scopes sids of groups gis from day from to day to.
func (r *reader) rawValues(ctx context.Context, sids []uuid.UUID, gis []int32, kind int16, ms []uuid.UUID,
	from, to time.Time) (map[groupMeasure]*rawCell, error) {
	out := map[groupMeasure]*rawCell{}
	if len(sids) == 0 || len(ms) == 0 || !from.Before(to) {
		return out, nil
	}
	rows, err := r.tx.Query(ctx, `SELECT g.gi, t.measure_id, t.dim, t.value, sum(t.n)::bigint
		FROM unnest($2::uuid[], $3::int[]) AS g(sid, gi) CROSS JOIN LATERAL (SELECT measure_id, dim, value, n FROM kpi_values
			WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND measure_id = ANY($5)
			  AND day >= $6 AND day < $7 AND n > 0 OFFSET 0) t
		GROUP BY 1, 2, 3, 4`, r.tenant, sids, gis, kind, ms, from, to)
	if err != nil {
		return nil, fmt.Errorf("read values: %w", err)
	}
	defer rows.Close()
	byDim := map[groupMeasure]map[string]map[float64]int64{}
	total := map[groupMeasure]map[float64]int64{}
	for rows.Next() {
		var gi int32
		var k groupMeasure
		var dim string
		var v float64
		var n int64
		if err := rows.Scan(&gi, &k.m, &dim, &v, &n); err != nil {
			return nil, err
		}
		k.gi = int(gi)
		if byDim[k] == nil {
			byDim[k], total[k] = map[string]map[float64]int64{}, map[float64]int64{}
		}
		if byDim[k][dim] == nil {
			byDim[k][dim] = map[float64]int64{}
		}
		byDim[k][dim][v] += n
		total[k][v] += n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for k, dims := range byDim {
		c := &rawCell{byDim: map[string][]valueCount{}, total: sortCounts(total[k])}
		for dim, vs := range dims {
			c.byDim[dim] = sortCounts(vs)
		}
		out[k] = c
	}
	return out, nil
}

// rawKeys reads the distinct keys of measures ms like rawValues.
func (r *reader) rawKeys(ctx context.Context, sids []uuid.UUID, gis []int32, kind int16, ms []uuid.UUID,
	from, to time.Time) (map[groupMeasure]*rawCell, error) {
	out := map[groupMeasure]*rawCell{}
	if len(sids) == 0 || len(ms) == 0 || !from.Before(to) {
		return out, nil
	}
	rows, err := r.tx.Query(ctx, `SELECT DISTINCT g.gi, t.measure_id, t.dim, t.key
		FROM unnest($2::uuid[], $3::int[]) AS g(sid, gi) CROSS JOIN LATERAL (SELECT measure_id, dim, key FROM kpi_keys
			WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND measure_id = ANY($5)
			  AND day >= $6 AND day < $7 AND n > 0 OFFSET 0) t`, r.tenant, sids, gis, kind, ms, from, to)
	if err != nil {
		return nil, fmt.Errorf("read keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var gi int32
		var k groupMeasure
		var dim, key string
		if err := rows.Scan(&gi, &k.m, &dim, &key); err != nil {
			return nil, err
		}
		k.gi = int(gi)
		c := out[k]
		if c == nil {
			c = &rawCell{keysByDim: map[string]map[string]bool{}, keysTotal: map[string]bool{}}
			out[k] = c
		}
		if c.keysByDim[dim] == nil {
			c.keysByDim[dim] = map[string]bool{}
		}
		c.keysByDim[dim][key] = true
		c.keysTotal[key] = true
	}
	return out, rows.Err()
}

// finishDistribution computes a distribution cell from the values of two
// parts of its period, as fetchDistributions would over the whole: no cell
// without values, a breakdown value only where it has some.
func (res *results) finishDistribution(c cell, a, b *rawCell, qs []float64) {
	if a == nil {
		a = &rawCell{}
	}
	if b == nil {
		b = &rawCell{}
	}
	agg := func(vs []valueCount) distAgg {
		n := countOf(vs)
		d := distAgg{count: n, ps: map[float64]float64{}}
		for _, q := range qs {
			d.ps[q] = percentileCont(vs, n, q)
		}
		return d
	}
	total := mergeCounts(a.total, b.total)
	if countOf(total) == 0 {
		return
	}
	out := &distCell{byDim: map[string]distAgg{}, total: agg(total)}
	for _, dims := range []map[string][]valueCount{a.byDim, b.byDim} {
		for dim := range dims {
			if _, done := out.byDim[dim]; done {
				continue
			}
			if vs := mergeCounts(a.byDim[dim], b.byDim[dim]); countOf(vs) > 0 {
				out.byDim[dim] = agg(vs)
			}
		}
	}
	res.dist[c] = out
}

// finishKeys counts the distinct keys of two parts of a period, as
// fetchKeys would over the whole.
func (res *results) finishKeys(c cell, a, b *rawCell) {
	if a == nil {
		a = &rawCell{}
	}
	if b == nil {
		b = &rawCell{}
	}
	union := func(x, y map[string]bool) int64 {
		n := int64(len(x))
		for k := range y {
			if !x[k] {
				n++
			}
		}
		return n
	}
	total := union(a.keysTotal, b.keysTotal)
	if total == 0 {
		return
	}
	out := &keysCell{byDim: map[string]int64{}, total: total}
	for _, dims := range []map[string]map[string]bool{a.keysByDim, b.keysByDim} {
		for dim := range dims {
			if _, done := out.byDim[dim]; !done {
				out.byDim[dim] = union(a.keysByDim[dim], b.keysByDim[dim])
			}
		}
	}
	res.keys[c] = out
}
