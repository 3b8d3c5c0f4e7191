package event

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
)

func TestFeedPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	tenant := uuid.New()
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5},
		TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	tests := []struct {
		name    string
		payload string
		ok      bool
		traced  bool
	}{
		{"Untraced", feedPayload(tenant, 0, ""), true, false},
		{"Traced", feedPayload(tenant, 42, traceParent(ctx)), true, true},
		{"Garbage", "not a company", false, false},
		{"BadSeq", tenant.String() + " x " + traceParent(ctx), true, false},
		{"BadTraceparent", tenant.String() + " 42 00-zz", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, b, ok := parseFeedPayload(tt.payload)
			if ok != tt.ok || (ok && id != tenant) {
				t.Fatalf("parse %q = %s, %v", tt.payload, id, ok)
			}
			if b.span.IsValid() != tt.traced {
				t.Fatalf("traced = %v, want %v", b.span.IsValid(), tt.traced)
			}
			if tt.traced && (b.lastSeq != 42 || b.span.TraceID() != sc.TraceID() || b.span.SpanID() != sc.SpanID()) {
				t.Fatalf("batch %+v, want seq 42 and the span %v", b, sc)
			}
		})
	}
	if traceParent(context.Background()) != "" {
		t.Fatal("a traceparent without a span")
	}
}

type namedConsumer string

func (c namedConsumer) Name() string { return string(c) }
func (namedConsumer) Consume(context.Context, pgx.Tx, uuid.UUID, []Change) (Applied, error) {
	return Applied{}, nil
}

// Random batches of contiguous changes (other companies' changes in
// between) and random steps over them: a step covers exactly the batches
// with a change in its range (the reference: a plain loop over every
// batch's range), oldest first; batches every consumer applied are
// forgotten.
func TestTracedBatchesCoverWhatAStepApplies(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	tenant := uuid.New()
	var tb tracedBatches
	type batch struct{ first, last int64 }
	var batches []batch
	seq := int64(100)
	for i := range 50 {
		n := 1 + rng.Int64N(20)
		batches = append(batches, batch{seq + 1, seq + n})
		tb.add(tenant, tracedBatch{lastSeq: seq + n, at: time.Now(),
			span: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{byte(i + 1)}, SpanID: trace.SpanID{byte(i + 1)}})})
		seq += n
		seq += rng.Int64N(3) // other companies' changes in between
	}
	// A step reads the company's changes: it starts and ends at one.
	var changes []int64
	for _, b := range batches {
		for s := b.first; s <= b.last; s++ {
			changes = append(changes, s)
		}
	}
	for range 300 {
		i := rng.IntN(len(changes))
		j := min(i+rng.IntN(60), len(changes)-1)
		first, last := changes[i], changes[j]
		var want, got []int64
		for _, b := range batches {
			if b.last >= first && b.first <= last {
				want = append(want, b.last)
			}
		}
		for _, b := range tb.covering(tenant, first, last) {
			got = append(got, b.lastSeq)
		}
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Fatalf("step [%d, %d] covers %v, want %v", first, last, got, want)
		}
	}
	consumers := []Consumer{namedConsumer("a"), namedConsumer("b")}
	mid := batches[25].last
	tb.passed(tenant, "a", seq, consumers)
	if n := len(tb.covering(tenant, 0, seq)); n != len(batches) {
		t.Fatalf("one consumer of two applied everything and %d of %d batches are left", n, len(batches))
	}
	tb.passed(tenant, "b", mid, consumers)
	if got := tb.covering(tenant, 0, seq); len(got) != len(batches)-26 || got[0].lastSeq != batches[26].last {
		t.Fatalf("after both passed %d: %d batches left", mid, len(got))
	}
	tb.passed(tenant, "b", seq, consumers)
	if got := tb.covering(tenant, 0, seq); len(got) != 0 {
		t.Fatalf("%d batches left after every consumer applied everything", len(got))
	}
}

// Batches nobody here applies are bounded in number.
func TestTracedBatchesAreBounded(t *testing.T) {
	t.Parallel()
	var tb tracedBatches
	tenant := uuid.New()
	for i := range 3 * tracedBatchesKept {
		tb.add(tenant, tracedBatch{lastSeq: int64(i + 1), at: time.Now(),
			span: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})})
	}
	got := tb.covering(tenant, 0, 1<<62)
	if len(got) != tracedBatchesKept || got[0].lastSeq != int64(2*tracedBatchesKept+1) {
		t.Fatalf("%d batches kept, the oldest ending at %d", len(got), got[0].lastSeq)
	}
}
