package event

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
)

// MaxBatch bounds one ingestion call.
const MaxBatch = 1000

// FeedChannel is the PostgreSQL notification channel that tells feed
// processors a company has new changes (the payload is its id).
const FeedChannel = "rallye_feed"

// Store receives and stores events.
type Store struct {
	db *postgres.DB
	// MaxFuture is how far ahead of Now an event's occurred_at may be
	// (DefaultMaxFuture unless set).
	MaxFuture time.Duration
	// Now is the server's clock (time.Now unless set).
	Now func() time.Time
	// Tracer traces each batch (nil: no spans). A traced batch's feed
	// notification carries its trace context to the consumers (trace.go).
	Tracer trace.Tracer
	// GroupTransactions bounds the group transactions of one company that
	// run at once on this server (DefaultGroupTransactions unless set; see
	// group.go).
	GroupTransactions int
	// Backpressure refuses a company's events while its consumers are
	// behind (nil: never).
	Backpressure *Backpressure

	groups  groups
	metrics storeMetrics
}

// NewStore returns the event store.
func NewStore(db *postgres.DB) *Store {
	return &Store{db: db, MaxFuture: DefaultMaxFuture, Now: time.Now, metrics: newStoreMetrics()}
}

// RowError reports a rejected event of a batch.
type RowError struct {
	Index   int
	Field   string
	Message string
}

// Row is one event of a batch as the transport decoded it.
type Row struct {
	Event Event
	// HasAmount tells whether the source sent an amount (zero is an amount).
	HasAmount bool
	// Invalid is set when the transport already rejected the row.
	Invalid *RowError
}

// Result counts what a batch did.
type Result struct {
	Accepted, Corrected, Duplicates int
	Rejected                        []RowError
	// Parked are the events kept for reps no person carries yet (see
	// ReleaseParked); they count nowhere until then.
	Parked []ParkedRow
	// UnknownReps are CRM ids of reps no person carries.
	UnknownReps []string
}

// state is one events row (the current version of a source event) before
// and after the batch.
type state struct {
	key        Key
	isNew      bool
	oldVersion uuid.UUID
	oldCounted bool

	version    uuid.UUID
	revision   int64
	typ        Type
	occurredAt time.Time
	opp        string
	userID     uuid.UUID
	retracted  bool
	counted    bool
	// written is the new version stored by this batch, if any.
	written *Event
}

type dealKey struct{ source, opp string }

func isDealType(t Type) bool { return t == DealWon || t == DealLost || t == DealReopened }

