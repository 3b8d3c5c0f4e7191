package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/rallyehq/rallye/internal/postgres"
)

// Consumer derives something from the change feed: KPI roll-ups, mission
// progress and points.
type Consumer interface {
	// Name identifies the consumer's cursor. Changing it replays the feed.
	Name() string
	// Consume applies changes, in feed order, inside tx, which also advances
	// the consumer's cursor: a change is applied exactly once. The feed runs
	// it under a savepoint: when it fails, what it wrote is undone, and the
	// change is retried with backoff, then dead-lettered (see Feed). It
	// reports what cannot be evaluated in RuleErrors rather than failing.
	Consume(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []Change) (Applied, error)
}

// Applied is what a consumer reports of the changes it applied.
type Applied struct {
	// After is work to run after commit (publishing to Redis), or nil.
	After func(context.Context)
	// RuleErrors are the expressions (scoring rules, mission and KPI
	// filters and values) that could not be evaluated for a change: the
	// change gave nothing through them. The feed counts and logs them once
	// the batch commits.
	RuleErrors []RuleError
}

// RuleError is an expression that could not be evaluated for an event.
// Evaluation is a pure function of the event version, so the version's +1
// and -1 changes skip the rule alike and the totals stay consistent.
type RuleError struct {
	// Rule names what holds the expression, such as "challenge 0190... rule 2"
	// or "kpi measure 0190..."; Err quotes the expression.
	Rule string
	// Seq is the change (0 for an event derived from changes), Event its
	// event version.
	Seq   int64
	Event Event
	Err   error
}

// Feed hands each company's changes to the registered consumers.
//
// Ordering: ingestion appends a company's changes as the last statement of
// its transaction, under a transaction advisory lock per company, so a
// company's changes commit in seq order and a consumer reading "seq after my
// cursor" never passes a change still to commit. Each consumer of a company
// runs under another advisory lock: several server instances share the work
// without ever applying a change twice.
//
// Failures: a change a consumer fails to apply (an error that is not
// PostgreSQL being unavailable) is isolated (the batch is retried one change
// at a time), then retried with jittered exponential backoff while the
// company's later changes wait for it; after Retry.MaxAttempts it moves to
// the dead letters and the cursor passes it. Later changes of the same event
// version are parked behind it, so that a version's changes are always
// applied in order; an operator retries (exactly once) or discards them.
type Feed struct {
	db        *postgres.DB
	log       *slog.Logger
	consumers []Consumer
	// BatchSize bounds the changes read per transaction.
	BatchSize int
	// Retry says how a failing change is retried before it is dead-lettered.
	Retry RetryPolicy
	// Now is the clock of the backoff (time.Now unless set).
	Now     func() time.Time
	metrics *feedMetrics
	// Tracer traces each step that applies changes (nil: no spans); see
	// trace.go for how a step joins the trace of the batches it applies.
	Tracer trace.Tracer
	traced tracedBatches
	// Sweep is how often Run drains every company whatever the
	// notifications (0: SweepInterval); set it before Run.
	Sweep time.Duration

	mu sync.Mutex
	// dirty and running are per company and consumer (its index): a
	// consumer of a company behind does not hold the others back, so the
	// live ranks do not wait for the KPI roll-ups of the same changes.
	dirty   map[drainKey]bool
	wake    chan struct{}
	running map[drainKey]bool
	// careful holds, per company and consumer, the last seq of a batch that
	// failed: up to it, changes are applied one at a time, so that the
	// failing one is known.
	careful map[consumerKey]int64
}

// drainKey is a unit of a worker's work: one consumer of one company.
type drainKey struct {
	tenant   uuid.UUID
	consumer int
}

type consumerKey struct {
	tenant   uuid.UUID
	consumer string
}

// NewFeed returns a feed without consumers.
func NewFeed(db *postgres.DB, log *slog.Logger) *Feed {
	return &Feed{db: db, log: log, BatchSize: 5000, Retry: DefaultRetry, Now: time.Now, metrics: newFeedMetrics(db),
		dirty: map[drainKey]bool{}, wake: make(chan struct{}, 1), running: map[drainKey]bool{}, careful: map[consumerKey]int64{}}
}

// Register adds a consumer. Call it before Run.
func (f *Feed) Register(c Consumer) {
	f.consumers = append(f.consumers, c)
	f.metrics.consumers = append(f.metrics.consumers, c.Name())
}

