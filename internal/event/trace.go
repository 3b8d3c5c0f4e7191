package event

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing across the change feed.
//
// The feed's consumers run after the ingesting request returned, on
// whichever instance holds their lock. A traced batch therefore sends its
// trace context with its feed notification: the payload becomes
// "<tenant> <last seq> <traceparent>" instead of "<tenant>" (only when the
// ingesting span is sampled, so with tracing off nothing changes). Every
// instance remembers, per company, the last seq of each traced batch
// notified. A consumer's step that applies changes up to seq N starts its
// span as a child of the oldest traced batch it covers (so a batch's trace
// shows ingestion, then each consumer, then what they publish to Redis, as
// one tree) and links to the other batches it covers (a step that caught up
// with several batches belongs to each of them). A notification missed
// (listener reconnecting, payload from another version) loses only the
// parenting: the step then starts a trace of its own.

// tracePropagator writes and reads W3C trace context.
var tracePropagator = propagation.TraceContext{}

// traceBatch starts the span of a batch when tracing is on; finish records
// the outcome and ends it.
func (s *Store) traceBatch(ctx context.Context, tenantID uuid.UUID, events int) (context.Context, func(Result, error)) {
	if s.Tracer == nil {
		return ctx, func(Result, error) {}
	}
	ctx, span := s.Tracer.Start(ctx, "event.ingest", trace.WithAttributes(
		attribute.String("rallye.tenant_id", tenantID.String()), attribute.Int("rallye.events", events)))
	return ctx, func(res Result, err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "ingest failed")
		} else {
			span.SetAttributes(attribute.Int("rallye.events.accepted", res.Accepted), attribute.Int("rallye.events.corrected", res.Corrected),
				attribute.Int("rallye.events.duplicates", res.Duplicates), attribute.Int("rallye.events.rejected", len(res.Rejected)))
		}
		span.End()
	}
}

// traceParent is ctx's sampled span as a W3C traceparent, or "".
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ""
	}
	c := propagation.MapCarrier{}
	tracePropagator.Inject(ctx, c)
	return c.Get("traceparent")
}

// feedPayload is the notification of a committed batch of a company.
func feedPayload(tenantID uuid.UUID, lastSeq int64, traceparent string) string {
	if traceparent == "" {
		return tenantID.String()
	}
	return fmt.Sprintf("%s %d %s", tenantID, lastSeq, traceparent)
}

// parseFeedPayload reads a notification: the company, and the traced
// batch when there is one.
func parseFeedPayload(payload string) (uuid.UUID, tracedBatch, bool) {
	id, rest, _ := strings.Cut(payload, " ")
	tenantID, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, tracedBatch{}, false
	}
	seq, tp, ok := strings.Cut(rest, " ")
	if !ok {
		return tenantID, tracedBatch{}, true
	}
	last, err := strconv.ParseInt(seq, 10, 64)
	if err != nil {
		return tenantID, tracedBatch{}, true
	}
	ctx := tracePropagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	return tenantID, tracedBatch{lastSeq: last, span: trace.SpanContextFromContext(ctx), at: time.Now()}, true
}

// tracedBatch is a traced batch's last change and its ingesting span.
type tracedBatch struct {
	lastSeq int64
	span    trace.SpanContext
	at      time.Time
}

// Bounds of the batches remembered per company: entries go once every
// consumer of this instance applied them, or when they are too old or too
// many (another instance applied them).
const (
	tracedBatchesKept = 256
	tracedBatchAge    = 10 * time.Minute
	maxStepLinks      = 64
)

// tracedBatches are the traced batches notified, per company, in seq order.
type tracedBatches struct {
	mu      sync.Mutex
	batches map[uuid.UUID][]tracedBatch
	// applied is, per company and consumer, the last seq applied here.
	applied map[uuid.UUID]map[string]int64
}

func (t *tracedBatches) add(tenantID uuid.UUID, b tracedBatch) {
	if !b.span.IsValid() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.batches == nil {
		t.batches, t.applied = map[uuid.UUID][]tracedBatch{}, map[uuid.UUID]map[string]int64{}
	}
	list := t.batches[tenantID]
	i, _ := slices.BinarySearchFunc(list, b.lastSeq, func(e tracedBatch, seq int64) int { return cmp.Compare(e.lastSeq, seq) })
	list = slices.Insert(list, i, b)
	old := b.at.Add(-tracedBatchAge)
	drop := max(len(list)-tracedBatchesKept, 0)
	for drop < len(list) && list[drop].at.Before(old) {
		drop++
	}
	t.batches[tenantID] = list[drop:]
}

// covering returns the traced batches with changes in [first, last]: those
// ending at or after first, up to the first one ending at or after last.
func (t *tracedBatches) covering(tenantID uuid.UUID, first, last int64) []tracedBatch {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []tracedBatch
	for _, b := range t.batches[tenantID] {
		if b.lastSeq < first {
			continue
		}
		out = append(out, b)
		if b.lastSeq >= last {
			break
		}
	}
	return out
}

// passed records that consumer applied the changes up to last, and forgets
// the batches every consumer of consumers applied.
func (t *tracedBatches) passed(tenantID uuid.UUID, consumer string, last int64, consumers []Consumer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.batches[tenantID] == nil {
		return
	}
	if t.applied[tenantID] == nil {
		t.applied[tenantID] = map[string]int64{}
	}
	t.applied[tenantID][consumer] = last
	low := last
	for _, c := range consumers {
		seq, ok := t.applied[tenantID][c.Name()]
		if !ok {
			return
		}
		low = min(low, seq)
	}
	list := t.batches[tenantID]
	n := 0
	for n < len(list) && list[n].lastSeq <= low {
		n++
	}
	if n == len(list) {
		delete(t.batches, tenantID)
		delete(t.applied, tenantID)
		return
	}
	t.batches[tenantID] = list[n:]
}

// startStep starts the span of a consumer's step over changes: a child of
// the oldest traced batch it covers, linked to the others.
func (f *Feed) startStep(ctx context.Context, tenantID uuid.UUID, consumer string, changes []Change) (context.Context, trace.Span) {
	if f.Tracer == nil {
		return ctx, noop.Span{}
	}
	first, last := changes[0].Seq, changes[len(changes)-1].Seq
	covered := f.traced.covering(tenantID, first, last)
	parent := ctx
	var links []trace.Link
	for i, b := range covered {
		if i == 0 {
			parent = trace.ContextWithRemoteSpanContext(ctx, b.span)
			continue
		}
		if len(links) < maxStepLinks {
			links = append(links, trace.Link{SpanContext: b.span})
		}
	}
	return f.Tracer.Start(parent, "feed "+consumer, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("rallye.tenant_id", tenantID.String()),
			attribute.String("rallye.feed.consumer", consumer),
			attribute.Int("rallye.feed.changes", len(changes)),
			attribute.Int64("rallye.feed.first_seq", first),
			attribute.Int64("rallye.feed.last_seq", last),
			attribute.Int("rallye.feed.traced_batches", len(covered)),
		))
}