// Ingest stores a batch: new events, corrections and duplicates are told
// apart on (source, external id, revision), invalid rows are reported, and
// every version that starts or stops counting gets a feed change, all in one
// transaction.
func (s *Store) Ingest(ctx context.Context, p rallye.Principal, rows []Row) (Result, error) {
	if len(rows) == 0 || len(rows) > MaxBatch {
		return Result{}, rallye.Invalid("events", "send between 1 and %d events", MaxBatch)
	}
	ctx, finish := s.traceBatch(ctx, p.TenantID, len(rows))
	var res Result
	err := s.admit(ctx, p.TenantID)
	switch {
	case err != nil:
	case len(rows) <= GroupMaxEvents:
		res, err = s.ingestGrouped(ctx, p.TenantID, rows)
	default:
		res, err = s.ingestAlone(ctx, p.TenantID, rows)
	}
	finish(res, err)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// ingestAlone stores a batch in a transaction of its own.
func (s *Store) ingestAlone(ctx context.Context, tenantID uuid.UUID, rows []Row) (Result, error) {
	var outs []outcome
	bounds := BoundsAt(s.Now(), s.MaxFuture)
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		outs, err = ingest(ctx, tx, tenantID, rows, bounds)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return summarize(rows, outs, 0), nil
}

// outcomeKind is what a batch did with one row.
type outcomeKind uint8

const (
	outcomeRejected outcomeKind = iota
	outcomeAccepted
	outcomeCorrected
	outcomeDuplicate
	// outcomeParked: kept for a rep no person carries yet (see parked.go).
	outcomeParked
)

// outcome is what a batch did with one row: rows of a group transaction
// come from several callers, each told about its own rows.
type outcome struct {
	kind outcomeKind
	// rejected says why, when kind is outcomeRejected.
	rejected RowError
	// unknownRep is the CRM id no person carries, when the row was parked.
	unknownRep string
}

// summarize is the Result of rows[from:from+len(rows)]'s outcomes for the
// caller that sent them (row indexes are the caller's own).
func summarize(rows []Row, outs []outcome, from int) Result {
	var res Result
	unknown := map[string]bool{}
	for i := range rows {
		o := outs[from+i]
		switch o.kind {
		case outcomeAccepted:
			res.Accepted++
		case outcomeCorrected:
			res.Corrected++
		case outcomeDuplicate:
			res.Duplicates++
		case outcomeParked:
			res.Parked = append(res.Parked, ParkedRow{Index: i, RepExternalID: o.unknownRep})
			if !unknown[o.unknownRep] {
				unknown[o.unknownRep] = true
				res.UnknownReps = append(res.UnknownReps, o.unknownRep)
			}
		default:
			e := o.rejected
			if rows[i].Invalid == nil {
				e.Index = i
			}
			res.Rejected = append(res.Rejected, e)
		}
	}
	return res
}

type candidate struct {
	index int
	ev    Event
}

// ingest stores rows in tx and says what it did with each. Rows are
// settled as one batch: of several rows for one source event, the highest
// revision (the first of equals) is the one weighed against the stored
// event, and the others are duplicates.
func ingest(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, rows []Row, bounds Bounds) ([]outcome, error) {
	outs := make([]outcome, len(rows))
	reject := func(i int, err error) {
		e, _ := rallye.AsError(err)
		outs[i] = outcome{kind: outcomeRejected, rejected: RowError{Index: i, Field: e.Field, Message: e.Message}}
	}

	var currency string
	if err := tx.QueryRow(ctx, `SELECT currency FROM tenants WHERE id = $1`, tenantID).Scan(&currency); err != nil {
		return nil, fmt.Errorf("read company currency: %w", err)
	}

	// 1. Rules that need the type, then the reps.
	var cands []candidate
	var ids []uuid.UUID
	var exts []string
	for i, r := range rows {
		if r.Invalid != nil {
			outs[i] = outcome{kind: outcomeRejected, rejected: *r.Invalid}
			continue
		}
		e := r.Event
		e.TenantID = tenantID
		if err := Validate(e, r.HasAmount, currency, bounds); err != nil {
			reject(i, err)
			continue
		}
		if e.UserID != uuid.Nil {
			ids = append(ids, e.UserID)
		}
		if e.RepExternalID != "" {
			exts = append(exts, e.RepExternalID)
		}
		cands = append(cands, candidate{i, e})
	}
	reps, err := org.ResolveReps(ctx, tx, tenantID, ids, exts)
	if err != nil {
		return nil, err
	}
	resolved := cands[:0]
	var parked []parkRow
	for _, c := range cands {
		switch {
		case c.ev.RepExternalID != "":
			id, ok := reps.ByExternalID[c.ev.RepExternalID]
			if !ok {
				parked = append(parked, parkRow{c.ev, rows[c.index].HasAmount})
				outs[c.index] = outcome{kind: outcomeParked, unknownRep: c.ev.RepExternalID}
				continue
			}
			c.ev.UserID = id
		case c.ev.UserID != uuid.Nil && !reps.Known[c.ev.UserID]:
			reject(c.index, rallye.Invalid("rep_id", "no such person in the company"))
			continue
		}
		resolved = append(resolved, c)
	}
	if err := parkEvents(ctx, tx, tenantID, parked); err != nil {
		return nil, err
	}

	// 2. One candidate per source event: the highest revision, the first of
	// equals; the others are duplicates.
	best := map[Key]candidate{}
	var order []Key
	for _, c := range resolved {
		prev, ok := best[c.ev.Key()]
		switch {
		case !ok:
			best[c.ev.Key()] = c
			order = append(order, c.ev.Key())
		case c.ev.Revision > prev.ev.Revision:
			best[c.ev.Key()] = c
			outs[prev.index].kind = outcomeDuplicate
		default:
			outs[c.index].kind = outcomeDuplicate
		}
	}
	if len(order) == 0 {
		return outs, nil
	}
	slices.SortFunc(order, compareKeys)

	// 3. Serialise batches touching the same deals (the reopen rule reads
	// rows other batches may be inserting), then lock the stored rows.
	locked := map[dealKey]bool{}
	var deals []dealKey
	for _, k := range order {
		if e := best[k].ev; isDealType(e.Type) {
			deals = append(deals, dealKey{e.Source, e.OpportunityID})
		}
	}
	if err := lockDeals(ctx, tx, tenantID, deals, locked); err != nil {
		return nil, err
	}
	stored, err := lockEvents(ctx, tx, tenantID, order)
	if err != nil {
		return nil, err
	}

	// 4-7. Settle the batch. A new event may have been stored by a
	// concurrent batch since we looked: its insert conflicts, the write is
	// undone to a savepoint, the key is locked as an existing event, and the
	// batch is settled again (each round adds keys, so it ends; each
	// round decides the outcome of every candidate again).
	for {
		touched, conflicts, err := settle(ctx, tx, tenantID, batch{order, best, stored, deals, locked, reps}, outs)
		if err != nil {
			return nil, err
		}
		if len(conflicts) == 0 {
			if err := recordSources(ctx, tx, tenantID, best, order, touched, bounds.Latest); err != nil {
				return nil, err
			}
			return outs, appendChanges(ctx, tx, tenantID, touched)
		}
		more, err := lockEvents(ctx, tx, tenantID, conflicts)
		if err != nil {
			return nil, err
		}
		maps.Copy(stored, more)
	}
}

// batch is what settle works from.
type batch struct {
	order  []Key
	best   map[Key]candidate
	stored map[Key]*state // locked rows, left untouched
	deals  []dealKey
	locked map[dealKey]bool
	reps   org.Reps
}

// settle classifies the batch against the stored rows, applies the counting
// rules and writes, under a savepoint. It returns the touched rows, or the
// keys whose insert found a concurrent batch's row (nothing is then written).
func settle(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, b batch, outs []outcome) (map[Key]*state, []Key, error) {
	// 4. Classify.
	touched := map[Key]*state{}
	deals := slices.Clone(b.deals)
	var oldVersions []uuid.UUID
	for _, k := range b.order {
		c := b.best[k]
		prev, exists := b.stored[k]
		if exists && c.ev.Revision <= prev.revision {
			outs[c.index].kind = outcomeDuplicate
			continue
		}
		var st *state
		if !exists {
			st = &state{key: k, isNew: true}
			outs[c.index].kind = outcomeAccepted
		} else {
			cp := *prev
			st = &cp
			outs[c.index].kind = outcomeCorrected
			oldVersions = append(oldVersions, st.version)
			if isDealType(st.typ) && st.opp != "" {
				deals = append(deals, dealKey{k.Source, st.opp})
			}
		}
		ev := c.ev
		ev.VersionID = uuid.Must(uuid.NewV7())
		st.version, st.revision, st.typ, st.occurredAt = ev.VersionID, ev.Revision, ev.Type, ev.OccurredAt
		st.opp, st.userID, st.retracted = ev.OpportunityID, ev.UserID, ev.Retracted
		st.written = &ev
		touched[k] = st
	}
	if len(touched) == 0 {
		return touched, nil, nil
	}

	// 5. Team attribution: the rep's teams when the event was first
	// received; a correction keeps it unless it changes the rep.
	prevTeams, err := versionTeams(ctx, tx, tenantID, oldVersions)
	if err != nil {
		return nil, nil, err
	}
	for _, st := range touched {
		ev := st.written
		if prev, ok := prevTeams[st.oldVersion]; ok && prev.user == ev.UserID {
			ev.TeamIDs = prev.teams
		} else {
			ev.TeamIDs = b.reps.Teams[ev.UserID]
		}
	}

	// 6. Deal rules over every closing and reopening of the deals involved.
	if err := lockDeals(ctx, tx, tenantID, deals, b.locked); err != nil {
		return nil, nil, err
	}
	if err := loadDeals(ctx, tx, tenantID, b.locked, touched); err != nil {
		return nil, nil, err
	}
	applyCountingRules(touched)

	// 7. Write.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	conflicts, err := writeBatch(ctx, sp, tenantID, touched)
	if err != nil || len(conflicts) > 0 {
		_ = sp.Rollback(ctx)
		return nil, conflicts, err
	}
	return touched, nil, sp.Commit(ctx)
}

// appendChanges writes the feed: take back what each old version gave, give
// what each new one gives. It is the transaction's last statement, under a
// lock per company held until commit, so that a company's changes commit in
// seq order (see Feed).
func appendChanges(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, touched map[Key]*state) error {
	keys := slices.SortedFunc(maps.Keys(touched), compareKeys)
	var versions []uuid.UUID
	var signs []int16
	give := func(v uuid.UUID, sign int16) { versions, signs = append(versions, v), append(signs, sign) }
	for _, k := range keys {
		st := touched[k]
		switch {
		case st.version != st.oldVersion:
			if !st.isNew && st.oldCounted {
				give(st.oldVersion, -1)
			}
			if st.counted {
				give(st.version, 1)
			}
		case st.counted && !st.oldCounted:
			give(st.version, 1)
		case !st.counted && st.oldCounted:
			give(st.version, -1)
		}
	}
	if len(versions) == 0 {
		return nil
	}
	h := fnv.New64a()
	h.Write([]byte("feed"))
	h.Write(tenantID[:])
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64()))
	if err != nil {
		return fmt.Errorf("lock feed: %w", err)
	}
	const insert = `INSERT INTO event_changes (tenant_id, version_id, sign)
		SELECT $1, * FROM unnest($2::uuid[], $3::smallint[])`
	// A traced batch tells the consumers its last change and its trace.
	var last int64
	tp := traceParent(ctx)
	if tp == "" {
		_, err = tx.Exec(ctx, insert, tenantID, versions, signs)
	} else {
		err = tx.QueryRow(ctx, `WITH c AS (`+insert+` RETURNING seq) SELECT max(seq) FROM c`, tenantID, versions, signs).Scan(&last)
	}
	if err != nil {
		return fmt.Errorf("insert feed changes: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, FeedChannel, feedPayload(tenantID, last, tp)); err != nil {
		return fmt.Errorf("notify feed: %w", err)
	}
	return nil
}