// Consumers names the registered consumers, in order.
func (f *Feed) Consumers() []string {
	names := make([]string, len(f.consumers))
	for i, c := range f.consumers {
		names[i] = c.Name()
	}
	return names
}

// ConsumerLock is the transaction advisory lock a consumer of a company
// holds while it applies changes: whoever holds it (another instance, an
// operator, a test) holds that consumer of that company back.
func ConsumerLock(tenantID uuid.UUID, consumer string) int64 { return lockKey(tenantID, consumer) }

func lockKey(tenantID uuid.UUID, consumer string) int64 {
	h := fnv.New64a()
	h.Write(tenantID[:])
	h.Write([]byte(consumer))
	return int64(h.Sum64())
}

// ChangeFailedError reports a change a consumer failed to apply, and when
// the feed tries it again (or that it was dead-lettered).
type ChangeFailedError struct {
	Consumer string
	Seq      int64
	Attempts int
	// RetryAt is when the next attempt is due; zero when the change was
	// dead-lettered.
	RetryAt time.Time
	Err     error
	// retry: the change failed again when an operator retried it.
	retry bool
}

func (e *ChangeFailedError) Error() string {
	if e.RetryAt.IsZero() {
		return fmt.Sprintf("feed consumer %s: change %d failed %d times and is dead-lettered: %v", e.Consumer, e.Seq, e.Attempts, e.Err)
	}
	return fmt.Sprintf("feed consumer %s: change %d failed (attempt %d), retrying at %s: %v",
		e.Consumer, e.Seq, e.Attempts, e.RetryAt.Format(time.RFC3339Nano), e.Err)
}

func (e *ChangeFailedError) Unwrap() error { return e.Err }

// Drain runs every consumer of a company until it has caught up. It reports
// pending when another instance holds one of the consumers: the caller tries
// again shortly. A change that fails is reported as a *ChangeFailedError;
// while it waits for its next attempt, its consumer is skipped without
// error.
func (f *Feed) Drain(ctx context.Context, tenantID uuid.UUID) (pending bool, err error) {
	r := f.drain(ctx, tenantID)
	return r.pending, r.err
}

type drainResult struct {
	pending bool
	// retryAt is the earliest next attempt of a failing change, if any.
	retryAt time.Time
	err     error
}

func (f *Feed) drain(ctx context.Context, tenantID uuid.UUID) drainResult {
	var out drainResult
	var errs []error
	for _, c := range f.consumers { // a failing consumer does not hold the others back
		r := f.drainConsumer(ctx, tenantID, c)
		out.pending = out.pending || r.pending
		out.retryAt = earliest(out.retryAt, r.retryAt)
		errs = append(errs, r.err)
	}
	out.err = errors.Join(errs...)
	return out
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// drainConsumer runs one consumer of a company until it has caught up.
func (f *Feed) drainConsumer(ctx context.Context, tenantID uuid.UUID, c Consumer) drainResult {
	var out drainResult
	var errs []error
	for {
		r, err := f.step(ctx, tenantID, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("feed consumer %s: %w", c.Name(), err))
			break
		}
		if r.failed != nil {
			errs = append(errs, r.failed)
			out.retryAt = earliest(out.retryAt, r.failed.RetryAt)
			if r.failed.RetryAt.IsZero() {
				continue // dead-lettered: the later changes go on
			}
			break
		}
		if r.isolate || r.retried {
			continue
		}
		out.retryAt = earliest(out.retryAt, r.retryAt)
		if r.waiting {
			out.pending = true
		}
		// A batch shorter than the limit read everything committed: changes
		// committed since notify the feed, which runs the consumer again,
		// so an extra transaction to find nothing is not needed.
		if r.read == 0 || !r.full {
			break
		}
	}
	out.err = errors.Join(errs...)
	return out
}

// stepResult is what one transaction of a consumer did.
type stepResult struct {
	// read counts the changes the cursor passed (applied or parked).
	read int
	// full: the batch read as many changes as it could (more may wait).
	full bool
	// waiting: another instance holds the consumer.
	waiting bool
	// retryAt: a failing change waits for its next attempt.
	retryAt time.Time
	// isolate: a batch failed; the next steps go one change at a time.
	isolate bool
	// retried: a dead letter was retried (or failed again).
	retried bool
	failed  *ChangeFailedError
}

// cursorState is a consumer's position in a company's feed.
type cursorState struct {
	seq int64
	// failure is the change being retried, if any.
	failure *failure
	// parked maps the versions with open dead letters to the state new
	// changes of them are parked in.
	parked   map[uuid.UUID]parkedVersion
	retrying bool
}

