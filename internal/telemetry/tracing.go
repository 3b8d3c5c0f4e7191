// Package telemetry is Rallye's observability plumbing beyond logs:
// OpenTelemetry tracing configured by the standard OTEL_* environment
// variables, the instrumentation of the clients it rests on (Connect
// handlers, pgx, go-redis, River), and the job-queue metrics for Prometheus.
//
// Tracing is off unless an OTLP endpoint (or OTEL_TRACES_EXPORTER=otlp) is
// configured. Off, nothing is installed: no interceptor, no pgx tracer, no
// Redis hook, no River middleware, and the domain's tracers are no-ops.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river/rivertype"
	"github.com/riverqueue/rivercontrib/otelriver"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ServiceName is the service.name of Rallye's spans unless OTEL_SERVICE_NAME
// (or OTEL_RESOURCE_ATTRIBUTES) says otherwise.
const ServiceName = "rallye"

// Tracing hands out the instrumentation of one tracer provider. A nil
// *Tracing is tracing off: every method returns a no-op or nothing.
type Tracing struct {
	provider trace.TracerProvider
	// quiet is provider restricted to spans with a parent (see childOnly).
	quiet       trace.TracerProvider
	trustRemote bool
	shutdown    func(context.Context) error
}

// Options adjust New.
type Options struct {
	// TrustRemote makes an RPC's span a child of the caller's span (W3C
	// traceparent header) instead of a new trace linked to it: for callers
	// inside your own infrastructure, whose traces you want continued.
	TrustRemote bool
}

// New instruments with provider (tests pass an SDK provider with an
// in-memory exporter).
func New(provider trace.TracerProvider, o Options) *Tracing {
	return &Tracing{provider: provider, quiet: childOnly{provider: provider}, trustRemote: o.TrustRemote,
		shutdown: func(context.Context) error { return nil }}
}

// Enabled reports whether the environment asks for traces: an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or
// OTEL_TRACES_EXPORTER=otlp, unless OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none.
func Enabled() (bool, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return false, nil
	}
	switch exp := strings.ToLower(strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER"))); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER: Rallye exports traces with otlp (or none), got %q", exp)
	}
}

// protocol is the OTLP transport the environment asks for; the
// specification's default is http/protobuf.
func protocol() (string, error) {
	p := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	name := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if p == "" {
		p, name = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch p {
	case "", "http/protobuf":
		return "http/protobuf", nil
	case "grpc":
		return "grpc", nil
	default:
		return "", fmt.Errorf("%s: want grpc or http/protobuf, got %q", name, p)
	}
}

// Setup reads the OTEL_* variables. When tracing is enabled it builds an
// OTLP exporter (gRPC or HTTP; endpoint, headers, TLS, timeout and
// compression from the OTEL_EXPORTER_OTLP_* variables, read by the
// exporter), a batching tracer provider whose sampler follows
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (parent-based, always on
// by default), a resource from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES, and installs them as OpenTelemetry's globals
// with the W3C trace-context and baggage propagators. When it is not, it
// returns nil (tracing off).
func Setup(ctx context.Context, log *slog.Logger, o Options) (*Tracing, error) {
	on, err := Enabled()
	if err != nil || !on {
		return nil, err
	}
	proto, err := protocol()
	if err != nil {
		return nil, err
	}
	var exp *otlptrace.Exporter
	if proto == "grpc" {
		exp, err = otlptracegrpc.New(ctx)
	} else {
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", ServiceName)}
	if v := version(); v != "" {
		attrs = append(attrs, attribute.String("service.version", v))
	}
	// Later detectors win: the environment overrides the defaults.
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithTelemetrySDK(),
		resource.WithHost(), resource.WithFromEnv())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("opentelemetry", "error", err)
	}))
	t := New(tp, o)
	t.shutdown = tp.Shutdown
	service, _ := res.Set().Value("service.name")
	log.Info("tracing on", "protocol", proto, "service", service.String())
	return t, nil
}

// On reports whether spans are recorded.
func (t *Tracing) On() bool { return t != nil }

// Shutdown flushes the spans still buffered. Call it after the server
// stopped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// Tracer is a tracer for Rallye's own spans (a no-op when off).
func (t *Tracing) Tracer(name string) trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.provider.Tracer(name)
}

// PgxTracer traces the queries run inside a traced operation (an RPC, a job,
// a feed step): the pool's background work (River polling for jobs, the
// feed's sweeps, health checks) would otherwise make a root trace of every
// query. Nil when off.
func (t *Tracing) PgxTracer() pgx.QueryTracer {
	if t == nil {
		return nil
	}
	// Span names are the SQL operation (SELECT, INSERT...); the statement
	// is an attribute, its parameters are not recorded.
	return otelpgx.NewTracer(otelpgx.WithTracerProvider(t.quiet), otelpgx.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelpgx.WithDisableConnectionDetailsInAttributes())
}

// InstrumentRedis traces rdb's commands and pipelines run inside a traced
// operation (on every node of a cluster).
func (t *Tracing) InstrumentRedis(rdb redis.UniversalClient) error {
	if t == nil {
		return nil
	}
	return redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(t.quiet), redisotel.WithDBStatement(false))
}

// ConnectInterceptors traces every RPC (a server span named after the
// procedure). Nil when off.
func (t *Tracing) ConnectInterceptors() ([]connect.Interceptor, error) {
	if t == nil {
		return nil, nil
	}
	opts := []otelconnect.Option{otelconnect.WithTracerProvider(t.provider), otelconnect.WithoutMetrics(),
		otelconnect.WithPropagator(propagation.TraceContext{})}
	if t.trustRemote {
		opts = append(opts, otelconnect.WithTrustRemote())
	}
	i, err := otelconnect.NewInterceptor(opts...)
	if err != nil {
		return nil, fmt.Errorf("connect tracing: %w", err)
	}
	return []connect.Interceptor{i}, nil
}

// RiverMiddleware traces job insertion and work. A job's work span is linked
// to the span that inserted it (the trace context travels in the job's
// metadata): jobs run seconds or days later, so a link, not a parent.
func (t *Tracing) RiverMiddleware() []rivertype.Middleware {
	if t == nil {
		return nil
	}
	return []rivertype.Middleware{otelriver.NewMiddleware(&otelriver.MiddlewareConfig{
		TracerProvider: t.provider, MeterProvider: metricnoop.NewMeterProvider(), EnableTracePropagation: true,
		EnableWorkSpanJobKindSuffix: true,
	})}
}

// version is the binary's module version, or its VCS revision.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return ""
}
