// Package config reads Rallye's settings from environment variables, with
// defaults that work against PostgreSQL and Redis on localhost, and checks
// them at start so that a bad value is reported with the variable's name.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config is every setting of the server. The env tags are the variable names;
// the README's configuration table lists them.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string.
	DatabaseURL string `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/rallye?sslmode=disable"`
	// DatabaseMaxConns caps the pool (0: pgx's default, max(4, CPUs)).
	DatabaseMaxConns int32 `env:"RALLYE_DATABASE_MAX_CONNS" envDefault:"20"`
	// RedisURL is a redis:// URL for a single node; RedisAddrs (comma-separated)
	// selects a cluster or, with RedisMasterName, Sentinel.
	RedisURL        string   `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	RedisAddrs      []string `env:"RALLYE_REDIS_ADDRS" envSeparator:","`
	RedisMasterName string   `env:"RALLYE_REDIS_MASTER_NAME"`
	// RedisCluster selects Redis Cluster with a single address (a managed
	// cluster's configuration endpoint, in RALLYE_REDIS_ADDRS or REDIS_URL).
	RedisCluster bool `env:"RALLYE_REDIS_CLUSTER"`
	// RedisPrefix starts every Redis key, so deployments can share a server.
	RedisPrefix string `env:"RALLYE_REDIS_PREFIX" envDefault:"rallye:"`

	// MigrateOnStart makes `serve` create the database and apply the
	// migrations before serving, under an advisory lock (instances starting
	// together take turns). Off when a deployment step runs `rallye migrate`
	// (the Helm chart's Job), so that the server's role needs no DDL rights.
	MigrateOnStart bool `env:"RALLYE_MIGRATE_ON_START" envDefault:"true"`

	// Addr is the listen address of the API (Connect, gRPC, gRPC-Web, /metrics).
	Addr string `env:"RALLYE_ADDR" envDefault:"127.0.0.1:8080"`
	// DebugAddr, when set, serves Go's profiler (net/http/pprof) on a
	// separate listener, for operators; keep it on a private interface.
	DebugAddr string `env:"RALLYE_DEBUG_ADDR"`
	// ShutdownTimeout bounds how long in-flight requests may run after SIGTERM.
	ShutdownTimeout time.Duration `env:"RALLYE_SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// TraceTrustRemote continues the trace of a caller's traceparent header
	// instead of starting a new trace linked to it (tracing itself is set
	// by the standard OTEL_* variables).
	TraceTrustRemote bool `env:"RALLYE_TRACE_TRUST_REMOTE"`
	// MaxRequestBytes bounds the size of one request message after
	// decompression (0: DefaultMaxRequestBytes); a larger one is refused with
	// resource_exhausted before it is held in memory.
	MaxRequestBytes int64 `env:"RALLYE_MAX_REQUEST_BYTES" envDefault:"4194304"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"RALLYE_LOG_LEVEL" envDefault:"info"`

	// JWTSecret verifies HS256 tokens and signs development tokens; at least
	// 32 bytes. JWKSURL verifies RS256/ES256 tokens of an identity provider.
	// At least one of the two is required by `serve`.
	JWTSecret   string `env:"RALLYE_JWT_SECRET"`
	JWKSURL     string `env:"RALLYE_JWKS_URL"`
	JWTIssuer   string `env:"RALLYE_JWT_ISSUER" envDefault:"rallye"`
	JWTAudience string `env:"RALLYE_JWT_AUDIENCE" envDefault:"rallye"`
	// ConsoleOIDCIssuer and ConsoleOIDCClientID sign people in to the web
	// console through the company's identity provider (OpenID Connect,
	// authorization code with PKCE, in the browser); the API verifies the
	// tokens it issues through RALLYE_JWKS_URL. Both or neither.
	ConsoleOIDCIssuer   string `env:"RALLYE_CONSOLE_OIDC_ISSUER"`
	ConsoleOIDCClientID string `env:"RALLYE_CONSOLE_OIDC_CLIENT_ID"`
	// CredentialCacheTTL is how long a verified user or API key status (active,
	// roles, revoked) is reused before it is read again.
	CredentialCacheTTL time.Duration `env:"RALLYE_CREDENTIAL_CACHE_TTL" envDefault:"10s"`

	// ChallengeFinalizeCheck is how often an ended challenge waiting for its
	// sources' data checks again whether it can become final.
	ChallengeFinalizeCheck time.Duration `env:"RALLYE_CHALLENGE_FINALIZE_CHECK" envDefault:"1m"`
	// WatchRefresh, FeedSweep and LeaderboardRepairDelay are safety nets
	// behind the wake-ups: how often a live ranking stream re-reads its
	// board without an announcement, how often the change feed drains every
	// company without a notification, and how long after a scoring
	// transaction its repair job copies the board to Redis again (0: 10 s,
	// 30 s, 1 s).
	WatchRefresh           time.Duration `env:"RALLYE_WATCH_REFRESH" envDefault:"10s"`
	FeedSweep              time.Duration `env:"RALLYE_FEED_SWEEP" envDefault:"30s"`
	LeaderboardRepairDelay time.Duration `env:"RALLYE_LEADERBOARD_REPAIR_DELAY" envDefault:"1s"`

	// EventMaxFuture is how far ahead of the server's clock an event's
	// occurred_at may be (0: event.DefaultMaxFuture).
	EventMaxFuture time.Duration `env:"RALLYE_EVENT_MAX_FUTURE" envDefault:"24h"`
	// IngestGroupTransactions bounds the group transactions of one company
	// that run at once on a server: small ingestion calls arriving while
	// they run share the next one (group commit). 0: the default.
	IngestGroupTransactions int `env:"RALLYE_INGEST_GROUP_TRANSACTIONS" envDefault:"2"`
	// IngestMaxLag is the backpressure bound: a company's events are
	// refused (resource_exhausted, with a retry hint) while the oldest
	// change one of its feed consumers has not applied is older than this
	// (0: never refused).
	IngestMaxLag time.Duration `env:"RALLYE_INGEST_MAX_LAG" envDefault:"5s"`
	// FeedDatabaseMaxConns gives the change feed's consumers a connection
	// pool of their own, so that ingestion and reads filling the main pool
	// cannot starve them (0: they share the main pool).
	FeedDatabaseMaxConns int32 `env:"RALLYE_FEED_DATABASE_MAX_CONNS" envDefault:"5"`
	// FeedMaxAttempts is how many times the change feed tries a change a
	// consumer fails to apply before moving it to the dead letters; between
	// attempts it waits FeedRetryBase, doubling up to FeedRetryMax, jittered
	// (0: the feed's defaults).
	FeedMaxAttempts int           `env:"RALLYE_FEED_MAX_ATTEMPTS" envDefault:"8"`
	FeedRetryBase   time.Duration `env:"RALLYE_FEED_RETRY_BASE" envDefault:"1s"`
	FeedRetryMax    time.Duration `env:"RALLYE_FEED_RETRY_MAX" envDefault:"5m"`
}

