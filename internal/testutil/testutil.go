// Package testutil gives tests real dependencies: a fresh PostgreSQL database
// cloned from a migrated template (one per test, in milliseconds), and a
// private Redis key prefix. A missing service fails the test loudly; nothing
// is mocked and nothing is skipped.
//
// Test databases are owned by an ordinary role (not a superuser), so the
// row-level security policies bind in tests exactly as in production.
package testutil

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver pgtestdb uses
	"github.com/peterldowns/pgtestdb"
	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/redisdb"
)

// Addresses of the services, overridable for unusual machines.
// RALLYE_TEST_REDIS_CLUSTER (host:port,...) runs the Redis tests against a
// Redis Cluster instead of the single node (`make test-cluster`).
var (
	postgresURL  = envOr("RALLYE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	redisURL     = envOr("RALLYE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
	clusterAddrs = splitAddrs(os.Getenv("RALLYE_TEST_REDIS_CLUSTER"))
)

func splitAddrs(s string) []string {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

const startHint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

type migrator struct{}

func (migrator) Hash() (string, error) { return postgres.SchemaHash() }

func (migrator) Migrate(ctx context.Context, _ *sql.DB, conf pgtestdb.Config) error {
	pool, err := pgxpool.New(ctx, conf.URL())
	if err != nil {
		return err
	}
	defer pool.Close()
	return postgres.Migrate(ctx, pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func baseConfig(t testing.TB) pgtestdb.Config {
	u, err := url.Parse(postgresURL)
	if err != nil {
		t.Fatalf("RALLYE_TEST_POSTGRES_URL: %v", err)
	}
	pw, _ := u.User.Password()
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	return pgtestdb.Config{
		DriverName: "pgx",
		Host:       u.Hostname(),
		Port:       port,
		User:       u.User.Username(),
		Password:   pw,
		Database:   strings.TrimPrefix(u.Path, "/"),
		Options:    u.RawQuery,
		// Connections left open by a failing test must not keep its
		// database alive.
		ForceTerminateConnections: true,
	}
}

// DatabaseURL returns the URL of a fresh, migrated database dropped when the
// test ends (kept when it fails, for inspection).
func DatabaseURL(t testing.TB) string {
	t.Helper()
	base := baseConfig(t)
	probe, err := sql.Open("pgx", base.URL())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = probe.PingContext(ctx)
		cancel()
		_ = probe.Close()
	}
	if err != nil {
		t.Fatalf("PostgreSQL at %s:%s does not answer (%v); %s", base.Host, base.Port, err, startHint)
	}
	return pgtestdb.Custom(t, base, migrator{}).URL()
}

// AdminURL returns the URL of database name on the test server, as the
// administrative role (for tests of database creation itself).
func AdminURL(name string) string {
	u, _ := url.Parse(postgresURL)
	u.Path = "/" + name
	return u.String()
}

// DB returns a pool on a fresh, migrated database.
func DB(t testing.TB) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), DatabaseURL(t), 10)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// RedisURL is the single-node Redis the tests use.
func RedisURL() string { return redisURL }

// RedisClusterAddrs are the addresses of the Redis Cluster the tests use
// instead of the single node, or nil.
func RedisClusterAddrs() []string { return clusterAddrs }

// RedisOptions selects the Redis of the tests: the cluster when
// RALLYE_TEST_REDIS_CLUSTER is set, the single node otherwise.
func RedisOptions() redisdb.Options {
	if len(clusterAddrs) > 0 {
		return redisdb.Options{Addrs: clusterAddrs, Cluster: true}
	}
	return redisdb.Options{URL: redisURL}
}

// Redis returns a client and a key prefix private to the test; the test's
// keys are deleted when it ends. In cluster mode the client is a
// *redis.ClusterClient and the cluster must report cluster_state:ok.
func Redis(t testing.TB) (redis.UniversalClient, redisdb.Keyspace) {
	t.Helper()
	return openRedis(t, RedisOptions())
}

// RedisNode is Redis for a test that talks to the single node whatever the
// mode (one that puts its own proxy in front of RedisURL, for instance).
func RedisNode(t testing.TB) (redis.UniversalClient, redisdb.Keyspace) {
	t.Helper()
	return openRedis(t, redisdb.Options{URL: redisURL})
}

func openRedis(t testing.TB, o redisdb.Options) (redis.UniversalClient, redisdb.Keyspace) {
	t.Helper()
	ctx := context.Background()
	client, err := redisdb.Open(ctx, o)
	if err != nil {
		if len(o.Addrs) > 0 {
			t.Fatalf("Redis Cluster at %v: %v; start it with: .ci/redis-cluster", clusterAddrs, err)
		}
		t.Fatalf("Redis at %s: %v; start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no", redisURL, err)
	}
	if len(o.Addrs) > 0 {
		info, err := client.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			_ = client.Close()
			t.Fatalf("Redis Cluster at %v is not healthy (%v): %s", clusterAddrs, err, info)
		}
	}
	keys := redisdb.Keyspace{Prefix: NewRedisPrefix()}
	t.Cleanup(func() {
		DeleteKeys(context.Background(), client, keys.Prefix)
		_ = client.Close()
	})
	return client, keys
}

// NewRedisPrefix returns a prefix no other test uses.
func NewRedisPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "test:" + hex.EncodeToString(b) + ":"
}

// DeleteKeys deletes every key under prefix, on every master of a cluster.
func DeleteKeys(ctx context.Context, client redis.UniversalClient, prefix string) {
	if cc, ok := client.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			deleteKeys(ctx, node, prefix)
			return nil
		})
		return
	}
	deleteKeys(ctx, client, prefix)
}

// deleteKeys deletes one node's keys under prefix. One DEL per key (in a
// pipeline): on a cluster node, a DEL of several keys must stay in one slot.
func deleteKeys(ctx context.Context, client redis.Cmdable, prefix string) {
	iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	pipe := client.Pipeline()
	for iter.Next(ctx) {
		pipe.Del(ctx, iter.Val())
		if pipe.Len() == 500 {
			_, _ = pipe.Exec(ctx)
		}
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx)
	}
}

// Context returns a context cancelled when the test ends.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