type failure struct {
	seq         int64
	attempts    int
	firstFailed time.Time
	nextAt      time.Time
}

type parkedVersion struct {
	state   string
	follows int64
}

func readCursor(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string) (cursorState, error) {
	var st cursorState
	var fseq *int64
	var attempts *int32
	var first, next *time.Time
	var versions []uuid.UUID
	var states []string
	var follows []int64
	err := tx.QueryRow(ctx, `SELECT coalesce(c.seq, 0), f.seq, f.attempts, f.first_failed_at, f.next_attempt_at,
			coalesce(d.versions, '{}'), coalesce(d.states, '{}'), coalesce(d.follows, '{}')
		FROM (SELECT 1) one
		LEFT JOIN feed_cursors c ON c.tenant_id = $1 AND c.consumer = $2
		LEFT JOIN feed_failures f ON f.tenant_id = $1 AND f.consumer = $2
		CROSS JOIN (SELECT array_agg(version_id ORDER BY version_id) AS versions,
				array_agg(state ORDER BY version_id) AS states, array_agg(follows ORDER BY version_id) AS follows
			FROM (SELECT DISTINCT ON (version_id) version_id, state, CASE follows WHEN 0 THEN seq ELSE follows END AS follows
				FROM feed_dead_letters WHERE tenant_id = $1 AND consumer = $2 AND state IN ('dead', 'retrying')
				ORDER BY version_id, seq DESC) v) d`,
		tenantID, consumer).Scan(&st.seq, &fseq, &attempts, &first, &next, &versions, &states, &follows)
	if err != nil {
		return st, fmt.Errorf("read cursor: %w", err)
	}
	if fseq != nil {
		st.failure = &failure{seq: *fseq, attempts: int(*attempts), firstFailed: *first, nextAt: *next}
	}
	if len(versions) > 0 {
		st.parked = make(map[uuid.UUID]parkedVersion, len(versions))
		for i, v := range versions {
			st.parked[v] = parkedVersion{state: states[i], follows: follows[i]}
			st.retrying = st.retrying || states[i] == deadRetrying
		}
	}
	return st, nil
}

// errIsolate rolls back a step whose batch failed, to retry it one change
// at a time.
var errIsolate = errors.New("isolate the failing change")