// DefaultMaxRequestBytes is the default request size limit, 4 MiB: a batch
// of 1,000 events with every field at its maximum length and five attributes
// of maximum size takes 3.7 MiB in JSON and 3.2 MiB in binary (computed by
// api's TestDefaultRequestLimitFitsAFullBatch); everyday batches are a third
// of that.
const DefaultMaxRequestBytes = 4 << 20

// Bounds of RALLYE_MAX_REQUEST_BYTES: below 64 KiB ordinary calls would not
// fit, above 1 GiB one request could take the server's memory.
const (
	minMaxRequestBytes = 64 << 10
	maxMaxRequestBytes = 1 << 30
)

// Load reads the environment and validates the result.
func Load() (Config, error) {
	cfg, err := env.ParseAs[Config]()
	if err != nil {
		return Config{}, nameVariables(err)
	}
	return cfg, cfg.Validate()
}

// nameVariables rewrites the library's parse errors, which name struct
// fields, so that they name the environment variable the operator set.
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := reflect.TypeFor[Config]().FieldByName(pe.Name); ok {
				out = append(out, fmt.Errorf("%s: cannot read as %s: %w", f.Tag.Get("env"), pe.Type, pe.Err))
				continue
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Validate checks every setting and names the variable of the first bad one.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		bad("DATABASE_URL", "want postgres://user@host:port/database, got %q", c.DatabaseURL)
	}
	if c.DatabaseMaxConns < 0 {
		bad("RALLYE_DATABASE_MAX_CONNS", "must not be negative")
	}
	if len(c.RedisAddrs) == 0 {
		if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			bad("REDIS_URL", "want redis://host:port/db, got %q", c.RedisURL)
		}
	}
	if c.RedisCluster && c.RedisMasterName != "" {
		bad("RALLYE_REDIS_CLUSTER", "Redis Cluster and Sentinel (RALLYE_REDIS_MASTER_NAME) exclude each other")
	}
	for _, a := range c.RedisAddrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("RALLYE_REDIS_ADDRS", "want host:port[,host:port...], got %q", a)
		}
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("RALLYE_ADDR", "want host:port, got %q", c.Addr)
	}
	if c.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			bad("RALLYE_DEBUG_ADDR", "want host:port, got %q", c.DebugAddr)
		}
	}
	if c.ShutdownTimeout <= 0 {
		bad("RALLYE_SHUTDOWN_TIMEOUT", "must be positive")
	}
	if c.MaxRequestBytes != 0 && (c.MaxRequestBytes < minMaxRequestBytes || c.MaxRequestBytes > maxMaxRequestBytes) {
		bad("RALLYE_MAX_REQUEST_BYTES", "want a size in bytes between %d (64 KiB) and %d (1 GiB), got %d",
			minMaxRequestBytes, maxMaxRequestBytes, c.MaxRequestBytes)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("RALLYE_LOG_LEVEL", "want debug, info, warn or error, got %q", c.LogLevel)
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		bad("RALLYE_JWT_SECRET", "must be at least 32 bytes long")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			bad("RALLYE_JWKS_URL", "want an http(s) URL, got %q", c.JWKSURL)
		}
	}
	if c.ConsoleOIDCIssuer != "" {
		if u, err := url.Parse(c.ConsoleOIDCIssuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("RALLYE_CONSOLE_OIDC_ISSUER", "want an http(s) URL, got %q", c.ConsoleOIDCIssuer)
		}
	}
	if (c.ConsoleOIDCIssuer == "") != (c.ConsoleOIDCClientID == "") {
		bad("RALLYE_CONSOLE_OIDC_CLIENT_ID", "RALLYE_CONSOLE_OIDC_ISSUER and RALLYE_CONSOLE_OIDC_CLIENT_ID go together")
	}
	if c.CredentialCacheTTL < 0 {
		bad("RALLYE_CREDENTIAL_CACHE_TTL", "must not be negative")
	}
	if c.ChallengeFinalizeCheck < 0 {
		bad("RALLYE_CHALLENGE_FINALIZE_CHECK", "must not be negative")
	}
	if c.IngestMaxLag < 0 {
		bad("RALLYE_INGEST_MAX_LAG", "must not be negative")
	}
	if c.FeedDatabaseMaxConns != 0 && (c.FeedDatabaseMaxConns < 3 || c.FeedDatabaseMaxConns > 100) {
		bad("RALLYE_FEED_DATABASE_MAX_CONNS", "want 0 (the main pool) or 3 to 100 (a listener, workers and the sweep), got %d", c.FeedDatabaseMaxConns)
	}
	if c.IngestGroupTransactions < 0 || c.IngestGroupTransactions > 64 {
		bad("RALLYE_INGEST_GROUP_TRANSACTIONS", "want between 1 and 64 (0: the default, 2), got %d", c.IngestGroupTransactions)
	}
	if c.EventMaxFuture < 0 || c.EventMaxFuture > 366*24*time.Hour {
		bad("RALLYE_EVENT_MAX_FUTURE", "must be between 0 and 8784h (a year), got %s", c.EventMaxFuture)
	}
	if c.FeedMaxAttempts < 0 || c.FeedMaxAttempts > 1000 {
		bad("RALLYE_FEED_MAX_ATTEMPTS", "must be between 1 and 1000 (0: the default), got %d", c.FeedMaxAttempts)
	}
	if c.FeedRetryBase < 0 {
		bad("RALLYE_FEED_RETRY_BASE", "must not be negative")
	}
	if c.FeedRetryMax < 0 || (c.FeedRetryMax > 0 && c.FeedRetryMax < c.FeedRetryBase) {
		bad("RALLYE_FEED_RETRY_MAX", "must not be below RALLYE_FEED_RETRY_BASE (%s), got %s", c.FeedRetryBase, c.FeedRetryMax)
	}
	if c.WatchRefresh < 0 {
		bad("RALLYE_WATCH_REFRESH", "must not be negative")
	}
	if c.FeedSweep < 0 {
		bad("RALLYE_FEED_SWEEP", "must not be negative")
	}
	if c.LeaderboardRepairDelay < 0 {
		bad("RALLYE_LEADERBOARD_REPAIR_DELAY", "must not be negative")
	}
	return errors.Join(errs...)
}

// RequireVerifier checks that tokens can be verified, as `serve` needs.
func (c Config) RequireVerifier() error {
	if c.JWTSecret == "" && c.JWKSURL == "" {
		return errors.New("RALLYE_JWT_SECRET or RALLYE_JWKS_URL: set at least one so that tokens can be verified")
	}
	return nil
}
