package kpi

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/period"
	"github.com/rallyehq/rallye/internal/rallye"
)

// ScopeKind is what a value is about.
type ScopeKind int16

// Scope kinds.
const (
	ScopeCompany ScopeKind = 0
	// ScopeTeam is a team with its sub-teams (as the tree is now), counting
	// the events attributed to them when they were received.
	ScopeTeam ScopeKind = 1
	// ScopePerson is one rep's events.
	ScopePerson ScopeKind = 2
)

// ScopeRef names a scope; ID is uuid.Nil for the company.
type ScopeRef struct {
	Kind ScopeKind
	ID   uuid.UUID
}

// Company is the company scope.
var Company = ScopeRef{Kind: ScopeCompany}

// Value is a KPI's value for one scope and period. A nil Value means no
// value: no data, or a division by zero, never 0 or NaN in disguise.
type Value struct {
	Value *float64
	// Breakdown is the value per breakdown value (segment, stage...), for
	// KPIs with a breakdown.
	Breakdown []DimValue
	// Computing: a measure of the KPI is still being computed over the
	// history (backfill); no value until it is done.
	Computing bool
	// NotApplicable: the KPI has no meaning for this scope (a side of its
	// formula reads only company-wide events, such as marketing spend, read
	// for a team or a person); no value, and not for lack of data.
	NotApplicable bool
}

// DimValue is the value of one breakdown value.
type DimValue struct {
	Dim   string
	Value *float64
}

// reader evaluates KPIs from the roll-ups inside one read transaction.
type reader struct {
	c       *compiler
	tx      pgx.Tx
	tenant  uuid.UUID
	loc     *time.Location
	now     time.Time
	kpis    map[string]KPI
	pending map[uuid.UUID]bool
	// cache keeps closed periods' distributions and distinct counts (nil:
	// every period is read from the roll-ups).
	cache *closedCache
}