// step applies one batch: the changes after the cursor, minus those parked
// behind a dead letter of their version. A consumer error rolls back its
// writes only (a savepoint): the failure is recorded, or the change
// dead-lettered, in the same transaction.
func (f *Feed) step(ctx context.Context, tenantID uuid.UUID, c Consumer) (res stepResult, err error) {
	var applied Applied
	var appliedN, parkedN int
	var lastSeq int64
	key := consumerKey{tenantID, c.Name()}
	stepCtx, span := ctx, trace.Span(noop.Span{})
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "feed step failed")
		}
		span.End()
	}()
	err = f.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		res, applied, appliedN, parkedN, lastSeq = stepResult{}, Applied{}, 0, 0, 0
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey(tenantID, c.Name())).Scan(&got); err != nil {
			return err
		}
		if !got {
			res.waiting = true
			return nil
		}
		st, err := readCursor(ctx, tx, tenantID, c.Name())
		if err != nil {
			return err
		}
		if st.retrying {
			res.retried = true
			return f.retryDeadLetter(ctx, tx, tenantID, c, &applied, &appliedN, &res)
		}
		now := f.Now()
		limit := f.BatchSize
		if st.failure != nil && st.failure.seq > st.seq {
			if now.Before(st.failure.nextAt) {
				res.retryAt = st.failure.nextAt
				return nil
			}
			limit = 1
		}
		f.mu.Lock()
		if until, ok := f.careful[key]; ok {
			if until > st.seq {
				limit = 1
			} else {
				delete(f.careful, key)
			}
		}
		f.mu.Unlock()
		changes, err := readChanges(ctx, tx, tenantID, st.seq, limit)
		if err != nil || len(changes) == 0 {
			return err
		}
		res.read, res.full = len(changes), len(changes) == limit
		last := changes[len(changes)-1].Seq
		span.End() // a retried transaction's earlier attempt
		stepCtx, span = f.startStep(ctx, tenantID, c.Name(), changes)
		ctx := stepCtx
		apply := changes
		if len(st.parked) > 0 {
			apply = nil
			for _, ch := range changes {
				pv, ok := st.parked[ch.Event.VersionID]
				if !ok {
					apply = append(apply, ch)
					continue
				}
				if err := park(ctx, tx, tenantID, c.Name(), ch, pv, now); err != nil {
					return err
				}
				parkedN++
			}
		}
		if len(apply) > 0 {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return err
			}
			applied, err = c.Consume(ctx, sp, tenantID, apply)
			if err == nil {
				err = sp.Commit(ctx)
			}
			if err != nil {
				_ = sp.Rollback(ctx)
				applied = Applied{}
				if transient(ctx, err) {
					return err
				}
				if len(apply) > 1 || len(changes) > 1 {
					f.mu.Lock()
					f.careful[key] = last
					f.mu.Unlock()
					res.isolate = true
					return errIsolate
				}
				if err := f.recordFailure(ctx, tx, tenantID, c.Name(), apply[0], st, now, err, &res); err != nil {
					return err
				}
				if res.read > 0 { // dead-lettered: the cursor passed it
					lastSeq = last
				}
				return nil
			}
			appliedN = len(apply)
		}
		if st.failure != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM feed_failures WHERE tenant_id = $1 AND consumer = $2`, tenantID, c.Name()); err != nil {
				return fmt.Errorf("clear failure: %w", err)
			}
		}
		lastSeq = last
		return advance(ctx, tx, tenantID, c.Name(), last)
	})
	if errors.Is(err, errIsolate) {
		res.read = 0 // nothing passed: the batch is tried again one change at a time
		return res, nil
	}
	if err != nil {
		return res, err
	}
	if lastSeq > 0 && f.Tracer != nil {
		f.traced.passed(tenantID, c.Name(), lastSeq, f.consumers)
	}
	f.committed(stepCtx, tenantID, c.Name(), applied, appliedN, parkedN, res.failed)
	return res, nil
}

func advance(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string, seq int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO feed_cursors (tenant_id, consumer, seq, updated_at)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (tenant_id, consumer) DO UPDATE SET seq = excluded.seq, updated_at = now()`,
		tenantID, consumer, seq)
	if err != nil {
		return fmt.Errorf("advance cursor: %w", err)
	}
	return nil
}

// transient reports whether a consumer's error says nothing about the
// change: the request ended, or PostgreSQL was out of reach or asked for a
// retry. Such errors are retried without counting an attempt.
func transient(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		postgres.IsUnavailable(err)
}

// committed counts and logs what a committed step did, then runs the
// consumer's after-commit work.
func (f *Feed) committed(ctx context.Context, tenantID uuid.UUID, consumer string, a Applied, applied, parked int, failed *ChangeFailedError) {
	m := f.metrics
	m.applied.WithLabelValues(consumer).Add(float64(applied))
	if parked > 0 {
		m.deadLettered.WithLabelValues(consumer).Add(float64(parked))
		f.log.Warn("feed changes parked behind a dead letter of their event version", "consumer", consumer,
			"tenant_id", tenantID, "changes", parked)
	}
	if failed != nil {
		m.failed.WithLabelValues(consumer).Inc()
		switch {
		case failed.retry:
			f.log.Error("feed dead letter failed again when retried; it is dead again", "consumer", consumer,
				"tenant_id", tenantID, "seq", failed.Seq, "attempts", failed.Attempts, "error", failed.Err)
		case failed.RetryAt.IsZero():
			m.deadLettered.WithLabelValues(consumer).Inc()
			f.log.Error("feed change dead-lettered", "consumer", consumer, "tenant_id", tenantID, "seq", failed.Seq,
				"attempts", failed.Attempts, "error", failed.Err)
		default:
			f.log.Warn("feed change failed; retrying with backoff", "consumer", consumer, "tenant_id", tenantID,
				"seq", failed.Seq, "attempt", failed.Attempts, "retry_at", failed.RetryAt, "error", failed.Err)
		}
	}
	if len(a.RuleErrors) > 0 {
		m.ruleErrors.WithLabelValues(consumer).Add(float64(len(a.RuleErrors)))
		for _, re := range a.RuleErrors {
			f.log.Warn("rule not evaluated; the change is skipped by it", "consumer", consumer, "tenant_id", tenantID,
				"rule", re.Rule, "seq", re.Seq, "version_id", re.Event.VersionID,
				"source", re.Event.Source, "external_id", re.Event.ExternalID, "type", re.Event.Type, "error", re.Err)
		}
	}
	if a.After != nil {
		a.After(ctx)
	}
}