// recordSources advances each source's watermark, last in the transaction
// because concurrent batches of one source take turns on its row. A
// watermark never passes latest (the server's clock plus the tolerated
// skew), whatever it held before: a source cannot reach the end of a
// challenge with data that has not happened.
func recordSources(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, best map[Key]candidate, order []Key, touched map[Key]*state, latest time.Time) error {
	newest := map[string]time.Time{}
	count := map[string]int64{}
	for _, k := range order {
		at := best[k].ev.OccurredAt
		if at.After(newest[k.Source]) {
			newest[k.Source] = at
		}
		if st := touched[k]; st != nil && st.isNew {
			count[k.Source]++
		}
	}
	var sources []string
	var times []time.Time
	var counts []int64
	for src, at := range newest {
		sources, times, counts = append(sources, src), append(times, at), append(counts, count[src])
	}
	_, err := tx.Exec(ctx, `INSERT INTO event_sources (tenant_id, source, newest_event_at, last_received_at, events)
		SELECT $1, s, least(t, $5), now(), n FROM unnest($2::text[], $3::timestamptz[], $4::bigint[]) AS u(s, t, n) ORDER BY s
		ON CONFLICT (tenant_id, source) DO UPDATE SET
			newest_event_at = least(greatest(event_sources.newest_event_at, excluded.newest_event_at), $5),
			last_received_at = excluded.last_received_at,
			events = event_sources.events + excluded.events`, tenantID, sources, times, counts, latest)
	if err != nil {
		return fmt.Errorf("record sources: %w", err)
	}
	return nil
}

