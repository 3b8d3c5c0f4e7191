package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// childOnly is a tracer provider whose tracers start spans only under a
// parent: a query or a Redis command is worth a span as a step of an
// operation (an RPC, a job, a feed step), not as a trace of its own.
type childOnly struct {
	embedded.TracerProvider
	provider trace.TracerProvider
}

func (c childOnly) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childOnlyTracer{tracer: c.provider.Tracer(name, opts...)}
}

type childOnlyTracer struct {
	embedded.Tracer
	tracer trace.Tracer
}

func (c childOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		// The context's span is a non-recording no-op here: callers end
		// and annotate it harmlessly.
		return ctx, trace.SpanFromContext(ctx)
	}
	return c.tracer.Start(ctx, name, opts...)
}