func (s *Service) newReader(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, now time.Time) (*reader, error) {
	loc, err := tenantLocation(ctx, tx, tenantID)
	if err != nil {
		return nil, err
	}
	kpis, err := loadKPIs(ctx, tx, tenantID)
	if err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT id FROM kpi_measures WHERE tenant_id = $1 AND NOT ready`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read measures: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, err
	}
	r := &reader{c: s.compiler, tx: tx, tenant: tenantID, loc: loc, now: now, kpis: kpis, pending: map[uuid.UUID]bool{}}
	if !s.UncachedReads {
		r.cache = s.closed
	}
	for _, id := range ids {
		r.pending[id] = true
	}
	return r, nil
}

// group is the storage scopes one requested scope reads (a team's sets).
type group struct {
	ids []uuid.UUID
	// since is the local day the scope exists from: its creation or its
	// first data, whichever is earlier (zero: it does not exist).
	since time.Time
}

type groupSet struct {
	kind    int16
	monthly bool
	groups  []group
}

// resolve turns requested scopes (all of one kind) into storage scopes.
func (r *reader) resolve(ctx context.Context, scopes []ScopeRef) (groupSet, error) {
	gs := groupSet{groups: make([]group, len(scopes))}
	if len(scopes) == 0 {
		return gs, nil
	}
	switch scopes[0].Kind {
	case ScopeCompany:
		gs.kind, gs.monthly = storeCompany, true
		var created time.Time
		var first *time.Time
		err := r.tx.QueryRow(ctx, `SELECT t.created_at, s.first_day FROM tenants t
			LEFT JOIN kpi_scope_since s ON s.tenant_id = t.id AND s.scope_kind = 0 AND s.scope_id = $2
			WHERE t.id = $1`, r.tenant, uuid.Nil).Scan(&created, &first)
		if err != nil {
			return gs, fmt.Errorf("resolve company: %w", err)
		}
		since := earliest(period.Date(created, r.loc), first)
		for i := range scopes {
			gs.groups[i] = group{ids: []uuid.UUID{uuid.Nil}, since: since}
		}
	case ScopePerson:
		gs.kind = storePerson
		people := make([]uuid.UUID, len(scopes))
		for i, s := range scopes {
			people[i] = s.ID
		}
		rows, err := r.tx.Query(ctx, `SELECT u.id, u.created_at, s.first_day FROM users u
			LEFT JOIN kpi_scope_since s ON s.tenant_id = u.tenant_id AND s.scope_kind = 2 AND s.scope_id = u.id
			WHERE u.tenant_id = $1 AND u.id = ANY($2)`, r.tenant, people)
		if err != nil {
			return gs, fmt.Errorf("resolve people: %w", err)
		}
		since := map[uuid.UUID]time.Time{}
		for rows.Next() {
			var id uuid.UUID
			var created time.Time
			var first *time.Time
			if err := rows.Scan(&id, &created, &first); err != nil {
				rows.Close()
				return gs, err
			}
			since[id] = earliest(period.Date(created, r.loc), first)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return gs, err
		}
		for i, s := range scopes {
			gs.groups[i] = group{ids: []uuid.UUID{s.ID}, since: since[s.ID]}
		}
	case ScopeTeam:
		gs.kind, gs.monthly = storeTeamSet, true
		roots := make([]uuid.UUID, len(scopes))
		for i, s := range scopes {
			roots[i] = s.ID
		}
		// A team exists from the creation of the earliest team of its
		// subtree or the first data of one of its sets.
		rows, err := r.tx.Query(ctx, `WITH RECURSIVE down(root, id, created_at) AS (
				SELECT id, id, created_at FROM teams WHERE tenant_id = $1 AND id = ANY($2)
				UNION
				SELECT d.root, t.id, t.created_at FROM teams t JOIN down d ON t.tenant_id = $1 AND t.parent_id = d.id
			) SELECT d.root, NULL::uuid, min(d.created_at), NULL::date FROM down d GROUP BY d.root
			UNION ALL
			SELECT DISTINCT d.root, s.id, NULL::timestamptz, f.first_day FROM down d
				JOIN kpi_team_sets s ON s.tenant_id = $1 AND d.id = ANY(s.team_ids)
				LEFT JOIN kpi_scope_since f ON f.tenant_id = $1 AND f.scope_kind = 1 AND f.scope_id = s.id`,
			r.tenant, roots)
		if err != nil {
			return gs, fmt.Errorf("resolve teams: %w", err)
		}
		sets := map[uuid.UUID][]uuid.UUID{}
		since := map[uuid.UUID]time.Time{}
		for rows.Next() {
			var root uuid.UUID
			var set *uuid.UUID
			var created *time.Time
			var first *time.Time
			if err := rows.Scan(&root, &set, &created, &first); err != nil {
				rows.Close()
				return gs, err
			}
			if set != nil {
				sets[root] = append(sets[root], *set)
			}
			if created != nil {
				d := period.Date(*created, r.loc)
				first = &d
			}
			if first != nil {
				since[root] = earliest(*first, since[root])
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return gs, err
		}
		for i, s := range scopes {
			gs.groups[i] = group{ids: sets[s.ID], since: since[s.ID]}
		}
	default:
		return gs, fmt.Errorf("unknown scope kind %d", scopes[0].Kind)
	}
	return gs, nil
}

// earliest returns the earlier of two days; a zero or nil day is unknown.
func earliest[T time.Time | *time.Time](a time.Time, b T) time.Time {
	var d time.Time
	switch v := any(b).(type) {
	case time.Time:
		d = v
	case *time.Time:
		if v != nil {
			d = *v
		}
	}
	if a.IsZero() || (!d.IsZero() && d.Before(a)) {
		return d
	}
	return a
}

// existed tells whether a scope existing from since (a local day) existed
// in p: p ends after that day and has begun. Counts, sums and stocks are 0
// there when nothing matched, and have no value elsewhere.
func (r *reader) existed(since time.Time, p period.Period) bool {
	return !since.IsZero() && period.Date(p.End, r.loc).After(since) && !p.Start.After(r.now)
}

// cell addresses one measure's data for a group and a period.
type cell struct {
	gi, pi  int
	measure uuid.UUID
}

type distAgg struct {
	count int64
	ps    map[float64]float64
}

type distCell struct {
	byDim map[string]distAgg
	total distAgg
}

type keysCell struct {
	byDim map[string]int64
	total int64
}

type results struct {
	flow  map[cell]map[string]sumDelta
	stock map[cell]map[string]sumDelta
	dist  map[cell]*distCell
	keys  map[cell]*keysCell
}

// needs collects what the plans read.
type needs struct {
	flow, stock, keys map[uuid.UUID]bool
	dist              map[uuid.UUID][]float64
}

func (n *needs) add(p *plan) {
	agg := p.def.Formula.Aggregation
	for _, m := range p.measures() {
		id := m.ID()
		switch m.Kind {
		case MeasureSums:
			if agg == Balance {
				n.stock[id] = true
			} else {
				n.flow[id] = true
			}
		case MeasureKeys:
			n.keys[id] = true
		case MeasureValues:
			q := 0.5
			if agg == Percentile {
				q = p.def.Formula.Percentile
			}
			if !slices.Contains(n.dist[id], q) {
				n.dist[id] = append(n.dist[id], q)
			}
		}
	}
}

func ids(m map[uuid.UUID]bool) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	return out
}

// plansFor compiles, per period, the version of each key and of the KPIs its
// composites read.
func (r *reader) plansFor(keys []string, periods []period.Period) ([]map[string]*plan, error) {
	out := make([]map[string]*plan, len(periods))
	for pi, p := range periods {
		out[pi] = map[string]*plan{}
		var visit func(key string, depth int) error
		visit = func(key string, depth int) error {
			if _, ok := out[pi][key]; ok || depth > 20 {
				return nil
			}
			k, ok := r.kpis[key]
			if !ok {
				out[pi][key] = nil // a composite reading a KPI that no longer exists: no value
				return nil
			}
			pl, err := r.c.plan(k.VersionFor(p.End).Definition)
			if err != nil {
				return fmt.Errorf("kpi %s: %w", key, err)
			}
			out[pi][key] = pl
			for _, ref := range pl.refs {
				if err := visit(ref, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		for _, k := range keys {
			if err := visit(k, 0); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// read evaluates keys for every group over consecutive periods of one kind:
// out[group][period][key].
func (r *reader) read(ctx context.Context, keys []string, gs groupSet, periods []period.Period) ([][]map[string]Value, error) {
	plans, err := r.plansFor(keys, periods)
	if err != nil {
		return nil, err
	}
	nd := needs{flow: map[uuid.UUID]bool{}, stock: map[uuid.UUID]bool{}, keys: map[uuid.UUID]bool{}, dist: map[uuid.UUID][]float64{}}
	for _, m := range plans {
		for _, p := range m {
			if p != nil {
				nd.add(p)
			}
		}
	}
	res, err := r.fetch(ctx, nd, gs, periods)
	if err != nil {
		return nil, err
	}
	out := make([][]map[string]Value, len(gs.groups))
	for gi := range gs.groups {
		out[gi] = make([]map[string]Value, len(periods))
		for pi := range periods {
			done := map[string]Value{}
			at := evalAt{gi: gi, pi: pi, exists: r.existed(gs.groups[gi].since, periods[pi]), company: gs.kind == storeCompany}
			for _, k := range keys {
				r.evaluate(k, plans[pi], res, at, done, 0)
			}
			out[gi][pi] = done
		}
	}
	return out, nil
}

// evalAt is where a KPI is evaluated: a group, a period, whether the
// scope existed in it, and whether it is the company.
type evalAt struct {
	gi, pi  int
	exists  bool
	company bool
}

func (r *reader) evaluate(key string, plans map[string]*plan, res *results, at evalAt, done map[string]Value, depth int) Value {
	if v, ok := done[key]; ok {
		return v
	}
	p := plans[key]
	var v Value
	switch {
	case p == nil || depth > 20:
	case p.companyOnly && !at.company:
		v.NotApplicable = true
	case p.def.Formula.Aggregation == Composite:
		inputs := map[string]*float64{}
		for _, ref := range p.refs {
			in := r.evaluate(ref, plans, res, at, done, depth+1)
			v.Computing = v.Computing || in.Computing
			v.NotApplicable = v.NotApplicable || in.NotApplicable
			inputs[ref] = in.Value
		}
		if v.NotApplicable {
			v.Computing = false
		} else if !v.Computing {
			v.Value = p.evalComposite(inputs)
		}
	default:
		for _, m := range p.measures() {
			if r.pending[m.ID()] {
				v.Computing = true
			}
		}
		if !v.Computing {
			v = p.value(res, at.gi, at.pi, at.exists)
		}
	}
	done[key] = v
	return v
}

// side is one measure's scalar: a sum (with its count) or a distinct count.
type side struct {
	n     int64
	total float64
	dimN  map[string]int64
	dimT  map[string]float64
}

func sumSide(m map[string]sumDelta) side {
	s := side{dimN: map[string]int64{}, dimT: map[string]float64{}}
	for d, v := range m {
		s.n += v.n
		s.total += v.total
		s.dimN[d], s.dimT[d] = v.n, v.total
	}
	return s
}

func keysSide(c *keysCell) side {
	s := side{dimN: map[string]int64{}, dimT: map[string]float64{}}
	if c == nil {
		return s
	}
	s.n, s.total = c.total, float64(c.total)
	for d, n := range c.byDim {
		s.dimN[d], s.dimT[d] = n, float64(n)
	}
	return s
}

func (res *results) side(m *MeasureSpec, stock bool, c cell) side {
	switch {
	case m.Kind == MeasureKeys:
		return keysSide(res.keys[c])
	case stock:
		return sumSide(res.stock[c])
	default:
		return sumSide(res.flow[c])
	}
}

func num(v float64) *float64 { return &v }

// value computes a non-composite plan from fetched data. exists tells
// whether the scope existed in the period: an empty count, sum or stock is 0
// there (and no value elsewhere); ratios, averages, medians and
// percentiles of nothing have no value anywhere.
func (p *plan) value(res *results, gi, pi int, exists bool) Value {
	agg := p.def.Formula.Aggregation
	c := cell{gi, pi, p.numID}
	var v Value
	if agg == Median || agg == Percentile {
		q := 0.5
		if agg == Percentile {
			q = p.def.Formula.Percentile
		}
		d := res.dist[c]
		if d == nil {
			return v
		}
		if d.total.count > 0 {
			v.Value = num(d.total.ps[q])
		}
		if p.num.Dim != NoDimension {
			for dim, a := range d.byDim {
				if a.count > 0 {
					v.Breakdown = append(v.Breakdown, DimValue{dim, num(a.ps[q])})
				}
			}
		}
		sortDims(&v)
		return v
	}
	ns := res.side(p.num, agg == Balance, c)
	var ds side
	if p.den != nil {
		ds = res.side(p.den, false, cell{gi, pi, p.denID})
	}
	// The breakdown lists the values that had data: a segment with no
	// event is not listed (the total is 0 where the scope existed).
	scalar := func(n int64, total float64, dn int64, dt float64, exists bool) *float64 {
		switch agg {
		case Count, Distinct:
			if n > 0 || exists {
				return num(float64(n))
			}
		case Sum, Balance:
			if n > 0 {
				return num(total)
			}
			if exists {
				return num(0)
			}
		case Average:
			if n > 0 {
				return num(total / float64(n))
			}
		case Ratio:
			if dn > 0 && dt != 0 {
				return num(total / dt)
			}
		}
		return nil
	}
	if agg == Distinct || p.num.Kind == MeasureKeys {
		ns.total = float64(ns.n)
	}
	v.Value = scalar(ns.n, ns.total, ds.n, ds.total, exists)
	if p.num.Dim != NoDimension {
		dims := map[string]bool{}
		for d := range ns.dimN {
			dims[d] = true
		}
		for d := range ds.dimN {
			dims[d] = true
		}
		for d := range dims {
			if x := scalar(ns.dimN[d], ns.dimT[d], ds.dimN[d], ds.dimT[d], false); x != nil {
				v.Breakdown = append(v.Breakdown, DimValue{d, x})
			}
		}
	}
	sortDims(&v)
	return v
}

func sortDims(v *Value) {
	slices.SortFunc(v.Breakdown, func(a, b DimValue) int {
		switch {
		case a.Dim < b.Dim:
			return -1
		case a.Dim > b.Dim:
			return 1
		}
		return 0
	})
	if len(v.Breakdown) > maxDimensions {
		v.Breakdown = v.Breakdown[:maxDimensions]
	}
}

func dates(periods []period.Period, loc *time.Location) []time.Time {
	out := make([]time.Time, 0, len(periods)+1)
	for _, p := range periods {
		out = append(out, period.Date(p.Start, loc))
	}
	return append(out, period.Date(periods[len(periods)-1].End, loc))
}

// cutoff is the day (exclusive) up to which a stock is summed for a period:
// its end, or tomorrow for the current and future periods (a stock is read
// as of today).
func (r *reader) cutoff(p period.Period) time.Time {
	end := period.Date(p.End, r.loc)
	tomorrow := period.Date(r.now, r.loc).AddDate(0, 0, 1)
	if tomorrow.Before(end) {
		return tomorrow
	}
	return end
}

func (r *reader) fetch(ctx context.Context, nd needs, gs groupSet, periods []period.Period) (*results, error) {
	res := &results{flow: map[cell]map[string]sumDelta{}, stock: map[cell]map[string]sumDelta{},
		dist: map[cell]*distCell{}, keys: map[cell]*keysCell{}}
	var sids []uuid.UUID
	var gis []int32
	for gi, g := range gs.groups {
		for _, id := range g.ids {
			sids, gis = append(sids, id), append(gis, int32(gi))
		}
	}
	if len(sids) == 0 || len(periods) == 0 {
		return res, nil
	}
	for i := 1; i < len(periods); i++ {
		if !periods[i].Start.Equal(periods[i-1].End) {
			return nil, fmt.Errorf("kpi read: periods are not consecutive")
		}
	}
	bounds := dates(periods, r.loc)
	from, to := bounds[0], bounds[len(bounds)-1]
	// Storage scopes drive the reads (LATERAL, fenced with OFFSET 0 so that
	// it is not flattened into a join): one index range per scope, whatever
	// the planner's estimates.
	scopes := `unnest($2::uuid[], $3::int[]) AS g(sid, gi)`

	if len(nd.flow) > 0 {
		grain := grainDay
		if gs.monthly && !slices.ContainsFunc(bounds, func(d time.Time) bool { return d.Day() != 1 }) {
			grain = grainMonth
		}
		rows, err := r.tx.Query(ctx, `SELECT g.gi, t.measure_id, t.dim, width_bucket(t.bucket, $7::date[]), sum(t.n)::bigint, sum(t.total)
			FROM `+scopes+` CROSS JOIN LATERAL (SELECT measure_id, dim, bucket, n, total FROM kpi_sums
				WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND grain = $5 AND measure_id = ANY($6)
				  AND bucket >= $8 AND bucket < $9 OFFSET 0) t
			GROUP BY 1, 2, 3, 4`, r.tenant, sids, gis, gs.kind, grain, ids(nd.flow), bounds, from, to)
		if err != nil {
			return nil, fmt.Errorf("read sums: %w", err)
		}
		err = scanSums(rows, func(gi int, m uuid.UUID, dim string, b int, d sumDelta) {
			if b < 1 || b > len(periods) {
				return
			}
			c := cell{gi, b - 1, m}
			if res.flow[c] == nil {
				res.flow[c] = map[string]sumDelta{}
			}
			res.flow[c][dim] = d
		})
		if err != nil {
			return nil, err
		}
	}

	if len(nd.stock) > 0 {
		cuts := make([]time.Time, len(periods))
		for i, p := range periods {
			cuts[i] = r.cutoff(p)
		}
		uniq := slices.Clone(cuts)
		slices.SortFunc(uniq, func(a, b time.Time) int { return a.Compare(b) })
		uniq = slices.CompactFunc(uniq, func(a, b time.Time) bool { return a.Equal(b) })
		// Whole months before the first cutoff's month come from month rows.
		first := time.Date(uniq[0].Year(), uniq[0].Month(), 1, 0, 0, 0, 0, time.UTC)
		if !gs.monthly {
			first = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		rows, err := r.tx.Query(ctx, `SELECT g.gi, t.measure_id, t.dim, t.b, sum(t.n)::bigint, sum(t.total)
			FROM `+scopes+` CROSS JOIN LATERAL (
				SELECT measure_id, dim, 0 AS b, n, total FROM kpi_sums
				WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND grain = 1 AND measure_id = ANY($5) AND bucket < $7
				UNION ALL
				SELECT measure_id, dim, width_bucket(bucket, $6::date[]), n, total FROM kpi_sums
				WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND grain = 0 AND measure_id = ANY($5)
				  AND bucket >= $7 AND bucket < $8 OFFSET 0) t
			GROUP BY 1, 2, 3, 4`, r.tenant, sids, gis, gs.kind, ids(nd.stock), uniq, first, uniq[len(uniq)-1])
		if err != nil {
			return nil, fmt.Errorf("read stocks: %w", err)
		}
		// per (gi, measure, dim): amount in each interval between cutoffs.
		type sk struct {
			gi  int
			m   uuid.UUID
			dim string
		}
		parts := map[sk][]sumDelta{}
		err = scanSums(rows, func(gi int, m uuid.UUID, dim string, b int, d sumDelta) {
			k := sk{gi, m, dim}
			if parts[k] == nil {
				parts[k] = make([]sumDelta, len(uniq)+1)
			}
			parts[k][b].n += d.n
			parts[k][b].total += d.total
		})
		if err != nil {
			return nil, err
		}
		for k, ps := range parts {
			for pi, cut := range cuts {
				j := slices.IndexFunc(uniq, func(t time.Time) bool { return t.Equal(cut) })
				var acc sumDelta
				for b := 0; b <= j; b++ {
					acc.n += ps[b].n
					acc.total += ps[b].total
				}
				c := cell{k.gi, pi, k.m}
				if res.stock[c] == nil {
					res.stock[c] = map[string]sumDelta{}
				}
				res.stock[c][k.dim] = acc
			}
		}
	}

	if len(nd.dist) > 0 {
		var qs []float64
		for _, ps := range nd.dist {
			for _, q := range ps {
				if !slices.Contains(qs, q) {
					qs = append(qs, q)
				}
			}
		}
		dm := make([]uuid.UUID, 0, len(nd.dist))
		for id := range nd.dist {
			dm = append(dm, id)
		}
		err := r.cachedFetch(ctx, gs, dm, bounds, tableOps{table: 'v', qs: quantilesKey(qs),
			get: func(c cell) closedEntry { return closedEntry{dist: res.dist[c]} },
			put: func(c cell, e closedEntry) {
				if e.dist != nil {
					res.dist[c] = e.dist
				}
			},
			fetch: func(sids []uuid.UUID, gis []int32, ms []uuid.UUID, from, to time.Time) error {
				return r.fetchDistributions(ctx, res, sids, gis, gs.kind, ms, bounds, from, to, qs)
			},
			raw: func(sids []uuid.UUID, gis []int32, ms []uuid.UUID, from, to time.Time) (map[groupMeasure]*rawCell, error) {
				return r.rawValues(ctx, sids, gis, gs.kind, ms, from, to)
			},
			finish: func(c cell, a, b *rawCell) { res.finishDistribution(c, a, b, qs) },
		})
		if err != nil {
			return nil, err
		}
	}

	if len(nd.keys) > 0 {
		err := r.cachedFetch(ctx, gs, ids(nd.keys), bounds, tableOps{table: 'k',
			get: func(c cell) closedEntry { return closedEntry{keys: res.keys[c]} },
			put: func(c cell, e closedEntry) {
				if e.keys != nil {
					res.keys[c] = e.keys
				}
			},
			fetch: func(sids []uuid.UUID, gis []int32, ms []uuid.UUID, from, to time.Time) error {
				return r.fetchKeys(ctx, res, sids, gis, gs.kind, ms, bounds, from, to)
			},
			raw: func(sids []uuid.UUID, gis []int32, ms []uuid.UUID, from, to time.Time) (map[groupMeasure]*rawCell, error) {
				return r.rawKeys(ctx, sids, gis, gs.kind, ms, from, to)
			},
			finish: res.finishKeys,
		})
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

// fetchDistributions reads the quantiles qs of value measures ms for the
// storage scopes sids (of groups gis) from day from to day to, per period
// cut at bounds, into res.dist.
func (r *reader) fetchDistributions(ctx context.Context, res *results, sids []uuid.UUID, gis []int32, kind int16, ms []uuid.UUID,
	bounds []time.Time, from, to time.Time, qs []float64) error {
	scopes := `unnest($2::uuid[], $3::int[]) AS g(sid, gi)`
	periods := len(bounds) - 1
	rows, err := r.tx.Query(ctx, `SELECT g.gi, t.measure_id, width_bucket(t.day, $6::date[]), coalesce(t.dim, ''), GROUPING(t.dim),
			count(*), percentile_cont($9::float8[]) WITHIN GROUP (ORDER BY t.value)
		FROM `+scopes+` CROSS JOIN LATERAL (SELECT measure_id, day, dim, value, n FROM kpi_values
			WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND measure_id = ANY($5)
			  AND day >= $7 AND day < $8 AND n > 0 OFFSET 0) t
		CROSS JOIN LATERAL generate_series(1, t.n) AS rep(i)
		GROUP BY GROUPING SETS ((g.gi, t.measure_id, width_bucket(t.day, $6::date[]), t.dim),
			(g.gi, t.measure_id, width_bucket(t.day, $6::date[])))`,
		r.tenant, sids, gis, kind, ms, bounds, from, to, qs)
	if err != nil {
		return fmt.Errorf("read distributions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var gi, b, grouping int32
		var m uuid.UUID
		var dim string
		var count int64
		var pcts []float64
		if err := rows.Scan(&gi, &m, &b, &dim, &grouping, &count, &pcts); err != nil {
			return err
		}
		if b < 1 || int(b) > periods {
			continue
		}
		c := cell{int(gi), int(b) - 1, m}
		if res.dist[c] == nil {
			res.dist[c] = &distCell{byDim: map[string]distAgg{}}
		}
		a := distAgg{count: count, ps: map[float64]float64{}}
		for i, q := range qs {
			a.ps[q] = pcts[i]
		}
		if grouping == 1 {
			res.dist[c].total = a
		} else {
			res.dist[c].byDim[dim] = a
		}
	}
	return rows.Err()
}

// fetchKeys counts the distinct keys of measures ms like
// fetchDistributions, into res.keys.
func (r *reader) fetchKeys(ctx context.Context, res *results, sids []uuid.UUID, gis []int32, kind int16, ms []uuid.UUID,
	bounds []time.Time, from, to time.Time) error {
	scopes := `unnest($2::uuid[], $3::int[]) AS g(sid, gi)`
	periods := len(bounds) - 1
	rows, err := r.tx.Query(ctx, `SELECT g.gi, t.measure_id, width_bucket(t.day, $6::date[]), coalesce(t.dim, ''), GROUPING(t.dim),
			count(DISTINCT t.key)
		FROM `+scopes+` CROSS JOIN LATERAL (SELECT measure_id, day, dim, key FROM kpi_keys
			WHERE tenant_id = $1 AND scope_kind = $4 AND scope_id = g.sid AND measure_id = ANY($5)
			  AND day >= $7 AND day < $8 AND n > 0 OFFSET 0) t
		GROUP BY GROUPING SETS ((g.gi, t.measure_id, width_bucket(t.day, $6::date[]), t.dim),
			(g.gi, t.measure_id, width_bucket(t.day, $6::date[])))`,
		r.tenant, sids, gis, kind, ms, bounds, from, to)
	if err != nil {
		return fmt.Errorf("read distinct keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var gi, b, grouping int32
		var m uuid.UUID
		var dim string
		var count int64
		if err := rows.Scan(&gi, &m, &b, &dim, &grouping, &count); err != nil {
			return err
		}
		if b < 1 || int(b) > periods {
			continue
		}
		c := cell{int(gi), int(b) - 1, m}
		if res.keys[c] == nil {
			res.keys[c] = &keysCell{byDim: map[string]int64{}}
		}
		if grouping == 1 {
			res.keys[c].total = count
		} else {
			res.keys[c].byDim[dim] = count
		}
	}
	return rows.Err()
}

func scanSums(rows pgx.Rows, fn func(gi int, m uuid.UUID, dim string, b int, d sumDelta)) error {
	defer rows.Close()
	for rows.Next() {
		var gi, b int32
		var m uuid.UUID
		var dim string
		var d sumDelta
		if err := rows.Scan(&gi, &m, &dim, &b, &d.n, &d.total); err != nil {
			return err
		}
		fn(int(gi), m, dim, int(b), d)
	}
	return rows.Err()
}

// restrictTo returns the scope a team-limited KPI (Scope.TeamID) is read
// over when scope is asked: the company is the team; a team inside it is
// itself; a team above it is the KPI's team; another team has no value.
func (r *reader) restrictTo(ctx context.Context, team uuid.UUID, scope ScopeRef) (ScopeRef, bool, error) {
	switch scope.Kind {
	case ScopeCompany:
		return ScopeRef{ScopeTeam, team}, true, nil
	case ScopeTeam:
		below, err := org.TeamAndDescendants(ctx, r.tx, r.tenant, []uuid.UUID{team})
		if err != nil {
			return scope, false, err
		}
		if slices.Contains(below, scope.ID) {
			return scope, true, nil
		}
		above, err := org.TeamAndDescendants(ctx, r.tx, r.tenant, []uuid.UUID{scope.ID})
		if err != nil {
			return scope, false, err
		}
		if slices.Contains(above, team) {
			return ScopeRef{ScopeTeam, team}, true, nil
		}
		return scope, false, nil
	}
	return scope, true, nil
}

// values reads keys for several scopes of one kind over consecutive
// periods: out[scope][period][key]. KPIs limited to a team are read over the
// scope restrictTo gives.
func (r *reader) values(ctx context.Context, keys []string, scopes []ScopeRef, periods []period.Period) ([][]map[string]Value, error) {
	out := make([][]map[string]Value, len(scopes))
	for i := range out {
		out[i] = make([]map[string]Value, len(periods))
		for j := range out[i] {
			out[i][j] = map[string]Value{}
		}
	}
	byTeam := map[uuid.UUID][]string{}
	for _, k := range keys {
		var team uuid.UUID
		if kp, ok := r.kpis[k]; ok {
			team = kp.Current().Definition.Scope.TeamID
		}
		byTeam[team] = append(byTeam[team], k)
	}
	for team, ks := range byTeam {
		targets := scopes
		var keep []int
		if team != uuid.Nil {
			targets = nil
			for i, s := range scopes {
				rs, ok, err := r.restrictTo(ctx, team, s)
				if err != nil {
					return nil, err
				}
				if ok {
					targets = append(targets, rs)
					keep = append(keep, i)
				}
			}
		} else {
			for i := range scopes {
				keep = append(keep, i)
			}
		}
		// Restriction may mix kinds (company asked, team read): read per kind.
		byKind := map[ScopeKind][]int{}
		for j, s := range targets {
			byKind[s.Kind] = append(byKind[s.Kind], j)
		}
		for _, idx := range byKind {
			sub := make([]ScopeRef, len(idx))
			for n, j := range idx {
				sub[n] = targets[j]
			}
			gs, err := r.resolve(ctx, sub)
			if err != nil {
				return nil, err
			}
			vals, err := r.read(ctx, ks, gs, periods)
			if err != nil {
				return nil, err
			}
			for n, j := range idx {
				for pi := range periods {
					for _, k := range ks {
						out[keep[j]][pi][k] = vals[n][pi][k]
					}
				}
			}
		}
	}
	return out, nil
}

// Series returns n consecutive periods of kind k, the last containing at.
func Series(k period.Kind, at time.Time, loc *time.Location, n int) []period.Period {
	out := make([]period.Period, n)
	p := period.Of(k, at, loc)
	for i := n - 1; i >= 0; i-- {
		out[i] = p
		p = p.Previous()
	}
	return out
}

// ValuesRequest reads KPI values directly (missions, tests, the load
// command).
type ValuesRequest struct {
	Keys    []string
	Scope   ScopeRef
	Periods []period.Period
	// Now is the instant stocks are read at for current periods (zero: the
	// service clock).
	Now time.Time
}

// Values returns out[period][key] for one scope over consecutive periods.
func (s *Service) Values(ctx context.Context, tenantID uuid.UUID, req ValuesRequest) ([]map[string]Value, error) {
	now := req.Now
	if now.IsZero() {
		now = s.Now()
	}
	var out []map[string]Value
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		r, err := s.newReader(ctx, tx, tenantID, now)
		if err != nil {
			return err
		}
		for _, k := range req.Keys {
			if _, ok := r.kpis[k]; !ok {
				return rallye.NotFound("KPI " + k)
			}
		}
		vals, err := r.values(ctx, req.Keys, []ScopeRef{req.Scope}, req.Periods)
		if err != nil {
			return err
		}
		out = vals[0]
		return nil
	})
	return out, err
}