func compareKeys(a, b Key) int {
	if c := strings.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	return strings.Compare(a.ExternalID, b.ExternalID)
}

// lockDeals takes a transaction advisory lock per deal not yet locked, in a
// stable order so that batches do not deadlock.
func lockDeals(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, deals []dealKey, locked map[dealKey]bool) error {
	var keys []int64
	for _, d := range deals {
		if d.opp == "" || locked[d] {
			continue
		}
		locked[d] = true
		h := fnv.New64a()
		h.Write(tenantID[:])
		h.Write([]byte(d.source + "\x00" + d.opp))
		keys = append(keys, int64(h.Sum64()))
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k ORDER BY k`, keys)
	if err != nil {
		return fmt.Errorf("lock deals: %w", err)
	}
	return nil
}

func scanState(r pgx.Row) (*state, error) {
	st := &state{}
	var opp *string
	var user *uuid.UUID
	err := r.Scan(&st.key.Source, &st.key.ExternalID, &st.version, &st.revision, &st.typ, &st.occurredAt, &opp, &user, &st.retracted, &st.counted)
	if opp != nil {
		st.opp = *opp
	}
	if user != nil {
		st.userID = *user
	}
	st.oldVersion, st.oldCounted = st.version, st.counted
	return st, err
}

const stateColumns = `source, external_id, version_id, revision, type, occurred_at, opportunity_id, user_id, retracted, counted`

func lockEvents(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, keys []Key) (map[Key]*state, error) {
	sources := make([]string, len(keys))
	extIDs := make([]string, len(keys))
	for i, k := range keys {
		sources[i], extIDs[i] = k.Source, k.ExternalID
	}
	// One index probe per key, in key order (keys arrive sorted), whatever
	// the planner's statistics say: a hash join over the company's whole
	// history would grow with it.
	rows, err := tx.Query(ctx, `SELECT e.* FROM unnest($2::text[], $3::text[]) AS k(source, external_id)
		CROSS JOIN LATERAL (SELECT `+stateColumns+` FROM events
			WHERE tenant_id = $1 AND source = k.source AND external_id = k.external_id FOR UPDATE) e`,
		tenantID, sources, extIDs)
	if err != nil {
		return nil, fmt.Errorf("lock events: %w", err)
	}
	out := map[Key]*state{}
	for rows.Next() {
		st, err := scanState(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out[st.key] = st
	}
	return out, rows.Err()
}

type attribution struct {
	user  uuid.UUID
	teams []uuid.UUID
}

func versionTeams(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, versions []uuid.UUID) (map[uuid.UUID]attribution, error) {
	out := map[uuid.UUID]attribution{}
	if len(versions) == 0 {
		return out, nil
	}
	rows, err := tx.Query(ctx, `SELECT id, coalesce(user_id, '00000000-0000-0000-0000-000000000000'), team_ids
		FROM event_versions WHERE tenant_id = $1 AND id = ANY($2)`, tenantID, versions)
	if err != nil {
		return nil, fmt.Errorf("read previous versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var a attribution
		if err := rows.Scan(&id, &a.user, &a.teams); err != nil {
			return nil, err
		}
		out[id] = a
	}
	return out, rows.Err()
}

// loadDeals adds to touched the stored closings and reopenings of the deals
// involved that the batch did not carry.
func loadDeals(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, deals map[dealKey]bool, touched map[Key]*state) error {
	if len(deals) == 0 {
		return nil
	}
	var sources, opps []string
	for _, d := range slices.SortedFunc(maps.Keys(deals), func(a, b dealKey) int {
		return compareKeys(Key{a.source, a.opp}, Key{b.source, b.opp})
	}) {
		sources, opps = append(sources, d.source), append(opps, d.opp)
	}
	rows, err := tx.Query(ctx, `SELECT e.* FROM unnest($2::text[], $3::text[]) AS d(source, opportunity_id)
		CROSS JOIN LATERAL (SELECT `+stateColumns+` FROM events
			WHERE tenant_id = $1 AND source = d.source AND opportunity_id = d.opportunity_id
			  AND type IN ('deal.won', 'deal.lost', 'deal.reopened')
			ORDER BY external_id FOR UPDATE) e`, tenantID, sources, opps)
	if err != nil {
		return fmt.Errorf("load deals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		st, err := scanState(rows)
		if err != nil {
			return err
		}
		if _, ok := touched[st.key]; !ok {
			touched[st.key] = st
		}
	}
	return rows.Err()
}

// applyCountingRules decides which versions count: not retracted, and for a
// win or loss, not followed (at the same instant or later) by a reopening of
// the same deal that itself counts.
func applyCountingRules(touched map[Key]*state) {
	reopenings := map[dealKey][]time.Time{}
	for _, st := range touched {
		if st.typ == DealReopened && !st.retracted && st.opp != "" {
			d := dealKey{st.key.Source, st.opp}
			reopenings[d] = append(reopenings[d], st.occurredAt)
		}
	}
	for _, st := range touched {
		st.counted = !st.retracted
		if st.counted && (st.typ == DealWon || st.typ == DealLost) {
			for _, at := range reopenings[dealKey{st.key.Source, st.opp}] {
				if !at.Before(st.occurredAt) {
					st.counted = false
					break
				}
			}
		}
	}
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullUser(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func uuidArray(ids []uuid.UUID) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func writeBatch(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, touched map[Key]*state) ([]Key, error) {
	keys := make([]Key, 0, len(touched))
	for k := range touched {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)

	var ins, upd eventRows
	var versions versionRows
	for _, k := range keys {
		st := touched[k]
		if st.written != nil {
			versions.add(st.written)
		}
		switch {
		case st.isNew:
			ins.add(st)
		case st.version != st.oldVersion || st.counted != st.oldCounted:
			upd.add(st)
		}
	}

	if len(ins.source) > 0 {
		rows, err := tx.Query(ctx, `INSERT INTO events (tenant_id, `+stateColumns+`)
			SELECT $1, * FROM unnest($2::text[], $3::text[], $4::uuid[], $5::bigint[], $6::text[], $7::timestamptz[],
				$8::text[], $9::uuid[], $10::boolean[], $11::boolean[])
			ON CONFLICT DO NOTHING RETURNING source, external_id`, append([]any{tenantID}, ins.args()...)...)
		if err != nil {
			return nil, fmt.Errorf("insert events: %w", err)
		}
		inserted := map[Key]bool{}
		for rows.Next() {
			var k Key
			if err := rows.Scan(&k.Source, &k.ExternalID); err != nil {
				rows.Close()
				return nil, err
			}
			inserted[k] = true
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("insert events: %w", err)
		}
		if len(inserted) != len(ins.source) {
			var conflicts []Key
			for i := range ins.source {
				if k := (Key{ins.source[i], ins.extID[i]}); !inserted[k] {
					conflicts = append(conflicts, k)
				}
			}
			return conflicts, nil
		}
	}
	if len(upd.source) > 0 {
		// One statement per row, in one round trip: each is a primary-key
		// update, whatever the planner's statistics.
		batch := &pgx.Batch{}
		for i := range upd.source {
			batch.Queue(`UPDATE events SET version_id = $4, revision = $5, type = $6, occurred_at = $7,
					opportunity_id = $8, user_id = $9, retracted = $10, counted = $11
				WHERE tenant_id = $1 AND source = $2 AND external_id = $3`,
				tenantID, upd.source[i], upd.extID[i], upd.version[i], upd.revision[i], upd.typ[i], upd.occurredAt[i],
				upd.opp[i], upd.user[i], upd.retracted[i], upd.counted[i])
		}
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return nil, fmt.Errorf("update events: %w", err)
		}
	}
	if len(versions.id) > 0 {
		if _, err := tx.Exec(ctx, insertVersionsSQL, append([]any{tenantID}, versions.args()...)...); err != nil {
			return nil, fmt.Errorf("insert event versions: %w", err)
		}
	}
	return nil, nil
}

// eventRows are events rows as column arrays, for unnest.
type eventRows struct {
	source, extID, typ []string
	version            []uuid.UUID
	revision           []int64
	occurredAt         []time.Time
	opp                []*string
	user               []*uuid.UUID
	retracted, counted []bool
}

func (r *eventRows) add(st *state) {
	r.source = append(r.source, st.key.Source)
	r.extID = append(r.extID, st.key.ExternalID)
	r.version = append(r.version, st.version)
	r.revision = append(r.revision, st.revision)
	r.typ = append(r.typ, string(st.typ))
	r.occurredAt = append(r.occurredAt, st.occurredAt)
	r.opp = append(r.opp, nullString(st.opp))
	r.user = append(r.user, nullUser(st.userID))
	r.retracted = append(r.retracted, st.retracted)
	r.counted = append(r.counted, st.counted)
}

func (r *eventRows) args() []any {
	return []any{r.source, r.extID, r.version, r.revision, r.typ, r.occurredAt, r.opp, r.user, r.retracted, r.counted}
}

const insertVersionsSQL = `INSERT INTO event_versions (tenant_id, id, source, external_id, revision, type, occurred_at, retracted,
		user_id, rep_external_id, team_ids, account_id, opportunity_id, lead_id, amount, gross_margin, segment, product,
		deal_kind, opportunity_created_at, stage, from_stage, stage_entered_at, lead_created_at, ticket_opened_at,
		score, discovery_completed, content_id, channel, attributes)
	SELECT $1, u.id, u.source, u.external_id, u.revision, u.type, u.occurred_at, u.retracted,
		u.user_id, u.rep_external_id, u.team_ids::uuid[], u.account_id, u.opportunity_id, u.lead_id, u.amount, u.gross_margin,
		u.segment, u.product, u.deal_kind, u.opportunity_created_at, u.stage, u.from_stage, u.stage_entered_at,
		u.lead_created_at, u.ticket_opened_at, u.score, u.discovery_completed, u.content_id, u.channel, u.attributes::jsonb
	FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::timestamptz[], $8::boolean[],
		$9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::bigint[], $16::bigint[],
		$17::text[], $18::text[], $19::text[], $20::timestamptz[], $21::text[], $22::text[], $23::timestamptz[],
		$24::timestamptz[], $25::timestamptz[], $26::integer[], $27::boolean[], $28::text[], $29::text[], $30::text[])
	AS u(id, source, external_id, revision, type, occurred_at, retracted, user_id, rep_external_id, team_ids,
		account_id, opportunity_id, lead_id, amount, gross_margin, segment, product, deal_kind, opportunity_created_at,
		stage, from_stage, stage_entered_at, lead_created_at, ticket_opened_at, score, discovery_completed,
		content_id, channel, attributes)`

// versionRows are event versions as column arrays, for unnest.
type versionRows struct {
	id                                                                   []uuid.UUID
	source, extID, typ, teams                                            []string
	revision                                                             []int64
	occurredAt                                                           []time.Time
	retracted, discovery                                                 []bool
	user                                                                 []*uuid.UUID
	repExt, account, opp, lead, segment, product, kind, stage, fromStage []*string
	content, channel, attributes                                         []*string
	amount, margin                                                       []int64
	oppCreated, stageEntered, leadCreated, ticketOpened                  []*time.Time
	score                                                                []*int32
}

func (r *versionRows) add(e *Event) {
	r.id = append(r.id, e.VersionID)
	r.source = append(r.source, e.Source)
	r.extID = append(r.extID, e.ExternalID)
	r.revision = append(r.revision, e.Revision)
	r.typ = append(r.typ, string(e.Type))
	r.occurredAt = append(r.occurredAt, e.OccurredAt)
	r.retracted = append(r.retracted, e.Retracted)
	r.user = append(r.user, nullUser(e.UserID))
	r.repExt = append(r.repExt, nullString(e.RepExternalID))
	r.teams = append(r.teams, uuidArray(e.TeamIDs))
	r.account = append(r.account, nullString(e.AccountID))
	r.opp = append(r.opp, nullString(e.OpportunityID))
	r.lead = append(r.lead, nullString(e.LeadID))
	r.amount = append(r.amount, e.Amount)
	r.margin = append(r.margin, e.GrossMargin)
	r.segment = append(r.segment, nullString(e.Segment))
	r.product = append(r.product, nullString(e.Product))
	r.kind = append(r.kind, nullString(e.DealKind))
	r.oppCreated = append(r.oppCreated, nullTime(e.OpportunityCreatedAt))
	r.stage = append(r.stage, nullString(e.Stage))
	r.fromStage = append(r.fromStage, nullString(e.FromStage))
	r.stageEntered = append(r.stageEntered, nullTime(e.StageEnteredAt))
	r.leadCreated = append(r.leadCreated, nullTime(e.LeadCreatedAt))
	r.ticketOpened = append(r.ticketOpened, nullTime(e.TicketOpenedAt))
	r.score = append(r.score, e.Score)
	r.discovery = append(r.discovery, e.DiscoveryCompleted)
	r.content = append(r.content, nullString(e.ContentID))
	r.channel = append(r.channel, nullString(e.Channel))
	var attrs *string
	if len(e.Attributes) > 0 {
		b, _ := json.Marshal(e.Attributes) // a map of strings always marshals
		s := string(b)
		attrs = &s
	}
	r.attributes = append(r.attributes, attrs)
}

func (r *versionRows) args() []any {
	return []any{r.id, r.source, r.extID, r.revision, r.typ, r.occurredAt, r.retracted, r.user, r.repExt, r.teams,
		r.account, r.opp, r.lead, r.amount, r.margin, r.segment, r.product, r.kind, r.oppCreated, r.stage, r.fromStage,
		r.stageEntered, r.leadCreated, r.ticketOpened, r.score, r.discovery, r.content, r.channel, r.attributes}
}
