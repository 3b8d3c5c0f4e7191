package app_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/testutil/testserver"
)

// The Helm chart's probes are native gRPC probes: the kubelet calls
// grpc.health.v1.Health/Check over cleartext HTTP/2, with the empty service
// name for readiness and "liveness" for liveness. Called the same way (a
// grpc-go client): both serve while PostgreSQL and Redis answer; when Redis
// is lost, readiness says NOT_SERVING (the instance leaves the load
// balancer) while liveness still says SERVING (it is not restarted).
func TestHealthProbes(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	conn, err := grpc.NewClient(strings.TrimPrefix(srv.URL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		res, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("check %q: %v", service, err)
		}
		return res.GetStatus()
	}
	tests := []struct {
		name      string
		breakIt   func()
		readiness healthpb.HealthCheckResponse_ServingStatus
		liveness  healthpb.HealthCheckResponse_ServingStatus
	}{
		{"Healthy", func() {}, healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_SERVING},
		{"RedisLost", func() { _ = srv.App.Redis.Close() }, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING},
	}
	for _, tt := range tests { // in order: the second breaks the server
		tt.breakIt()
		if got := check(""); got != tt.readiness {
			t.Errorf("%s: readiness %v, want %v", tt.name, got, tt.readiness)
		}
		if got := check(app.LivenessService); got != tt.liveness {
			t.Errorf("%s: liveness %v, want %v", tt.name, got, tt.liveness)
		}
	}
}
