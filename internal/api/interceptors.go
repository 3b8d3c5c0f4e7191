package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rallyehq/rallye/internal/rallye"
)

// requestInfo travels in the context of a request so that the outermost
// interceptor can log and count what inner ones learned (the principal).
type requestInfo struct {
	id        string
	principal rallye.Principal
	// reply is the unary reply the observer encoded, forgotten when the
	// request ends in case connect never asked for it.
	reply    replyKey
	hasReply bool
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	if ri, ok := ctx.Value(requestInfoKey{}).(*requestInfo); ok {
		return ri
	}
	return &requestInfo{}
}

func requestID(ctx context.Context) string { return infoFrom(ctx).id }

// rpcMetrics counts RPCs and their latencies by procedure and code.
type rpcMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// series caches the children per procedure and code: resolving label
	// values costs hashing on every call.
	series sync.Map // procedure + "\x00" + code -> rpcSeries
}

type rpcSeries struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (m *rpcMetrics) observe(procedure, code string, elapsed time.Duration) {
	key := procedure + "\x00" + code
	s, ok := m.series.Load(key)
	if !ok {
		s, _ = m.series.LoadOrStore(key, rpcSeries{
			requests: m.requests.WithLabelValues(procedure, code),
			duration: m.duration.WithLabelValues(procedure, code),
		})
	}
	rs := s.(rpcSeries)
	rs.requests.Inc()
	rs.duration.Observe(elapsed.Seconds())
}

func newRPCMetrics(reg prometheus.Registerer) *rpcMetrics {
	m := &rpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rallye_rpc_requests_total",
			Help: "RPCs handled, by procedure and status code.",
		}, []string{"procedure", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rallye_rpc_duration_seconds",
			Help:    "RPC latency (for streams, their lifetime), by procedure and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"procedure", "code"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observer is the outermost interceptor: it gives each request a logger with
// its request id, turns domain errors into Connect errors (one place), logs
// failures with their cause, and records metrics.
type observer struct {
	log     *slog.Logger
	metrics *rpcMetrics
	codecs  *codecSet
}

func (o *observer) begin(ctx context.Context, procedure string) context.Context {
	id := requestID(ctx)
	return rallye.WithLazyLogger(ctx, func() *slog.Logger {
		return o.log.With("request_id", id, "procedure", procedure)
	})
}

func (o *observer) end(ctx context.Context, procedure string, start time.Time, err error) error {
	code := "ok"
	var out error
	if err != nil {
		ce := toConnect(ctx, err)
		code = ce.Code().String()
		out = ce
	}
	elapsed := time.Since(start)
	o.metrics.observe(procedure, code, elapsed)
	if err == nil && !o.log.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	log := rallye.Logger(ctx)
	p := infoFrom(ctx).principal
	attrs := []any{"code", code, "duration_ms", float64(elapsed.Microseconds()) / 1000}
	if p.TenantID.String() != "00000000-0000-0000-0000-000000000000" {
		attrs = append(attrs, "tenant_id", p.TenantID, "user_id", p.UserID, "api_key_id", p.APIKeyID)
	}
	switch {
	case err == nil:
		log.Debug("rpc", attrs...)
	case code == connect.CodeInternal.String() || code == connect.CodeUnknown.String():
		log.Error("rpc failed", append(attrs, "error", err.Error())...)
	case code == connect.CodeUnavailable.String(): // a dependency dropped: the cause says which
		log.Warn("rpc unavailable", append(attrs, "error", err.Error())...)
	default:
		log.Info("rpc refused", append(attrs, "error", out.Error())...)
	}
	return out
}

func (o *observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		procedure := req.Spec().Procedure
		ctx = o.begin(ctx, procedure)
		res, err := next(ctx, req)
		if err == nil && res != nil {
			// Encoding the reply here makes a failure an error of the
			// call, logged and counted; connect reuses the bytes.
			key, ok, encErr := o.codecs.encodeReply(req, res)
			switch {
			case encErr != nil:
				res, err = nil, encErr
			case ok:
				ri := infoFrom(ctx)
				ri.reply, ri.hasReply = key, true
			}
		}
		if err != nil {
			return nil, o.end(ctx, procedure, start, err)
		}
		return res, o.end(ctx, procedure, start, nil)
	}
}

func (o *observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		procedure := conn.Spec().Procedure
		ctx = o.begin(ctx, procedure)
		return o.end(ctx, procedure, start, next(ctx, conn))
	}
}

// Authenticator resolves the credentials of a request.
type Authenticator interface {
	Authenticate(ctx context.Context, authorization string) (rallye.Principal, error)
}

// guard authenticates every call and enforces the rules table: the one place
// where roles are checked against procedures. It runs as a request gate, on
// the headers, before the body is read (edge.go), and for the webhook.
type guard struct {
	auth  Authenticator
	rules map[string][]rallye.Role
}

func (g *guard) admit(ctx context.Context, procedure, authorization string) (context.Context, error) {
	p, err := g.auth.Authenticate(ctx, authorization)
	if err != nil {
		return ctx, err
	}
	infoFrom(ctx).principal = p
	roles, ok := g.rules[procedure]
	if !ok {
		rallye.Logger(ctx).Error("procedure has no authorization rule; refusing", "procedure", procedure)
		return ctx, rallye.Errorf(rallye.CodePermissionDenied, "this call is not open to anyone")
	}
	if !p.Has(roles...) {
		return ctx, rallye.Errorf(rallye.CodePermissionDenied, "your role does not allow this call")
	}
	return rallye.WithPrincipal(ctx, p), nil
}
