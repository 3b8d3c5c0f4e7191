package leaderboard

import (
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// RawCall is one Redis script invocation of the read or scoring path, for
// the load command to measure the raw ceiling of the same Redis operations
// through a plain client.
type RawCall struct {
	Script *redis.Script
	Keys   []string
	Args   []any
}

// RawReadCall is the script call behind Ranking: a page of size entries and
// the member's placement with around neighbours.
func (s *Service) RawReadCall(b Board, member uuid.UUID, size, around int) RawCall {
	k := keysOf(s.keys, b.ID)
	return RawCall{Script: readView, Keys: []string{k.ready, k.z},
		Args: []any{0, size, string(member[:]), around, tieRange, flag(b.SharedRanks)}}
}

// RawScoreCall is the script call Publish makes for one member on one board.
func (s *Service) RawScoreCall(b Board, member uuid.UUID, points, version int64, at time.Time) RawCall {
	c := s.setCall(b, []scoreRow{{Member: member, Points: points, ReachedAt: at, Members: 1, Version: version}},
		b.ChallengeID != uuid.Nil, s.now())
	return RawCall{Script: c.script, Keys: c.keys, Args: c.args}
}