const versionColumns = `v.id, v.source, v.external_id, v.revision, v.type, v.occurred_at, v.retracted,
	coalesce(v.user_id, '00000000-0000-0000-0000-000000000000'), coalesce(v.rep_external_id, ''), v.team_ids,
	coalesce(v.account_id, ''), coalesce(v.opportunity_id, ''), coalesce(v.lead_id, ''), coalesce(v.amount, 0),
	coalesce(v.gross_margin, 0), coalesce(v.segment, ''), coalesce(v.product, ''), coalesce(v.deal_kind, ''),
	v.opportunity_created_at, coalesce(v.stage, ''), coalesce(v.from_stage, ''), v.stage_entered_at,
	v.lead_created_at, v.ticket_opened_at, v.score, v.discovery_completed, coalesce(v.content_id, ''),
	coalesce(v.channel, ''), v.attributes, v.received_at`

func scanVersion(r pgx.Row, e *Event, extra ...any) error {
	var oppCreated, stageEntered, leadCreated, ticketOpened *time.Time
	var attrs []byte
	dest := append(extra, &e.VersionID, &e.Source, &e.ExternalID, &e.Revision, &e.Type, &e.OccurredAt, &e.Retracted,
		&e.UserID, &e.RepExternalID, &e.TeamIDs, &e.AccountID, &e.OpportunityID, &e.LeadID, &e.Amount,
		&e.GrossMargin, &e.Segment, &e.Product, &e.DealKind, &oppCreated, &e.Stage, &e.FromStage, &stageEntered,
		&leadCreated, &ticketOpened, &e.Score, &e.DiscoveryCompleted, &e.ContentID, &e.Channel, &attrs, &e.ReceivedAt)
	if err := r.Scan(dest...); err != nil {
		return err
	}
	for _, t := range []struct {
		src *time.Time
		dst *time.Time
	}{{oppCreated, &e.OpportunityCreatedAt}, {stageEntered, &e.StageEnteredAt}, {leadCreated, &e.LeadCreatedAt}, {ticketOpened, &e.TicketOpenedAt}} {
		if t.src != nil {
			*t.dst = *t.src
		}
	}
	if len(attrs) > 0 {
		if err := json.Unmarshal(attrs, &e.Attributes); err != nil {
			return fmt.Errorf("event attributes: %w", err)
		}
	}
	return nil
}

// readChangesSQL reads a company's changes after a cursor ($2), at most $3,
// with their versions.
const readChangesSQL = `SELECT c.seq, c.sign, ` + versionColumns + `
	FROM (SELECT seq, sign, version_id FROM event_changes
		WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) c
	CROSS JOIN LATERAL (SELECT * FROM event_versions WHERE tenant_id = $1 AND id = c.version_id OFFSET 0) v
	ORDER BY c.seq`

func readChanges(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, after int64, limit int) ([]Change, error) {
	// The versions are fetched by primary key per change (LATERAL, fenced
	// with OFFSET 0 so that it is not flattened into a join), so the plan
	// does not depend on table statistics: unfenced, a young table's stale
	// statistics made the planner rescan every version of the company for
	// each change read (20 changes among 5,800 versions: 110,901 rows
	// filtered, 130-160 ms instead of 4-6 ms), so a consumer got slower the
	// more the company had sent, until the next ANALYZE.
	rows, err := tx.Query(ctx, readChangesSQL, tenantID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read feed: %w", err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var ch Change
		var sign int16
		if err := scanVersion(rows, &ch.Event, &ch.Seq, &sign); err != nil {
			return nil, err
		}
		ch.Sign = int(sign)
		ch.Event.TenantID = tenantID
		out = append(out, ch)
	}
	return out, rows.Err()
}

// signal wakes a worker, unless one is already due to wake.
func (f *Feed) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Notify marks a company as having changes, for Run to drain.
func (f *Feed) Notify(tenantID uuid.UUID) {
	f.mu.Lock()
	for i := range f.consumers {
		f.dirty[drainKey{tenantID, i}] = true
	}
	f.mu.Unlock()
	f.signal()
}

// SweepInterval is how often Run drains every company, whatever the
// notifications: the safety net for a notification lost while this instance
// was down.
const SweepInterval = 30 * time.Second

