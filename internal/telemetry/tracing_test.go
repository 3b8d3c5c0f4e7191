package telemetry

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// receiver is an in-process OTLP trace receiver: it records the service
// name and the span names of what it is sent, over HTTP or gRPC.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu       sync.Mutex
	services []string
	spans    []string
}

func (r *receiver) record(req *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				r.services = append(r.services, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, s.GetName())
			}
		}
	}
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.record(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	var m collectortrace.ExportTraceServiceRequest
	if req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &m) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	r.record(&m)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// startReceiver serves a receiver over protocol and returns its endpoint.
func startReceiver(t *testing.T, protocol string) (*receiver, string) {
	r := &receiver{}
	if protocol == "grpc" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		collectortrace.RegisterTraceServiceServer(s, r)
		go func() { _ = s.Serve(ln) }()
		t.Cleanup(s.Stop)
		return r, "http://" + ln.Addr().String()
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// Setup follows the OTEL_* variables: off unless an endpoint or the otlp
// exporter is named, spans exported over the protocol asked for, under the
// service name asked for, sampled as asked. (Not parallel: the variables
// and OpenTelemetry's globals are process-wide.)
func TestSetupFollowsTheEnvironment(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string // "ENDPOINT" is replaced by the receiver's
		protocol string            // of the receiver
		on       bool
		service  string
		spans    []string
		err      string
	}{
		{name: "OffWhenUnset", env: map[string]string{}},
		{name: "OffWhenDisabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ENDPOINT", "OTEL_SDK_DISABLED": "true"}},
		{name: "OffWithExporterNone", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ENDPOINT", "OTEL_TRACES_EXPORTER": "none"}},
		{name: "HTTPByDefault", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ENDPOINT"},
			protocol: "http/protobuf", on: true, service: ServiceName, spans: []string{"work", "step"}},
		{name: "GRPC", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_SERVICE_NAME": "rallye-eu"},
			protocol: "grpc", on: true, service: "rallye-eu", spans: []string{"work", "step"}},
		{name: "SampledOut", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "ENDPOINT", "OTEL_TRACES_SAMPLER": "always_off"},
			protocol: "http/protobuf", on: true},
		{name: "UnknownExporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "UnknownProtocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
	}
	vars := []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_SERVICE_NAME",
		"OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range vars {
				t.Setenv(v, "")
			}
			var r *receiver
			endpoint := "http://127.0.0.1:1"
			if tt.protocol != "" {
				r, endpoint = startReceiver(t, tt.protocol)
			}
			for k, v := range tt.env {
				if v == "ENDPOINT" {
					v = endpoint
				}
				t.Setenv(k, v)
			}
			ctx := context.Background()
			tr, err := Setup(ctx, log, Options{})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.On() != tt.on {
				t.Fatalf("tracing on = %v, want %v", tr.On(), tt.on)
			}
			if !tt.on {
				// Off: nothing to install anywhere.
				if tr.PgxTracer() != nil || tr.RiverMiddleware() != nil {
					t.Fatal("instrumentation handed out while tracing is off")
				}
				if is, err := tr.ConnectInterceptors(); err != nil || is != nil {
					t.Fatalf("interceptors %v, %v while tracing is off", is, err)
				}
				return
			}
			tracer := tr.Tracer("test")
			ctx, work := tracer.Start(ctx, "work")
			_, step := tracer.Start(ctx, "step")
			step.End()
			work.End()
			if err := tr.Shutdown(ctx); err != nil { // flushes
				t.Fatal(err)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			slices.Sort(r.spans)
			want := slices.Sorted(slices.Values(tt.spans))
			if !slices.Equal(r.spans, want) {
				t.Fatalf("received spans %v, want %v", r.spans, want)
			}
			for _, s := range r.services {
				if s != tt.service {
					t.Fatalf("service.name %q, want %q", s, tt.service)
				}
			}
		})
	}
}

// Queries and Redis commands get spans only inside a traced operation.
func TestChildOnlyTracerNeedsAParent(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	tr := New(tp, Options{})
	quiet := tr.quiet.Tracer("q")

	_, orphan := quiet.Start(context.Background(), "orphan query")
	if orphan.IsRecording() || orphan.SpanContext().IsValid() {
		t.Fatal("a span without a parent was started")
	}
	orphan.End()
	ctx, op := tr.Tracer("op").Start(context.Background(), "operation")
	_, q := quiet.Start(ctx, "query")
	q.End()
	op.End()
	var names []string
	for _, s := range exporter.GetSpans() {
		names = append(names, s.Name)
		if s.Name == "query" && s.Parent.SpanID() != op.SpanContext().SpanID() {
			t.Fatal("the query is not a child of the operation")
		}
	}
	if slices.Sort(names); !slices.Equal(names, []string{"operation", "query"}) {
		t.Fatalf("spans %v, want operation and query", names)
	}
}
