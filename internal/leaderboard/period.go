package leaderboard

import (
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/period"
)

// Period is the span of a company's period board.
type Period string

// Periods. Weeks start on Monday; all periods are cut at midnight in the
// company's time zone.
const (
	PeriodWeek    Period = "week"
	PeriodMonth   Period = "month"
	PeriodQuarter Period = "quarter"
	PeriodAllTime Period = "all_time"
)

// Periods lists every period, shortest first.
var Periods = []Period{PeriodWeek, PeriodMonth, PeriodQuarter, PeriodAllTime}

// Valid reports whether p is a known period.
func (p Period) Valid() bool {
	switch p {
	case PeriodWeek, PeriodMonth, PeriodQuarter, PeriodAllTime:
		return true
	}
	return false
}

// allTimeStart is the start (and tie-break epoch) of every all-time board.
var allTimeStart = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

var periodKinds = map[Period]period.Kind{PeriodWeek: period.Week, PeriodMonth: period.Month, PeriodQuarter: period.Quarter}

// Bounds returns the period of kind p containing at, in loc: its start and
// its end (the instant of the next reset), zero for all time.
func (p Period) Bounds(at time.Time, loc *time.Location) (start, end time.Time) {
	k, ok := periodKinds[p]
	if !ok {
		return allTimeStart, time.Time{}
	}
	cut := period.Of(k, at, loc)
	return cut.Start, cut.End
}

// periodBoard describes the board of period p containing at. Its id is
// derived from the company and the period's start, so every instance names
// it alike without a look-up.
func periodBoard(tenantID uuid.UUID, p Period, at time.Time, loc *time.Location) Board {
	start, end := p.Bounds(at, loc)
	return Board{
		TenantID: tenantID,
		ID:       uuid.NewSHA1(tenantID, []byte("period:"+string(p)+":"+start.UTC().Format(time.RFC3339))),
		Kind:     KindIndividual,
		Period:   p,
		StartsAt: start,
		EndsAt:   end,
		Tick:     tickFor(start, end),
	}
}

// ChallengeBoardID returns the id of a challenge's board of the given kind.
func ChallengeBoardID(challengeID uuid.UUID, kind Kind) uuid.UUID {
	return uuid.NewSHA1(challengeID, []byte("board:"+string(kind)))
}
