// Package api is Rallye's transport layer: Connect handlers that translate
// protobuf to domain calls, the interceptors (observability, authentication,
// authorization, validation), the error mapping, and the HTTP mux that serves
// Connect, gRPC and gRPC-Web side by side with health, reflection and
// metrics. No domain package imports it.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rallyehq/rallye/gen/rallye/v1/rallyev1connect"
	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/dashboard"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/privacy"
	"github.com/rallyehq/rallye/internal/reward"
)

// Deps are what the handlers need.
type Deps struct {
	Log      *slog.Logger
	Registry *prometheus.Registry
	Auth     Authenticator
	Health   grpchealth.Checker
	Org      *org.Service
	APIKeys  *auth.APIKeys
	Events   *event.Store
	Boards   *leaderboard.Service
	// Challenges serves ChallengeService, ChallengeTemplateService and
	// MissionService.
	Challenges *challenge.Service
	KPI        *kpi.Service
	Dashboards *dashboard.Service
	// Rewards serves RewardService and the redemptions CSV export.
	Rewards *reward.Service
	// Analytics serves AnalyticsService.
	Analytics *analytics.Service
	// Privacy serves PrivacyService.
	Privacy *privacy.Service
	// Interceptors run first, around every RPC (tracing).
	Interceptors []connect.Interceptor
	// MaxRequestBytes bounds one request message after decompression
	// (0: config.DefaultMaxRequestBytes).
	MaxRequestBytes int64
}

// NewHandler returns the HTTP handler of the whole API.
func NewHandler(d Deps) (http.Handler, error) {
	validator, err := protovalidate.New()
	if err != nil {
		return nil, err
	}
	codecs := newCodecSet()
	obs := &observer{log: d.Log, metrics: newRPCMetrics(d.Registry), codecs: codecs}
	grd := &guard{auth: d.Auth, rules: rules}
	limit := requestLimit(d.MaxRequestBytes)
	opts := connect.WithHandlerOptions(
		// Credentials and roles are checked from the headers, before a
		// byte of the body is read (edge.go).
		connect.WithRequestGate(grd.gate(obs, limit)),
		readLimits(limit),
		codecs.options(),
		connect.WithInterceptors(append(append([]connect.Interceptor{}, d.Interceptors...),
			obs,
			&validating{v: validator},
		)...),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, r any) error {
			d.Log.Error("handler panicked", "procedure", spec.Procedure, "request_id", requestID(ctx), "panic", r)
			return connect.NewError(connect.CodeInternal, nil)
		}),
	)

	mux := http.NewServeMux()
	var services []string
	mount := func(path string, h http.Handler) {
		mux.Handle(path, h)
		services = append(services, path[1:len(path)-1])
	}
	mount(rallyev1connect.NewOrganizationServiceHandler(&organizationHandler{org: d.Org, validator: validator}, opts))
	mount(rallyev1connect.NewAccessServiceHandler(&accessHandler{keys: d.APIKeys}, opts))
	events := &eventHandler{store: d.Events, validator: validator}
	mount(rallyev1connect.NewEventServiceHandler(events, opts))
	mount(rallyev1connect.NewFeedServiceHandler(&feedHandler{store: d.Events}, opts))
	challenges := &challengeHandler{svc: d.Challenges, validator: validator}
	mount(rallyev1connect.NewChallengeServiceHandler(challenges, opts))
	mount(rallyev1connect.NewChallengeTemplateServiceHandler(challenges, opts))
	mount(rallyev1connect.NewMissionServiceHandler(&missionHandler{svc: d.Challenges}, opts))
	mount(rallyev1connect.NewKpiServiceHandler(&kpiHandler{kpi: d.KPI}, opts))
	mount(rallyev1connect.NewDashboardServiceHandler(&dashboardHandler{dash: d.Dashboards}, opts))
	mux.Handle(WebhookPath, &eventWebhook{guard: grd, observer: obs, events: events, validator: validator,
		errors: connect.NewErrorWriter(), maxBytes: limit})
	mount(rallyev1connect.NewRewardServiceHandler(&rewardHandler{svc: d.Rewards, validator: validator}, opts))
	mount(rallyev1connect.NewAnalyticsServiceHandler(&analyticsHandler{svc: d.Analytics}, opts))
	mount(rallyev1connect.NewPrivacyServiceHandler(&privacyHandler{svc: d.Privacy}, opts))
	exports := &exportHandler{analytics: d.Analytics, rewards: d.Rewards}
	mount(rallyev1connect.NewExportServiceHandler(exports, opts))
	mux.Handle(ExportPrefix, newExportHTTP(grd, obs, &validating{v: validator}, exports))
	mux.Handle(ExportPath, &redemptionsCSV{guard: grd, observer: obs, svc: d.Rewards, errors: connect.NewErrorWriter()})
	// Rankings are read several times a second by every player: gzip would
	// cost more CPU than the 1-3 KB it saves, so small responses go as is.
	mount(rallyev1connect.NewLeaderboardServiceHandler(&leaderboardHandler{boards: d.Boards},
		opts, connect.WithCompressMinBytes(leaderboardCompressMinBytes)))

	// Health and reflection need no credentials: their messages are small.
	anonymous := readLimits(anonymousMaxBytes)
	mux.Handle(grpchealth.NewHandler(d.Health, anonymous))
	reflector := grpcreflect.NewStaticReflector(append(services, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, anonymous))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, anonymous))
	mux.Handle("/metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry}))
	return withRequestID(limitBodies(mux, rules, limit), codecs), nil
}

// leaderboardCompressMinBytes is the smallest leaderboard response that is
// compressed when the client accepts it.
const leaderboardCompressMinBytes = 8 << 10

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// withRequestID gives every request an id (the caller's X-Request-Id when it
// is sane), echoes it in the response and puts it in the context for logs.
// It also forgets the encoded reply of a request that connect did not send.
func withRequestID(next http.Handler, codecs *codecSet) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			b := make([]byte, 8)
			_, _ = rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		ri := &requestInfo{id: id}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri)))
		if ri.hasReply {
			codecs.forget(ri.reply)
		}
	})
}
