package redisdb_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/redisdb"
	"github.com/rallyehq/rallye/internal/testutil"
)

// Open picks the client the options describe. The cluster cases run when
// the tests are pointed at a cluster (`make test-cluster`).
func TestOpen(t *testing.T) {
	type want struct {
		cluster bool
		masters int32 // in cluster mode
		err     string
	}
	type openCase struct {
		name string
		opts redisdb.Options
		want want
	}
	tests := []openCase{
		{"SingleNode", redisdb.Options{URL: testutil.RedisURL()}, want{}},
		{"ClusterAgainstAPlainNode", redisdb.Options{URL: testutil.RedisURL(), Cluster: true}, want{err: "cluster support disabled"}},
		{"BadURL", redisdb.Options{URL: "http://127.0.0.1:6379"}, want{err: "parse redis url"}},
	}
	if addrs := testutil.RedisClusterAddrs(); len(addrs) > 0 {
		n := int32(len(addrs))
		tests = append(tests,
			openCase{"ClusterFromEveryAddress", redisdb.Options{Addrs: addrs}, want{cluster: true, masters: n}},
			openCase{"ClusterFromOneAddress", redisdb.Options{Addrs: addrs[:1], Cluster: true}, want{cluster: true, masters: n}},
			openCase{"ClusterURL", redisdb.Options{URL: "redis://" + addrs[0] + "?addr=" + addrs[len(addrs)-1], Cluster: true}, want{cluster: true, masters: n}},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			client, err := redisdb.Open(ctx, tt.opts)
			if tt.want.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.want.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			cc, isCluster := client.(*redis.ClusterClient)
			if isCluster != tt.want.cluster {
				t.Fatalf("client %T, want cluster=%v", client, tt.want.cluster)
			}
			if !isCluster {
				return
			}
			var masters atomic.Int32
			if err := cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error {
				masters.Add(1)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if masters.Load() != tt.want.masters {
				t.Fatalf("%d masters, want %d", masters.Load(), tt.want.masters)
			}
		})
	}
}
