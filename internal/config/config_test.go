package config

import (
	"strings"
	"testing"
)

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load()
	if err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.Addr != "127.0.0.1:8080" || !strings.HasPrefix(cfg.DatabaseURL, "postgres://") {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
	if cfg.MaxRequestBytes != DefaultMaxRequestBytes {
		t.Fatalf("RALLYE_MAX_REQUEST_BYTES defaults to %d, want DefaultMaxRequestBytes (%d)", cfg.MaxRequestBytes, DefaultMaxRequestBytes)
	}
	if err := cfg.RequireVerifier(); err == nil {
		t.Fatal("serve must refuse to start without a way to verify tokens")
	}
}

func TestValidateNamesTheVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"DatabaseURL", map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
		{"RedisURL", map[string]string{"REDIS_URL": "http://x"}, "REDIS_URL"},
		{"RedisAddrs", map[string]string{"RALLYE_REDIS_ADDRS": "a:1,nope"}, "RALLYE_REDIS_ADDRS"},
		{"ClusterAndSentinel", map[string]string{"RALLYE_REDIS_CLUSTER": "true", "RALLYE_REDIS_ADDRS": "a:1", "RALLYE_REDIS_MASTER_NAME": "m"}, "RALLYE_REDIS_CLUSTER"},
		{"ClusterSyntax", map[string]string{"RALLYE_REDIS_CLUSTER": "maybe"}, "RALLYE_REDIS_CLUSTER"},
		{"Addr", map[string]string{"RALLYE_ADDR": "8080"}, "RALLYE_ADDR"},
		{"ShortSecret", map[string]string{"RALLYE_JWT_SECRET": "short"}, "RALLYE_JWT_SECRET"},
		{"LogLevel", map[string]string{"RALLYE_LOG_LEVEL": "loud"}, "RALLYE_LOG_LEVEL"},
		{"JWKSURL", map[string]string{"RALLYE_JWKS_URL": "ftp://idp"}, "RALLYE_JWKS_URL"},
		{"console issuer not a URL", map[string]string{"RALLYE_CONSOLE_OIDC_ISSUER": "idp", "RALLYE_CONSOLE_OIDC_CLIENT_ID": "console"}, "RALLYE_CONSOLE_OIDC_ISSUER"},
		{"console issuer without client id", map[string]string{"RALLYE_CONSOLE_OIDC_ISSUER": "https://idp.example.com"}, "RALLYE_CONSOLE_OIDC_CLIENT_ID"},
		{"console client id without issuer", map[string]string{"RALLYE_CONSOLE_OIDC_CLIENT_ID": "console"}, "RALLYE_CONSOLE_OIDC_CLIENT_ID"},
		{"DurationSyntax", map[string]string{"RALLYE_SHUTDOWN_TIMEOUT": "soon"}, "RALLYE_SHUTDOWN_TIMEOUT"},
		{"MaxRequestBytesTooSmall", map[string]string{"RALLYE_MAX_REQUEST_BYTES": "1024"}, "RALLYE_MAX_REQUEST_BYTES"},
		{"MaxRequestBytesTooLarge", map[string]string{"RALLYE_MAX_REQUEST_BYTES": "4294967296"}, "RALLYE_MAX_REQUEST_BYTES"},
		{"MaxRequestBytesSyntax", map[string]string{"RALLYE_MAX_REQUEST_BYTES": "4MiB"}, "RALLYE_MAX_REQUEST_BYTES"},
		{"IntSyntax", map[string]string{"RALLYE_DATABASE_MAX_CONNS": "many"}, "RALLYE_DATABASE_MAX_CONNS"},
		{"NegativeWatchRefresh", map[string]string{"RALLYE_WATCH_REFRESH": "-1s"}, "RALLYE_WATCH_REFRESH"},
		{"NegativeFeedSweep", map[string]string{"RALLYE_FEED_SWEEP": "-1s"}, "RALLYE_FEED_SWEEP"},
		{"NegativeRepairDelay", map[string]string{"RALLYE_LEADERBOARD_REPAIR_DELAY": "-1s"}, "RALLYE_LEADERBOARD_REPAIR_DELAY"},
		{"NegativeEventFuture", map[string]string{"RALLYE_EVENT_MAX_FUTURE": "-1h"}, "RALLYE_EVENT_MAX_FUTURE"},
		{"FeedAttempts", map[string]string{"RALLYE_FEED_MAX_ATTEMPTS": "-2"}, "RALLYE_FEED_MAX_ATTEMPTS"},
		{"FeedRetryMaxBelowBase", map[string]string{"RALLYE_FEED_RETRY_BASE": "10s", "RALLYE_FEED_RETRY_MAX": "1s"}, "RALLYE_FEED_RETRY_MAX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := Load()
			if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
				t.Fatalf("error %v does not name %s", err, tt.wantVar)
			}
		})
	}
}
