package leaderboard

import (
	"context"
	"strconv"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/rallyehq/rallye/internal/redisdb"
)

// boardKeys are the Redis names of one board. They share the hash tag
// {b:<board id>}, so a board lives in one Redis Cluster slot and its scripts
// touch a single node.
type boardKeys struct {
	ready string // marker: the sorted set is complete (absent: rebuild)
	z     string // the ranking: member = participant id (16 bytes), score = composite
	v     string // hash member -> version of the row last written
	build string // rebuild lock, whose value is the builder's token
	bz    string // sorted set being rebuilt
	bv    string // versions being rebuilt
	live  string // sharded pub/sub channel announcing changes
}

// boardTag is a board's hash tag.
func boardTag(id uuid.UUID) string { return "b:" + id.String() }

func keysOf(ks redisdb.Keyspace, id uuid.UUID) boardKeys {
	tag := boardTag(id)
	return boardKeys{
		ready: ks.Tagged(tag, "ready"),
		z:     ks.Tagged(tag, "z"),
		v:     ks.Tagged(tag, "v"),
		build: ks.Tagged(tag, "build"),
		bz:    ks.Tagged(tag, "bz"),
		bv:    ks.Tagged(tag, "bv"),
		live:  ks.Tagged(tag, "live"),
	}
}

func (k boardKeys) all() []string { return []string{k.ready, k.z, k.v, k.build, k.bz, k.bv} }

// Numbers go to scripts as exact decimal integers: Lua would print a double
// with 14 significant digits and lose the tie-break.
func scoreArg(f float64) string { return strconv.FormatInt(int64(f), 10) }

// setScores writes absolute scores, keeping for each member the one with the
// highest version: into the live set when it is complete, and into the set
// being rebuilt when a rebuild runs, so that neither misses a change. On
// challenge boards it reports who passed whom. It announces changes on the
// board's channel, and every write to a board that is not (completely) in
// Redis: its watchers' next read rebuilds it. A board nobody had scored on
// (a new period's) is such a board; without the announcement its watchers
// would wait for their periodic re-read.
//
// KEYS: ready z v build bz bv live
// ARGV: overtake(0/1) shared(0/1) tieRange ttl_ms, then member score version...
// Returns {changed, events...}, an event being {member, rank, n, passed, rank, ...}.
var setScores = redis.NewScript(`
local live = redis.call('EXISTS', KEYS[1]) == 1
local build = redis.call('EXISTS', KEYS[4]) == 1
local overtake = ARGV[1] == '1'
local shared = ARGV[2] == '1'
local M = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local function int(x) return string.format('%d', x) end
local function above(p)
  return redis.call('ZCOUNT', KEYS[2], int((p + 1) * M), '+inf')
end
local changed = 0
local events = {}
for i = 5, #ARGV, 3 do
  local m, s, ver = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if build then
    local bv = redis.call('HGET', KEYS[6], m)
    if not bv or tonumber(bv) < ver then
      redis.call('ZADD', KEYS[5], s, m)
      redis.call('HSET', KEYS[6], m, ver)
    end
  end
  if live then
    local cv = redis.call('HGET', KEYS[3], m)
    if not cv or tonumber(cv) < ver then
      local old = false
      if overtake then old = redis.call('ZSCORE', KEYS[2], m) end
      redis.call('ZADD', KEYS[2], s, m)
      redis.call('HSET', KEYS[3], m, ver)
      changed = changed + 1
      local ns = tonumber(s)
      if old and tonumber(old) < ns then
        local os = tonumber(old)
        local passed, rank
        if shared then
          local op, np = math.floor(os / M), math.floor(ns / M)
          passed = {}
          if np > op then
            passed = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. int(np * M), int(op * M), 'LIMIT', 0, 11)
          end
          rank = above(np) + 1
        else
          passed = redis.call('ZREVRANGEBYSCORE', KEYS[2], '(' .. s, '(' .. old, 'LIMIT', 0, 10)
          rank = redis.call('ZREVRANK', KEYS[2], m) + 1
        end
        local ev = {m, rank, 0}
        local n = 0
        for j, pm in ipairs(passed) do
          if pm ~= m and n < 10 then
            n = n + 1
            local pr
            if shared then
              pr = above(math.floor(tonumber(redis.call('ZSCORE', KEYS[2], pm)) / M)) + 1
            else
              pr = rank + n
            end
            ev[#ev + 1] = pm
            ev[#ev + 1] = pr
          end
        end
        if n > 0 then
          ev[3] = n
          events[#events + 1] = ev
        end
      end
    end
  end
end
if changed > 0 and ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
if changed > 0 or not live then
  redis.call('SPUBLISH', KEYS[7], changed)
end
return {changed, events}
`)

