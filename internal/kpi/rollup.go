package kpi

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/period"
)

// ConsumerName is the roll-up consumer's cursor in the change feed.
const ConsumerName = "kpi-rollups"

// Storage scope kinds of the roll-up tables.
const (
	storeCompany int16 = 0
	storeTeamSet int16 = 1
	storePerson  int16 = 2
)

// Grains of kpi_sums.
const (
	grainDay   int16 = 0
	grainMonth int16 = 1
)

// Rollups is the change-feed consumer that keeps the roll-ups.
type Rollups struct{ s *Service }

// Name implements event.Consumer.
func (r Rollups) Name() string { return ConsumerName }

// Consume implements event.Consumer: it collapses the batch in memory into
// signed contributions per measure, scope, breakdown value and day (and
// month), then writes them with one statement per table.
func (r Rollups) Consume(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []event.Change) (event.Applied, error) {
	started := time.Now()
	// The roll-ups and the consumer's cursor commit together: a commit lost
	// in a crash is replayed from the previous cursor, so this transaction
	// need not wait for its WAL flush.
	if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return event.Applied{}, err
	}
	loc, err := tenantLocation(ctx, tx, tenantID)
	if err != nil {
		return event.Applied{}, err
	}
	measures, err := activeMeasures(ctx, tx, tenantID, r.s.compiler)
	if err != nil {
		return event.Applied{}, err
	}
	derived, err := applyOpportunities(ctx, tx, tenantID, changes)
	if err != nil {
		return event.Applied{}, err
	}
	agg := newAggregate(loc)
	byType := indexByType(measures)
	for _, batch := range [][]event.Change{changes, derived} {
		for i := range batch {
			agg.add(byType[batch[i].Event.Type], &batch[i].Event, batch[i].Sign, batch[i].Seq)
		}
	}
	evaluated := time.Now()
	if err := agg.write(ctx, tx, tenantID); err != nil {
		return event.Applied{}, err
	}
	if r.s.log != nil && r.s.log.Enabled(ctx, slog.LevelDebug) {
		r.s.log.Debug("roll-up batch", "tenant_id", tenantID, "changes", len(changes), "derived", len(derived),
			"sums", len(agg.sums), "values", len(agg.values), "keys", len(agg.keys),
			"evaluate_ms", evaluated.Sub(started).Milliseconds(), "write_ms", time.Since(evaluated).Milliseconds())
	}
	out := event.Applied{RuleErrors: agg.ruleErrors}
	changed := agg.changedMeasures()
	if len(changed) == 0 {
		return out, nil
	}
	if err := r.s.scheduleAlertCheck(ctx, tx, tenantID); err != nil {
		return event.Applied{}, err
	}
	out.After = func(ctx context.Context) { r.s.published(ctx, tenantID, changed) }
	return out, nil
}

func indexByType(ms []*compiledMeasure) map[event.Type][]*compiledMeasure {
	out := map[event.Type][]*compiledMeasure{}
	for _, m := range ms {
		for _, t := range m.spec.Types {
			out[t] = append(out[t], m)
		}
	}
	return out
}

