// Package period cuts time into the calendar periods Rallye reads KPIs and
// standing leaderboards over (day, week, month, quarter, year), in a
// company's time zone: a day starts at local midnight even across a
// daylight-saving change, weeks start on Monday.
package period

import (
	"fmt"
	"time"
)

// Kind is a kind of calendar period.
type Kind string

// Period kinds.
const (
	Day     Kind = "day"
	Week    Kind = "week"
	Month   Kind = "month"
	Quarter Kind = "quarter"
	Year    Kind = "year"
)

// Kinds lists the kinds, shortest first.
var Kinds = []Kind{Day, Week, Month, Quarter, Year}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case Day, Week, Month, Quarter, Year:
		return true
	}
	return false
}

// Period is one period: [Start, End) in a time zone.
type Period struct {
	Kind  Kind
	Start time.Time
	End   time.Time
}

// Of returns the period of kind k containing t, in loc.
func Of(k Kind, t time.Time, loc *time.Location) Period {
	t = t.In(loc)
	y, m, d := t.Date()
	var start, end time.Time
	switch k {
	case Day:
		start = time.Date(y, m, d, 0, 0, 0, 0, loc)
		end = time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case Week:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, loc)
		end = time.Date(y, m, d-back+7, 0, 0, 0, 0, loc)
	case Month:
		start = time.Date(y, m, 1, 0, 0, 0, 0, loc)
		end = time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	case Quarter:
		q := (int(m) - 1) / 3
		start = time.Date(y, time.Month(3*q+1), 1, 0, 0, 0, 0, loc)
		end = time.Date(y, time.Month(3*q+4), 1, 0, 0, 0, 0, loc)
	case Year:
		start = time.Date(y, 1, 1, 0, 0, 0, 0, loc)
		end = time.Date(y+1, 1, 1, 0, 0, 0, 0, loc)
	default:
		panic(fmt.Sprintf("period: unknown kind %q", k))
	}
	return Period{Kind: k, Start: start, End: end}
}

// Contains reports whether t falls in p.
func (p Period) Contains(t time.Time) bool { return !t.Before(p.Start) && t.Before(p.End) }

// Next returns the period after p.
func (p Period) Next() Period { return Of(p.Kind, p.End, p.Start.Location()) }

// Previous returns the period before p.
func (p Period) Previous() Period {
	return Of(p.Kind, p.Start.Add(-time.Nanosecond), p.Start.Location())
}

// Elapsed returns the share of p elapsed at t, between 0 and 1.
func (p Period) Elapsed(t time.Time) float64 {
	switch {
	case !t.After(p.Start):
		return 0
	case !t.Before(p.End):
		return 1
	}
	return float64(t.Sub(p.Start)) / float64(p.End.Sub(p.Start))
}

// Key names the period, such as "2026-W09", "2026-03", "2026-Q1",
// "2026-03-02" or "2026": stable, sortable within a kind, readable.
func (p Period) Key() string {
	s := p.Start
	switch p.Kind {
	case Day:
		return s.Format("2006-01-02")
	case Week:
		y, w := s.ISOWeek()
		return fmt.Sprintf("%d-W%02d", y, w)
	case Month:
		return s.Format("2006-01")
	case Quarter:
		return fmt.Sprintf("%d-Q%d", s.Year(), (int(s.Month())-1)/3+1)
	default:
		return s.Format("2006")
	}
}

// Date returns the local calendar date of t in loc, as a midnight UTC time:
// a stable key for daily roll-ups (PostgreSQL date).
func Date(t time.Time, loc *time.Location) time.Time {
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