// buildScores writes a chunk of a rebuild, if the caller still holds the
// rebuild lock (a flush or an expired lock aborts the rebuild).
//
// KEYS: build bz bv
// ARGV: token lock_ttl_ms, then member score version...
var buildScores = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local n = 0
for i = 3, #ARGV, 3 do
  local m, s, ver = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local bv = redis.call('HGET', KEYS[3], m)
  if not bv or tonumber(bv) < ver then
    redis.call('ZADD', KEYS[2], s, m)
    redis.call('HSET', KEYS[3], m, ver)
    n = n + 1
  end
end
return n
`)

// finishBuild swaps the rebuilt set in and marks the board complete, if the
// caller still holds the lock.
//
// KEYS: ready z v build bz bv live
// ARGV: token ttl_ms
var finishBuild = redis.NewScript(`
if redis.call('GET', KEYS[4]) ~= ARGV[1] then return 0 end
redis.call('UNLINK', KEYS[2], KEYS[3])
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('RENAME', KEYS[5], KEYS[2]) end
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('RENAME', KEYS[6], KEYS[3]) end
redis.call('SET', KEYS[1], '1')
redis.call('DEL', KEYS[4])
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
redis.call('SPUBLISH', KEYS[7], 0)
return 1
`)

// readView reads, in one round trip: the number of participants, a page of
// the ranking, and a participant's rank, score, neighbours and the score of
// the next better place. In shared-rank mode it adds, for the first entry of
// each range, how many participants have strictly more points, from which
// the competition ranks of the range follow. Returns {-1} when the board is
// not (completely) in Redis.
//
// KEYS: ready z
// ARGV: offset count member around tieRange shared(0/1)
// Returns {card, page, pageAbove, rank, score, aroundStart, around,
// aroundAbove, nextScore, nextAbove, myAbove}.
var readView = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local M = tonumber(ARGV[5])
local shared = ARGV[6] == '1'
local function int(x) return string.format('%d', x) end
local function above(score)
  if not shared then return -1 end
  local p = math.floor(tonumber(score) / M)
  return redis.call('ZCOUNT', KEYS[2], int((p + 1) * M), '+inf')
end
local card = redis.call('ZCARD', KEYS[2])
local off, cnt = tonumber(ARGV[1]), tonumber(ARGV[2])
local page = {}
if cnt > 0 then page = redis.call('ZREVRANGE', KEYS[2], off, off + cnt - 1, 'WITHSCORES') end
local pageAbove = -1
if #page > 0 then pageAbove = above(page[2]) end
local rank, score, aroundStart, around, aroundAbove, nextScore, nextAbove, myAbove = -1, '', 0, {}, -1, '', -1, -1
if ARGV[3] ~= '' then
  local r = redis.call('ZREVRANK', KEYS[2], ARGV[3])
  if r then
    rank = r
    score = redis.call('ZSCORE', KEYS[2], ARGV[3])
    myAbove = above(score)
    local k = tonumber(ARGV[4])
    if k > 0 then
      aroundStart = math.max(0, r - k)
      around = redis.call('ZREVRANGE', KEYS[2], aroundStart, r + k, 'WITHSCORES')
      if #around > 0 then aroundAbove = above(around[2]) end
    end
    if shared then
      local p = math.floor(tonumber(score) / M)
      local nx = redis.call('ZRANGEBYSCORE', KEYS[2], int((p + 1) * M), '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
      if #nx > 0 then
        nextScore = nx[2]
        nextAbove = above(nx[2])
      end
    elseif r > 0 then
      nextScore = redis.call('ZREVRANGE', KEYS[2], r - 1, r - 1, 'WITHSCORES')[2]
    end
  end
end
return {card, page, pageAbove, rank, score, aroundStart, around, aroundAbove, nextScore, nextAbove, myAbove}
`)

// scriptCall is one script invocation of a pipeline.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// evalAll runs calls in one pipeline and returns their results in order. A
// Redis restarted since the scripts were loaded answers NOSCRIPT: the
// scripts are loaded again and the pipeline replayed (scripts only ever
// write absolute, versioned values, so replaying is harmless).
func evalAll(ctx context.Context, rdb redis.UniversalClient, calls []scriptCall) ([]*redis.Cmd, error) {
	run := func() ([]*redis.Cmd, error) {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		loaded := map[*redis.Script]bool{}
		for _, c := range calls {
			if !loaded[c.script] {
				loaded[c.script] = true
				if lerr := c.script.Load(ctx, rdb).Err(); lerr != nil {
					return nil, lerr
				}
			}
		}
		cmds, err = run()
	}
	return cmds, err
}

// eval runs one script call, loading the script again if Redis forgot it.
func eval(ctx context.Context, rdb redis.UniversalClient, c scriptCall) (any, error) {
	res, err := c.script.EvalSha(ctx, rdb, c.keys, c.args...).Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		res, err = c.script.Eval(ctx, rdb, c.keys, c.args...).Result()
	}
	return res, err
}
