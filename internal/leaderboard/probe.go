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

// RawScoreCall is the script call Publish makes for a batch of members on
// one board; member i gets points[i] and version firstVersion+i.
func (s *Service) RawScoreCall(b Board, members []uuid.UUID, points []int64, firstVersion int64, at time.Time) RawCall {
	rows := make([]scoreRow, len(members))
	for i, m := range members {
		rows[i] = scoreRow{Member: m, Points: points[i], ReachedAt: at, Members: 1, Version: firstVersion + int64(i)}
	}
	c := s.setCall(b, rows, b.ChallengeID != uuid.Nil, s.now())
	return RawCall{Script: c.script, Keys: c.keys, Args: c.args}
}