func tenantLocation(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (*time.Location, error) {
	var tz string
	if err := tx.QueryRow(ctx, `SELECT time_zone FROM tenants WHERE id = $1`, tenantID).Scan(&tz); err != nil {
		return nil, fmt.Errorf("read company time zone: %w", err)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("company time zone %q: %w", tz, err)
	}
	return loc, nil
}

// activeMeasures returns the company's measures; those the consumer sees for
// the first time start at its cursor (the backfill covers what came before).
func activeMeasures(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, c *compiler) ([]*compiledMeasure, error) {
	rows, err := tx.Query(ctx, `SELECT spec, applied_from_seq IS NULL FROM kpi_measures WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read measures: %w", err)
	}
	var out []*compiledMeasure
	fresh := false
	for rows.Next() {
		var raw []byte
		var isNew bool
		if err := rows.Scan(&raw, &isNew); err != nil {
			rows.Close()
			return nil, err
		}
		var spec MeasureSpec
		if err := json.Unmarshal(raw, &spec); err != nil {
			rows.Close()
			return nil, fmt.Errorf("measure spec: %w", err)
		}
		m, err := c.measure(spec)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("compile measure %s: %w", spec.ID(), err)
		}
		out = append(out, m)
		fresh = fresh || isNew
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if fresh {
		if err := startMeasures(ctx, tx, tenantID); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// startMeasures records the consumer's current position on the measures that
// do not have one yet. The caller holds the consumer's lock (it is the
// consumer, or the backfill under event.LockConsumer).
func startMeasures(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	pos, err := event.Cursor(ctx, tx, tenantID, ConsumerName)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE kpi_measures SET applied_from_seq = $2
		WHERE tenant_id = $1 AND applied_from_seq IS NULL`, tenantID, pos.Seq)
	if err != nil {
		return fmt.Errorf("start measures: %w", err)
	}
	return nil
}

type sumKey struct {
	scopeKind int16
	scopeID   uuid.UUID
	grain     int16
	measure   uuid.UUID
	bucket    time.Time
	dim       string
}

type sumDelta struct {
	n     int64
	total float64
}

type valueKey struct {
	scopeKind int16
	scopeID   uuid.UUID
	measure   uuid.UUID
	day       time.Time
	dim       string
	value     float64
}

type keyKey struct {
	scopeKind int16
	scopeID   uuid.UUID
	measure   uuid.UUID
	day       time.Time
	dim       string
	key       string
}

// aggregate collapses contributions in memory before they are written.
type aggregate struct {
	loc    *time.Location
	sums   map[sumKey]*sumDelta
	values map[valueKey]int64
	keys   map[keyKey]int64
	sets   map[uuid.UUID][]uuid.UUID
	setOf  map[string]uuid.UUID
	// since is the earliest local day each storage scope got data on in
	// this batch (kpi_scope_since).
	since map[scopeID]time.Time
	// ruleErrors are the measures whose filter or value could not be
	// evaluated for an event: the event did not count for them.
	ruleErrors []event.RuleError
}

func newAggregate(loc *time.Location) *aggregate {
	return &aggregate{loc: loc, sums: map[sumKey]*sumDelta{}, values: map[valueKey]int64{}, keys: map[keyKey]int64{},
		sets: map[uuid.UUID][]uuid.UUID{}, setOf: map[string]uuid.UUID{}, since: map[scopeID]time.Time{}}
}

// scopeID names a storage scope.
type scopeID struct {
	kind int16
	id   uuid.UUID
}

// teamSetNamespace derives team set ids (UUIDv5) from their sorted members.
var teamSetNamespace = uuid.MustParse("6f1d7c9e-4b1a-4f63-9a55-2d0b7a1c3e10")

func teamSetID(teams []uuid.UUID) uuid.UUID {
	sorted := slices.Clone(teams)
	slices.SortFunc(sorted, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	var b strings.Builder
	for _, t := range sorted {
		b.Write(t[:])
	}
	return uuid.NewHash(sha1.New(), teamSetNamespace, []byte(b.String()), 5)
}

func (a *aggregate) teamSet(teams []uuid.UUID) uuid.UUID {
	var b strings.Builder
	for _, t := range teams {
		b.Write(t[:])
	}
	if id, ok := a.setOf[b.String()]; ok {
		return id
	}
	id := teamSetID(teams)
	a.setOf[b.String()] = id
	a.sets[id] = teams
	return id
}

type scopeRow struct {
	kind    int16
	id      uuid.UUID
	monthly bool
}

// add applies one change (seq 0: an event derived from changes) to the
// measures of its type.
func (a *aggregate) add(ms []*compiledMeasure, e *event.Event, sign int, seq int64) {
	if len(ms) == 0 {
		return
	}
	day := period.Date(e.OccurredAt, a.loc)
	month := time.Date(day.Year(), day.Month(), 1, 0, 0, 0, 0, time.UTC)
	scopes := make([]scopeRow, 1, 3)
	scopes[0] = scopeRow{storeCompany, uuid.Nil, true}
	if len(e.TeamIDs) > 0 && !companyOnlyTypes[e.Type] {
		scopes = append(scopes, scopeRow{storeTeamSet, a.teamSet(e.TeamIDs), true})
	}
	if e.UserID != uuid.Nil && !companyOnlyTypes[e.Type] {
		scopes = append(scopes, scopeRow{storePerson, e.UserID, false})
	}
	for _, sc := range scopes {
		k := scopeID{sc.kind, sc.id}
		if d, ok := a.since[k]; !ok || day.Before(d) {
			a.since[k] = day
		}
	}
	s := int64(sign)
	for _, m := range ms {
		c, ok, err := m.evaluate(e, a.loc)
		if err != nil {
			a.ruleErrors = append(a.ruleErrors, event.RuleError{Rule: "kpi measure " + m.id.String(), Seq: seq, Event: *e, Err: err})
		}
		if !ok {
			continue
		}
		for _, sc := range scopes {
			switch m.spec.Kind {
			case MeasureSums:
				a.addSum(sumKey{sc.kind, sc.id, grainDay, m.id, day, c.dim}, s, c.value)
				if sc.monthly {
					a.addSum(sumKey{sc.kind, sc.id, grainMonth, m.id, month, c.dim}, s, c.value)
				}
			case MeasureValues:
				a.values[valueKey{sc.kind, sc.id, m.id, day, c.dim, c.value}] += s
			case MeasureKeys:
				a.keys[keyKey{sc.kind, sc.id, m.id, day, c.dim, c.key}] += s
			}
		}
	}
}

func (a *aggregate) addSum(k sumKey, sign int64, v float64) {
	d := a.sums[k]
	if d == nil {
		d = &sumDelta{}
		a.sums[k] = d
	}
	d.n += sign
	d.total += float64(sign) * v
}

func (a *aggregate) changedMeasures() []uuid.UUID {
	seen := map[uuid.UUID]bool{}
	for k, d := range a.sums {
		if d.n != 0 || d.total != 0 {
			seen[k.measure] = true
		}
	}
	for k, n := range a.values {
		if n != 0 {
			seen[k.measure] = true
		}
	}
	for k, n := range a.keys {
		if n != 0 {
			seen[k.measure] = true
		}
	}
	out := make([]uuid.UUID, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	return out
}

func compareScope(ak int16, aid uuid.UUID, bk int16, bid uuid.UUID) int {
	if c := cmp.Compare(ak, bk); c != 0 {
		return c
	}
	return slices.Compare(aid[:], bid[:])
}

// write upserts the collapsed contributions, in primary-key order so that
// writers of the same rows (the consumer and a backfill) cannot deadlock.
func (a *aggregate) write(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	if len(a.sets) > 0 {
		ids := make([]uuid.UUID, 0, len(a.sets))
		members := make([]string, 0, len(a.sets))
		for id, teams := range a.sets {
			ids = append(ids, id)
			members = append(members, uuidArray(teams))
		}
		_, err := tx.Exec(ctx, `INSERT INTO kpi_team_sets (tenant_id, id, team_ids)
			SELECT $1, id, m::uuid[] FROM unnest($2::uuid[], $3::text[]) AS u(id, m) ON CONFLICT DO NOTHING`,
			tenantID, ids, members)
		if err != nil {
			return fmt.Errorf("write team sets: %w", err)
		}
	}
	if err := a.writeSince(ctx, tx, tenantID); err != nil {
		return err
	}
	if err := a.writeSums(ctx, tx, tenantID); err != nil {
		return err
	}
	if err := a.writeValues(ctx, tx, tenantID); err != nil {
		return err
	}
	if err := a.writeKeys(ctx, tx, tenantID); err != nil {
		return err
	}
	return a.writeGenerations(ctx, tx, tenantID)
}

// genKey is a distribution or distinct-key measure's local day (grainDay)
// or month (grainMonth).
type genKey struct {
	measure uuid.UUID
	grain   int16
	bucket  time.Time
}

// writeGenerations adds one to the generation of every measure's day and
// month whose kpi_values or kpi_keys rows this batch changed, in the same
// transaction: the read cache (closedCache) drops what it holds for them.
// Written last and in key order, like the other tables.
func (a *aggregate) writeGenerations(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	touched := map[genKey]bool{}
	touch := func(m uuid.UUID, day time.Time) {
		touched[genKey{m, grainDay, day}] = true
		touched[genKey{m, grainMonth, monthOf(day)}] = true
	}
	for k, n := range a.values {
		if n != 0 {
			touch(k.measure, k.day)
		}
	}
	for k, n := range a.keys {
		if n != 0 {
			touch(k.measure, k.day)
		}
	}
	if len(touched) == 0 {
		return nil
	}
	keys := make([]genKey, 0, len(touched))
	for k := range touched {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y genKey) int {
		if c := slices.Compare(x.measure[:], y.measure[:]); c != 0 {
			return c
		}
		if c := cmp.Compare(x.grain, y.grain); c != 0 {
			return c
		}
		return x.bucket.Compare(y.bucket)
	})
	measures, grains, buckets := make([]uuid.UUID, len(keys)), make([]int16, len(keys)), make([]time.Time, len(keys))
	for i, k := range keys {
		measures[i], grains[i], buckets[i] = k.measure, k.grain, k.bucket
	}
	_, err := tx.Exec(ctx, `INSERT INTO kpi_generations (tenant_id, measure_id, grain, bucket, gen)
		SELECT $1, m, g, d, 1 FROM unnest($2::uuid[], $3::smallint[], $4::date[]) AS u(m, g, d)
		ON CONFLICT (tenant_id, measure_id, grain, bucket) DO UPDATE SET gen = kpi_generations.gen + 1`,
		tenantID, measures, grains, buckets)
	if err != nil {
		return fmt.Errorf("write generations: %w", err)
	}
	return nil
}

// writeSince moves each scope's first day earlier when the batch has data
// before it (in key order, like the other writes).
func (a *aggregate) writeSince(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	if len(a.since) == 0 {
		return nil
	}
	keys := make([]scopeID, 0, len(a.since))
	for k := range a.since {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y scopeID) int { return compareScope(x.kind, x.id, y.kind, y.id) })
	kinds, scopes, days := make([]int16, len(keys)), make([]uuid.UUID, len(keys)), make([]time.Time, len(keys))
	for i, k := range keys {
		kinds[i], scopes[i], days[i] = k.kind, k.id, a.since[k]
	}
	_, err := tx.Exec(ctx, `INSERT INTO kpi_scope_since (tenant_id, scope_kind, scope_id, first_day)
		SELECT $1, * FROM unnest($2::smallint[], $3::uuid[], $4::date[])
		ON CONFLICT (tenant_id, scope_kind, scope_id)
		DO UPDATE SET first_day = excluded.first_day WHERE excluded.first_day < kpi_scope_since.first_day`,
		tenantID, kinds, scopes, days)
	if err != nil {
		return fmt.Errorf("write scope first days: %w", err)
	}
	return nil
}

func (a *aggregate) writeSums(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	keys := make([]sumKey, 0, len(a.sums))
	for k, d := range a.sums {
		if d.n != 0 || d.total != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(x, y sumKey) int {
		if c := compareScope(x.scopeKind, x.scopeID, y.scopeKind, y.scopeID); c != 0 {
			return c
		}
		if c := cmp.Compare(x.grain, y.grain); c != 0 {
			return c
		}
		if c := slices.Compare(x.measure[:], y.measure[:]); c != 0 {
			return c
		}
		if c := x.bucket.Compare(y.bucket); c != 0 {
			return c
		}
		return strings.Compare(x.dim, y.dim)
	})
	n := len(keys)
	kinds, grains := make([]int16, n), make([]int16, n)
	scopes, measures := make([]uuid.UUID, n), make([]uuid.UUID, n)
	buckets := make([]time.Time, n)
	dims := make([]string, n)
	counts, totals := make([]int64, n), make([]float64, n)
	for i, k := range keys {
		d := a.sums[k]
		kinds[i], scopes[i], grains[i], measures[i], buckets[i], dims[i] = k.scopeKind, k.scopeID, k.grain, k.measure, k.bucket, k.dim
		counts[i], totals[i] = d.n, d.total
	}
	_, err := tx.Exec(ctx, `INSERT INTO kpi_sums (tenant_id, scope_kind, scope_id, grain, measure_id, bucket, dim, n, total)
		SELECT $1, * FROM unnest($2::smallint[], $3::uuid[], $4::smallint[], $5::uuid[], $6::date[], $7::text[],
			$8::bigint[], $9::float8[])
		ON CONFLICT (tenant_id, scope_kind, scope_id, grain, measure_id, bucket, dim)
		DO UPDATE SET n = kpi_sums.n + excluded.n, total = kpi_sums.total + excluded.total`,
		tenantID, kinds, scopes, grains, measures, buckets, dims, counts, totals)
	if err != nil {
		return fmt.Errorf("write sums: %w", err)
	}
	return nil
}

func (a *aggregate) writeValues(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	keys := make([]valueKey, 0, len(a.values))
	for k, n := range a.values {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(x, y valueKey) int {
		if c := compareScope(x.scopeKind, x.scopeID, y.scopeKind, y.scopeID); c != 0 {
			return c
		}
		if c := slices.Compare(x.measure[:], y.measure[:]); c != 0 {
			return c
		}
		if c := x.day.Compare(y.day); c != 0 {
			return c
		}
		if c := strings.Compare(x.dim, y.dim); c != 0 {
			return c
		}
		return cmp.Compare(x.value, y.value)
	})
	n := len(keys)
	kinds := make([]int16, n)
	scopes, measures := make([]uuid.UUID, n), make([]uuid.UUID, n)
	days := make([]time.Time, n)
	dims := make([]string, n)
	values := make([]float64, n)
	counts := make([]int64, n)
	for i, k := range keys {
		kinds[i], scopes[i], measures[i], days[i], dims[i], values[i] = k.scopeKind, k.scopeID, k.measure, k.day, k.dim, k.value
		counts[i] = a.values[k]
	}
	_, err := tx.Exec(ctx, `INSERT INTO kpi_values (tenant_id, scope_kind, scope_id, measure_id, day, dim, value, n)
		SELECT $1, * FROM unnest($2::smallint[], $3::uuid[], $4::uuid[], $5::date[], $6::text[], $7::float8[], $8::int[])
		ON CONFLICT (tenant_id, scope_kind, scope_id, measure_id, day, dim, value)
		DO UPDATE SET n = kpi_values.n + excluded.n`,
		tenantID, kinds, scopes, measures, days, dims, values, counts)
	if err != nil {
		return fmt.Errorf("write values: %w", err)
	}
	return nil
}

func (a *aggregate) writeKeys(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) error {
	keys := make([]keyKey, 0, len(a.keys))
	for k, n := range a.keys {
		if n != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(x, y keyKey) int {
		if c := compareScope(x.scopeKind, x.scopeID, y.scopeKind, y.scopeID); c != 0 {
			return c
		}
		if c := slices.Compare(x.measure[:], y.measure[:]); c != 0 {
			return c
		}
		if c := x.day.Compare(y.day); c != 0 {
			return c
		}
		if c := strings.Compare(x.dim, y.dim); c != 0 {
			return c
		}
		return strings.Compare(x.key, y.key)
	})
	n := len(keys)
	kinds := make([]int16, n)
	scopes, measures := make([]uuid.UUID, n), make([]uuid.UUID, n)
	days := make([]time.Time, n)
	dims, ks := make([]string, n), make([]string, n)
	counts := make([]int64, n)
	for i, k := range keys {
		kinds[i], scopes[i], measures[i], days[i], dims[i], ks[i] = k.scopeKind, k.scopeID, k.measure, k.day, k.dim, k.key
		counts[i] = a.keys[k]
	}
	_, err := tx.Exec(ctx, `INSERT INTO kpi_keys (tenant_id, scope_kind, scope_id, measure_id, day, dim, key, n)
		SELECT $1, * FROM unnest($2::smallint[], $3::uuid[], $4::uuid[], $5::date[], $6::text[], $7::text[], $8::int[])
		ON CONFLICT (tenant_id, scope_kind, scope_id, measure_id, day, dim, key)
		DO UPDATE SET n = kpi_keys.n + excluded.n`,
		tenantID, kinds, scopes, measures, days, dims, ks, counts)
	if err != nil {
		return fmt.Errorf("write keys: %w", err)
	}
	return nil
}

func uuidArray(ids []uuid.UUID) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}
