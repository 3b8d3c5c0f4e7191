package leaderboard

import (
	"sync"
	"time"
)

// ttlCache is a bounded map whose entries expire. Reads take a shared lock
// and touch nothing, which matters on the read path (a ranking looks up
// two dozen names); when full, it is emptied rather than evicting one entry
// at a time: its contents are cheap to read again.
type ttlCache[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]ttlEntry[V]
	max  int
	ttl  time.Duration
	now  func() time.Time
	zero V
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[K comparable, V any](max int, ttl time.Duration) *ttlCache[K, V] {
	return &ttlCache[K, V]{m: make(map[K]ttlEntry[V]), max: max, ttl: ttl, now: time.Now}
}

func (c *ttlCache[K, V]) Get(k K) (V, bool) { return c.getAt(k, c.now()) }

// getAt is Get at a given instant, for a caller looking up many keys with
// one clock read.
func (c *ttlCache[K, V]) getAt(k K, now time.Time) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || now.After(e.expires) {
		return c.zero, false
	}
	return e.v, true
}

func (c *ttlCache[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = ttlEntry[V]{v: v, expires: c.now().Add(c.ttl)}
}

func (c *ttlCache[K, V]) Remove(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}
