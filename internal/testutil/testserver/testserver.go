// Package testserver starts a real Rallye server for end-to-end tests: the
// whole application on 127.0.0.1:0 against a fresh database and a private
// Redis prefix, with helpers to create companies and people and to mint
// their tokens.
package testserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/rallyehq/rallye/internal/app"
	"github.com/rallyehq/rallye/internal/auth"
	"github.com/rallyehq/rallye/internal/config"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

// Secret signs the test servers' tokens.
const Secret = "test-secret-test-secret-test-secret-0123"

// Server is a running Rallye.
type Server struct {
	URL string
	App *app.App
}

// Option adjusts the configuration of a test server.
type Option func(*config.Config)

// Start starts a server; it stops when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return start(t, testLog(), app.Options{}, opts)
}

// StartWith starts a server built with o (tracing, for instance).
func StartWith(t testing.TB, o app.Options, opts ...Option) *Server {
	t.Helper()
	return start(t, testLog(), o, opts)
}

// StartLogging starts a server that writes its logs (JSON lines) to w, for
// tests that check what the server logs. w must be safe for concurrent use.
func StartLogging(t testing.TB, w io.Writer, opts ...Option) *Server {
	t.Helper()
	return start(t, w, app.Options{}, opts)
}

// testLog is where test servers log: nowhere, or stderr with RALLYE_TEST_LOG.
func testLog() io.Writer {
	if os.Getenv("RALLYE_TEST_LOG") != "" {
		return os.Stderr
	}
	return io.Discard
}

func start(t testing.TB, logOut io.Writer, o app.Options, opts []Option) *Server {
	t.Helper()
	cfg := config.Config{
		DatabaseMaxConns:   10,
		RedisURL:           testutil.RedisURL(),
		RedisAddrs:         testutil.RedisClusterAddrs(),
		RedisCluster:       len(testutil.RedisClusterAddrs()) > 0,
		RedisPrefix:        testutil.NewRedisPrefix(),
		Addr:               "127.0.0.1:0",
		ShutdownTimeout:    5 * time.Second,
		LogLevel:           "info",
		JWTSecret:          Secret,
		JWTIssuer:          "rallye",
		JWTAudience:        "rallye",
		CredentialCacheTTL: 10 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = testutil.DatabaseURL(t)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(logOut, nil))
	ctx, cancel := context.WithCancel(context.Background())
	o.SkipMigrate = true
	a, err := app.New(ctx, cfg, log, o)
	if err != nil {
		cancel()
		t.Fatalf("start server: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		cancel()
		a.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("server stopped with: %v", err)
		}
		testutil.DeleteKeys(context.Background(), a.Redis, cfg.RedisPrefix)
		a.Close()
	})
	return &Server{URL: "http://" + ln.Addr().String(), App: a}
}

// Sharing makes a server a second instance of other: same database, same
// Redis key prefix (as instances behind one load balancer are).
func Sharing(other *Server) Option {
	return func(c *config.Config) {
		c.DatabaseURL = other.App.Config.DatabaseURL
		c.RedisPrefix = other.App.Config.RedisPrefix
	}
}

// Protocol names a wire protocol the server speaks.
type Protocol struct {
	Name   string
	Client *http.Client
	Opts   []connect.ClientOption
}

// Protocols returns Connect over HTTP/1.1, gRPC over cleartext HTTP/2, and
// gRPC-Web, so that one test loop exercises all three.
func Protocols() []Protocol {
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: &http.Transport{Protocols: &h2}}
	return []Protocol{
		{Name: "connect", Client: http.DefaultClient},
		{Name: "grpc", Client: h2c, Opts: []connect.ClientOption{connect.WithGRPC()}},
		{Name: "grpcweb", Client: http.DefaultClient, Opts: []connect.ClientOption{connect.WithGRPCWeb()}},
	}
}

// Bearer returns client options that send token.
func Bearer(token string) connect.ClientOption {
	return connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}))
}

// Token mints a token for u with the roles u holds.
func Token(t testing.TB, u org.User) string {
	t.Helper()
	tok, err := auth.MintToken([]byte(Secret), "rallye", "rallye", auth.TokenRequest{
		TenantID: u.TenantID, UserID: u.ID, Roles: u.Roles, TTL: time.Hour, Now: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

var tenantSeq atomic.Int64

// Company is a company created for a test, with its first admin.
type Company struct {
	Tenant     org.Tenant
	Admin      org.User
	AdminToken string
	// Operator acts for the company in domain calls made by the test itself.
	Operator rallye.Principal
}

// NewCompany creates a company with an admin.
func NewCompany(t testing.TB, svc *org.Service) Company {
	t.Helper()
	n := tenantSeq.Add(1)
	slug := fmt.Sprintf("co-%d-%d", os.Getpid()%100000, n)
	tenant, admin, err := svc.CreateTenant(context.Background(), org.NewTenant{
		Name: "Company " + slug, Slug: slug, TimeZone: "Europe/Paris", DefaultLocale: org.LocaleFR,
		Admin: org.UserInput{DisplayName: "Admin " + slug, Email: "admin@" + slug + ".test"},
	})
	if err != nil {
		t.Fatalf("create company: %v", err)
	}
	return Company{
		Tenant: tenant, Admin: admin, AdminToken: Token(t, admin),
		Operator: rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}},
	}
}

var userSeq atomic.Int64

// NewPerson creates a person of c with roles and teams and returns them with
// a token.
func NewPerson(t testing.TB, svc *org.Service, c Company, roles []rallye.Role, teams ...org.Team) (org.User, string) {
	t.Helper()
	n := userSeq.Add(1)
	in := org.UserInput{
		DisplayName: fmt.Sprintf("Person %d", n), Email: fmt.Sprintf("p%d@%s.test", n, c.Tenant.Slug),
		Locale: org.LocaleFR, ExternalID: fmt.Sprintf("crm-%d", n), Roles: roles,
	}
	for _, team := range teams {
		in.TeamIDs = append(in.TeamIDs, team.ID)
	}
	u, err := svc.CreateUser(context.Background(), c.Operator, org.CreateUserRequest{User: in})
	if err != nil {
		t.Fatalf("create person: %v", err)
	}
	return u, Token(t, u)
}
