package event

import (
	"context"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Group commit.
//
// CRM webhooks often send one event per call. Each call in a transaction
// of its own pays for a transaction's fixed work (scoping, reading the
// company's currency, resolving reps, the feed's lock, its notification,
// the commit's flush to disk) for a single row. Small calls of one company
// therefore queue, and at most GroupTransactions transactions of that
// company run at once on a server: the calls that arrived while they ran
// are stored together by the next one, as one batch (up to MaxBatch
// events), and each caller is told what happened to its own events. An
// idle server runs a lone call at once, so grouping adds no wait; under
// load, groups grow with the load.
//
// A group is settled as one batch, which is the same as its calls run one
// after the other: of two calls carrying the same source event, the higher
// revision (the earlier call's, for equal revisions) is the one stored and
// the other is a duplicate. When the group's transaction fails, every
// caller of the group gets the error, and nothing of the group is stored.

// GroupMaxEvents is the largest call that joins a group; larger calls
// already share their transaction's fixed work among their own events.
const GroupMaxEvents = 100

// DefaultGroupTransactions is how many group transactions of one company
// run at once on a server unless Store.GroupTransactions says otherwise.
// One runs while the next one's calls gather; a company's transactions
// take turns on its feed lock at commit anyway.
const DefaultGroupTransactions = 2

// call is one caller waiting in a company's queue.
type call struct {
	ctx  context.Context
	rows []Row
	// taken is set (under the queues' lock) once a group holds the call:
	// it can no longer leave the queue, its rows are in a transaction.
	taken bool
	done  chan struct{}
	res   Result
	err   error
}

// companyQueue is a company's waiting calls and running groups.
type companyQueue struct {
	pending []*call
	running int
}

// groups is a Store's queues, per company.
type groups struct {
	mu     sync.Mutex
	queues map[uuid.UUID]*companyQueue
}

func (s *Store) groupLimit() int {
	if s.GroupTransactions > 0 {
		return s.GroupTransactions
	}
	return DefaultGroupTransactions
}

// ingestGrouped queues a small call with the company's other calls and
// waits for its outcome, or for ctx.
func (s *Store) ingestGrouped(ctx context.Context, tenantID uuid.UUID, rows []Row) (Result, error) {
	c := &call{ctx: ctx, rows: rows, done: make(chan struct{})}
	g := &s.groups
	g.mu.Lock()
	if g.queues == nil {
		g.queues = map[uuid.UUID]*companyQueue{}
	}
	q := g.queues[tenantID]
	if q == nil {
		q = &companyQueue{}
		g.queues[tenantID] = q
	}
	q.pending = append(q.pending, c)
	// The running count belongs to the goroutines started here, never to a
	// caller: a caller that leaves cannot take a turn away with it.
	start := q.running < s.groupLimit()
	if start {
		q.running++
	}
	g.mu.Unlock()
	if start {
		go s.drain(tenantID, q)
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
	}
	g.mu.Lock()
	if !c.taken {
		// Still waiting: leave the queue, nothing of the call is stored.
		q.pending = removeCall(q.pending, c)
		g.mu.Unlock()
		return Result{}, ctx.Err()
	}
	g.mu.Unlock()
	// A group holds the rows; its transaction runs on while any of its
	// callers waits, and may commit: like any call whose caller gave up,
	// the caller learns nothing, and a retry is a duplicate.
	return Result{}, ctx.Err()
}

func removeCall(calls []*call, c *call) []*call {
	for i, x := range calls {
		if x == c {
			return append(calls[:i], calls[i+1:]...)
		}
	}
	return calls
}

// drain runs the company's groups while calls wait, then gives its turn
// back.
func (s *Store) drain(tenantID uuid.UUID, q *companyQueue) {
	g := &s.groups
	for {
		g.mu.Lock()
		group := takeGroup(q)
		if len(group) == 0 {
			q.running--
			if q.running == 0 && len(q.pending) == 0 {
				delete(g.queues, tenantID)
			}
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		s.runGroup(tenantID, group)
	}
}

// takeGroup takes the waiting calls, first come first, up to MaxBatch
// events. Called with the queues' lock held.
func takeGroup(q *companyQueue) []*call {
	n, events := 0, 0
	for n < len(q.pending) && events+len(q.pending[n].rows) <= MaxBatch {
		events += len(q.pending[n].rows)
		n++
	}
	group := make([]*call, n)
	copy(group, q.pending[:n])
	q.pending = append(q.pending[:0], q.pending[n:]...)
	for _, c := range group {
		c.taken = true
	}
	return group
}

// runGroup stores a group's rows in one transaction and answers each
// caller.
func (s *Store) runGroup(tenantID uuid.UUID, group []*call) {
	ctx, cancel := groupContext(group)
	defer cancel()
	var rows []Row
	for _, c := range group {
		rows = append(rows, c.rows...)
	}
	var outs []outcome
	bounds := BoundsAt(s.Now(), s.MaxFuture)
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		outs, err = ingest(ctx, tx, tenantID, rows, bounds)
		return err
	})
	s.groupMetrics(len(group), len(rows))
	from := 0
	for _, c := range group {
		if err != nil {
			c.err = err
		} else {
			c.res = summarize(c.rows, outs, from)
		}
		from += len(c.rows)
		close(c.done)
	}
}

// groupContext is the context of a group's transaction: the first
// caller's values (its trace goes with the feed's notification), done only
// once every caller of the group is done, so that one caller giving up does
// not fail the others.
func groupContext(group []*call) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(group[0].ctx))
	var mu sync.Mutex
	left := len(group)
	stops := make([]func() bool, 0, len(group))
	for _, c := range group {
		stops = append(stops, context.AfterFunc(c.ctx, func() {
			mu.Lock()
			left--
			last := left == 0
			mu.Unlock()
			if last {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// storeMetrics tell how much calls share their transactions.
type storeMetrics struct {
	groupCalls  prometheus.Histogram
	groupEvents prometheus.Histogram
}

func newStoreMetrics() storeMetrics {
	return storeMetrics{
		groupCalls: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rallye_ingest_group_calls",
			Help:    "Calls stored by one group transaction (1: the call had its transaction to itself).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		groupEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rallye_ingest_group_events",
			Help:    "Events stored by one group transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000}}),
	}
}

func (s *Store) groupMetrics(calls, events int) {
	if s.metrics.groupCalls == nil {
		return // a Store not made by NewStore
	}
	s.metrics.groupCalls.Observe(float64(calls))
	s.metrics.groupEvents.Observe(float64(events))
}

// Collectors returns the store's Prometheus metrics, for the server's
// registry.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.groupCalls, s.metrics.groupEvents}
}
