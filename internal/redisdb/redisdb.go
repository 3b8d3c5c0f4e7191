// Package redisdb opens Rallye's Redis client and names its keys. Redis holds
// caches of PostgreSQL (live rankings) and carries pub/sub fan-out between
// server instances; losing it loses nothing.
package redisdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options selects the deployment: a URL for a single node, or addresses for a
// cluster (or Sentinel, with a master name). The client is a UniversalClient
// either way, so code does not change between them.
type Options struct {
	URL        string
	Addrs      []string
	MasterName string
	// Cluster selects Redis Cluster even when one address is given (a
	// managed cluster's configuration endpoint). Without Addrs, URL is then
	// read as a cluster URL: redis[s]://[user:password@]host:port[?addr=host:port...],
	// which carries the password and TLS a managed cluster needs.
	Cluster bool
	// Instrument, when set, is called on the client before it connects
	// (tracing hooks: on a cluster they attach to each node client as it is
	// created, so they must be in place before the first command).
	Instrument func(redis.UniversalClient) error
}

// Open connects and checks that Redis answers.
func Open(ctx context.Context, o Options) (redis.UniversalClient, error) {
	var client redis.UniversalClient
	switch {
	case len(o.Addrs) > 0:
		client = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: o.Addrs, MasterName: o.MasterName, IsClusterMode: o.Cluster})
	case o.Cluster:
		opts, err := redis.ParseClusterURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("parse redis cluster url: %w", err)
		}
		client = redis.NewClusterClient(opts)
	default:
		opts, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("parse redis url: %w", err)
		}
		client = redis.NewClient(opts)
	}
	if o.Instrument != nil {
		if err := o.Instrument(client); err != nil {
			_ = client.Close()
			return nil, err
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis does not answer: %w", err)
	}
	return client, nil
}

// Keyspace names keys under a prefix (one per deployment, or per test).
type Keyspace struct {
	Prefix string
}

// Key joins parts with ':' under the prefix.
func (k Keyspace) Key(parts ...string) string {
	return k.Prefix + strings.Join(parts, ":")
}

// Tagged names a key whose hash tag is tag, so that every key sharing a tag
// lands in the same Redis Cluster slot (one board, one slot).
func (k Keyspace) Tagged(tag string, parts ...string) string {
	return k.Prefix + "{" + tag + "}:" + strings.Join(parts, ":")
}

// IsUnavailable reports whether err says Redis was momentarily out of
// reach: a lost, refused or timed-out connection, an exhausted connection
// pool, or a node loading its data, failing over or without a quorum. The
// same call may succeed a moment later.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	if errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	for _, prefix := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}
