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
	// the consumer's cursor: a change is applied exactly once. It returns
	// work to run after commit (publishing to Redis), or nil.
	Consume(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, changes []Change) (func(context.Context), error)
}

// Feed hands each company's changes to the registered consumers.
//
// Ordering: ingestion appends a company's changes as the last statement of
// its transaction, under a transaction advisory lock per company, so a
// company's changes commit in seq order and a consumer reading "seq after my
// cursor" never passes a change still to commit. Each consumer of a company
// runs under another advisory lock: several server instances share the work
// without ever applying a change twice.
type Feed struct {
	db        *postgres.DB
	log       *slog.Logger
	consumers []Consumer
	// BatchSize bounds the changes read per transaction.
	BatchSize int
	// Tracer traces each step that applies changes (nil: no spans); see
	// trace.go for how a step joins the trace of the batches it applies.
	Tracer trace.Tracer
	traced tracedBatches
	// Sweep is how often Run drains every company whatever the
	// notifications (0: SweepInterval); set it before Run.
	Sweep time.Duration

	mu      sync.Mutex
	dirty   map[uuid.UUID]bool
	wake    chan struct{}
	running map[uuid.UUID]bool
}

// NewFeed returns a feed without consumers.
func NewFeed(db *postgres.DB, log *slog.Logger) *Feed {
	return &Feed{db: db, log: log, BatchSize: 5000, dirty: map[uuid.UUID]bool{}, wake: make(chan struct{}, 1), running: map[uuid.UUID]bool{}}
}

// Register adds a consumer. Call it before Run.
func (f *Feed) Register(c Consumer) { f.consumers = append(f.consumers, c) }

func lockKey(tenantID uuid.UUID, consumer string) int64 {
	h := fnv.New64a()
	h.Write(tenantID[:])
	h.Write([]byte(consumer))
	return int64(h.Sum64())
}

// Drain runs every consumer of a company until it has caught up. It reports
// pending when another instance holds one of the consumers: the caller tries
// again shortly.
func (f *Feed) Drain(ctx context.Context, tenantID uuid.UUID) (pending bool, err error) {
	var errs []error
	for _, c := range f.consumers { // a failing consumer does not hold the others back
		for {
			n, more, err := f.step(ctx, tenantID, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("feed consumer %s: %w", c.Name(), err))
				break
			}
			if n == 0 {
				pending = pending || more
				break
			}
		}
	}
	return pending, errors.Join(errs...)
}

// step applies one batch: it returns how many changes it applied, and
// whether another instance holds the consumer.
func (f *Feed) step(ctx context.Context, tenantID uuid.UUID, c Consumer) (applied int, waiting bool, err error) {
	var after func(context.Context)
	var lastSeq int64
	stepCtx, span := ctx, trace.Span(noop.Span{})
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "feed step failed")
		}
		span.End()
	}()
	err = f.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		applied, waiting, after = 0, false, nil
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, lockKey(tenantID, c.Name())).Scan(&got); err != nil {
			return err
		}
		if !got {
			waiting = true
			return nil
		}
		var seq int64
		err := tx.QueryRow(ctx, `SELECT seq FROM feed_cursors WHERE tenant_id = $1 AND consumer = $2`,
			tenantID, c.Name()).Scan(&seq)
		if err != nil && !postgres.IsNoRows(err) {
			return fmt.Errorf("read cursor: %w", err)
		}
		changes, err := readChanges(ctx, tx, tenantID, seq, f.BatchSize)
		if err != nil || len(changes) == 0 {
			return err
		}
		span.End() // a retried transaction's earlier attempt
		stepCtx, span = f.startStep(ctx, tenantID, c.Name(), changes)
		ctx := stepCtx
		if after, err = c.Consume(ctx, tx, tenantID, changes); err != nil {
			return err
		}
		applied, lastSeq = len(changes), changes[len(changes)-1].Seq
		_, err = tx.Exec(ctx, `INSERT INTO feed_cursors (tenant_id, consumer, seq, updated_at)
			VALUES ($1, $2, $3, now())
			ON CONFLICT (tenant_id, consumer) DO UPDATE SET seq = excluded.seq, updated_at = now()`,
			tenantID, c.Name(), changes[len(changes)-1].Seq)
		return err
	})
	if err == nil && applied > 0 && f.Tracer != nil {
		f.traced.passed(tenantID, c.Name(), lastSeq, f.consumers)
	}
	if err == nil && after != nil {
		after(stepCtx)
	}
	return applied, waiting, err
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

func readChanges(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, after int64, limit int) ([]Change, error) {
	// The versions are fetched by primary key per change (LATERAL), so the
	// plan does not depend on table statistics.
	rows, err := tx.Query(ctx, `SELECT c.seq, c.sign, `+versionColumns+`
		FROM (SELECT seq, sign, version_id FROM event_changes
			WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) c
		CROSS JOIN LATERAL (SELECT * FROM event_versions WHERE tenant_id = $1 AND id = c.version_id) v
		ORDER BY c.seq`, tenantID, after, limit)
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

// Notify marks a company as having changes, for Run to drain.
func (f *Feed) Notify(tenantID uuid.UUID) {
	f.mu.Lock()
	f.dirty[tenantID] = true
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// SweepInterval is how often Run drains every company, whatever the
// notifications: the safety net for a notification lost while this instance
// was down.
const SweepInterval = 30 * time.Second

// Run drains companies as their changes arrive (PostgreSQL notifications on
// FeedChannel) until ctx ends, with workers draining several companies at
// once and a periodic sweep of every company.
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

// take returns a dirty company no worker of this instance is draining.
func (f *Feed) take() (uuid.UUID, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.dirty {
		if !f.running[id] {
			delete(f.dirty, id)
			f.running[id] = true
			if len(f.dirty) > 0 { // let another worker take the next one
				select {
				case f.wake <- struct{}{}:
				default:
				}
			}
			return id, true
		}
	}
	return uuid.Nil, false
}

func (f *Feed) done(id uuid.UUID) {
	f.mu.Lock()
	delete(f.running, id)
	again := len(f.dirty) > 0
	f.mu.Unlock()
	if again {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

func (f *Feed) work(ctx context.Context) {
	for {
		id, ok := f.take()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-f.wake:
				continue
			}
		}
		pending, err := f.Drain(ctx, id)
		f.done(id)
		switch {
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			return
		case err != nil:
			f.log.Error("feed drain failed; will retry", "tenant_id", id, "error", err)
			f.retryLater(ctx, id, time.Second)
		case pending:
			f.retryLater(ctx, id, 20*time.Millisecond)
		}
	}
}

func (f *Feed) retryLater(ctx context.Context, id uuid.UUID, d time.Duration) {
	time.AfterFunc(d, func() {
		if ctx.Err() == nil {
			f.Notify(id)
		}
	})
}

// Pending reports whether a consumer has changes of the company left to
// apply (committed changes beyond its cursor), inside the caller's
// transaction: a challenge does not become final while its events are on
// their way.
func Pending(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string) (bool, error) {
	var pending bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM event_changes c
		WHERE c.tenant_id = $1 AND c.seq > coalesce(
			(SELECT f.seq FROM feed_cursors f WHERE f.tenant_id = $1 AND f.consumer = $2), 0))`,
		tenantID, consumer).Scan(&pending)
	if err != nil {
		return false, fmt.Errorf("feed pending: %w", err)
	}
	return pending, nil
}