// Run drains companies as their changes arrive (PostgreSQL notifications on
// FeedChannel) until ctx ends, with workers each running one consumer of
// one company at a time (so several consumers and companies at once), and
// a periodic sweep of every company.
func (f *Feed) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	wg.Go(func() { f.listen(ctx) })
	wg.Go(func() { f.sweep(ctx) })
	for range workers {
		wg.Go(func() { f.work(ctx) })
	}
	wg.Wait()
}

func (f *Feed) listen(ctx context.Context) {
	for ctx.Err() == nil {
		if err := f.listenOnce(ctx); err != nil && ctx.Err() == nil {
			f.log.Warn("feed notifications interrupted; reconnecting", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

func (f *Feed) listenOnce(ctx context.Context) error {
	conn, err := f.db.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `LISTEN `+FeedChannel); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `UNLISTEN `+FeedChannel) }()
	f.markAll(ctx) // what arrived while we were not listening
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if id, batch, ok := parseFeedPayload(n.Payload); ok {
			if f.Tracer != nil {
				f.traced.add(id, batch)
			}
			f.Notify(id)
		}
	}
}

func (f *Feed) sweep(ctx context.Context) {
	every := f.Sweep
	if every <= 0 {
		every = SweepInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.markAll(ctx)
		}
	}
}

func (f *Feed) markAll(ctx context.Context) {
	var ids []uuid.UUID
	// Across tenants: the sweep looks for every company's pending changes.
	err := f.db.AcrossTenants(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM tenants`)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("feed sweep failed", "error", err)
		}
		return
	}
	for _, id := range ids {
		f.Notify(id)
	}
}

// take returns a dirty consumer of a company that no worker of this
// instance is running.
func (f *Feed) take() (drainKey, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.dirty {
		if !f.running[k] {
			delete(f.dirty, k)
			f.running[k] = true
			if len(f.dirty) > 0 { // let another worker take the next one
				f.signal()
			}
			return k, true
		}
	}
	return drainKey{}, false
}

func (f *Feed) done(k drainKey) {
	f.mu.Lock()
	delete(f.running, k)
	again := len(f.dirty) > 0
	f.mu.Unlock()
	if again {
		f.signal()
	}
}

func (f *Feed) work(ctx context.Context) {
	for {
		k, ok := f.take()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-f.wake:
				continue
			}
		}
		c := f.consumers[k.consumer]
		r := f.drainConsumer(ctx, k.tenant, c)
		f.done(k)
		switch {
		case ctx.Err() != nil:
			return
		case r.err != nil && !onlyChangeFailures(r.err): // change failures are logged as they happen
			level := slog.LevelError
			if postgres.IsUnavailable(r.err) {
				level = slog.LevelWarn
			}
			f.log.Log(ctx, level, "feed drain failed; will retry", "tenant_id", k.tenant, "consumer", c.Name(), "error", r.err)
			f.retryLater(ctx, k, time.Second)
		case !r.retryAt.IsZero():
			f.retryLater(ctx, k, max(r.retryAt.Sub(f.Now()), time.Millisecond))
		case r.err != nil: // a change was dead-lettered: the others are applied
		}
		if r.pending {
			f.retryLater(ctx, k, 20*time.Millisecond)
		}
	}
}

// onlyChangeFailures reports whether err holds only *ChangeFailedError.
func onlyChangeFailures(err error) bool {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var cf *ChangeFailedError
		if !errors.As(e, &cf) {
			return false
		}
	}
	return true
}

func (f *Feed) retryLater(ctx context.Context, k drainKey, d time.Duration) {
	time.AfterFunc(d, func() {
		if ctx.Err() == nil {
			f.mu.Lock()
			f.dirty[k] = true
			f.mu.Unlock()
			f.signal()
		}
	})
}

// Pending reports whether a consumer has changes of the company left to
// apply (committed changes beyond its cursor, or dead letters neither
// retried nor discarded), inside the caller's transaction: a challenge does
// not become final while its events are on their way, nor while one of its
// company's changes waits in the dead letters.
func Pending(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string) (bool, error) {
	var pending bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM event_changes c
		WHERE c.tenant_id = $1 AND c.seq > coalesce(
			(SELECT f.seq FROM feed_cursors f WHERE f.tenant_id = $1 AND f.consumer = $2), 0))
		OR EXISTS (SELECT 1 FROM feed_dead_letters d
			WHERE d.tenant_id = $1 AND d.consumer = $2 AND d.state IN ('dead', 'retrying'))`,
		tenantID, consumer).Scan(&pending)
	if err != nil {
		return false, fmt.Errorf("feed pending: %w", err)
	}
	return pending, nil
}
