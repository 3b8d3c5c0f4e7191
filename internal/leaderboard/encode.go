package leaderboard

import (
	"math"
	"time"
)

// A live ranking is a Redis sorted set whose score packs two numbers into one
// float64 without losing precision:
//
//	score = value·2^26 + tie
//
// value is the board's metric (points, or hundredths of a point for team
// averages), clamped to ±MaxValue. tie is 2^26−1−tick for a participant who
// scored, where tick counts the board's tie-break resolution (Board.Tick: one
// second, or one minute for all-time boards) since the board's start, and 0
// for a participant enrolled who never scored. Equal values are then ordered
// by who reached them first, and never-scored participants come after
// everyone with the same value. A float64 holds every integer up to 2^53
// exactly, and |value·2^26 + tie| < 2^27·2^26 = 2^53, so the packing is exact;
// participants with the same value and the same tick are ordered by their id
// (descending bytes, as Redis orders equal scores in ZREVRANGE).
const (
	tieBits  = 26
	tieRange = 1 << tieBits // ticks a board can distinguish
	// MaxValue bounds the metric a live ranking can hold: 134,217,727 points
	// (or 1,342,177.27 average points). Larger totals are kept exactly in
	// PostgreSQL but rank as MaxValue.
	MaxValue = 1<<(53-tieBits) - 1
)

// tickSteps are the tie-break resolutions, finest first: a board uses the
// finest one whose range of 2^26−1 ticks covers its span (one second covers
// 776 days; one minute, 127 years).
var tickSteps = []time.Duration{time.Second, time.Minute, time.Hour}

// tickFor picks the tie-break resolution of a board spanning [start, end);
// end zero means open-ended (all-time boards, 100 years).
func tickFor(start, end time.Time) time.Duration {
	span := 100 * 365 * 24 * time.Hour
	if !end.IsZero() && end.After(start) {
		span = end.Sub(start)
	}
	for _, step := range tickSteps {
		if int64(span/step) < tieRange-1 {
			return step
		}
	}
	return tickSteps[len(tickSteps)-1]
}

// composite packs a metric value and the instant it was reached (zero: never
// scored) into a sorted-set score.
func composite(value int64, reached time.Time, epoch time.Time, tick time.Duration) float64 {
	value = max(-MaxValue, min(MaxValue, value))
	var tie int64
	if !reached.IsZero() {
		t := int64(0)
		if reached.After(epoch) {
			t = int64(reached.Sub(epoch) / tick)
		}
		t = min(t, tieRange-2) // tie >= 1: scorers rank above the never-scored
		tie = tieRange - 1 - t
	}
	return float64(value*tieRange + tie)
}

// decompose is the inverse of composite: the metric value and the instant
// reached, to the board's tick (zero when never scored).
func decompose(score float64, epoch time.Time, tick time.Duration) (int64, time.Time) {
	value := int64(math.Floor(score / tieRange))
	tie := int64(score) - value*tieRange
	if tie == 0 {
		return value, time.Time{}
	}
	return value, epoch.Add(time.Duration(tieRange-1-tie) * tick)
}

// average returns a team's average per member in hundredths of a point,
// rounded down.
func average(points int64, members int) int64 {
	if members <= 0 {
		return 0
	}
	return floorDiv(points*100, int64(members))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
