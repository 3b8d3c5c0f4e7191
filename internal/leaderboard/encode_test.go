package leaderboard_test

import (
	"math"
	"testing"
	"time"

	"github.com/rallyehq/rallye/internal/leaderboard"
)

func TestScoreEncoding(t *testing.T) {
	t.Parallel()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sec := time.Second
	tests := []struct {
		name           string
		value          int64
		reached        time.Time
		wantValue      int64
		wantReachedSec int64 // seconds after epoch; -1 for never
	}{
		{"Zero", 0, epoch, 0, 0},
		{"NeverScored", 0, time.Time{}, 0, -1},
		{"Positive", 1234, epoch.Add(90 * time.Second), 1234, 90},
		{"Negative", -42, epoch.Add(5 * time.Second), -42, 5},
		{"BeforeEpochClamps", 7, epoch.Add(-time.Hour), 7, 0},
		{"SubSecondTruncates", 7, epoch.Add(1500 * time.Millisecond), 7, 1},
		{"LargestValue", leaderboard.MaxValue, epoch.Add(time.Second), leaderboard.MaxValue, 1},
		{"SmallestValue", -leaderboard.MaxValue, epoch.Add(time.Second), -leaderboard.MaxValue, 1},
		{"BeyondClamps", leaderboard.MaxValue + 10, epoch, leaderboard.MaxValue, 0},
		{"LatestTick", 3, epoch.Add(time.Duration(leaderboard.TieRange-2) * sec), 3, leaderboard.TieRange - 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := leaderboard.Composite(tt.value, tt.reached, epoch, sec)
			if math.Abs(s) > 1<<53 || s != math.Trunc(s) {
				t.Fatalf("score %v is not an exact integer within 2^53", s)
			}
			v, r := leaderboard.Decompose(s, epoch, sec)
			if v != tt.wantValue {
				t.Fatalf("value = %d, want %d", v, tt.wantValue)
			}
			switch {
			case tt.wantReachedSec < 0 && !r.IsZero():
				t.Fatalf("reached = %v, want never", r)
			case tt.wantReachedSec >= 0 && !r.Equal(epoch.Add(time.Duration(tt.wantReachedSec)*sec)):
				t.Fatalf("reached = %v, want +%ds", r, tt.wantReachedSec)
			}
		})
	}
}

func TestScoreOrder(t *testing.T) {
	t.Parallel()
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := func(v int64, after time.Duration) float64 {
		return leaderboard.Composite(v, epoch.Add(after), epoch, time.Second)
	}
	never := func(v int64) float64 { return leaderboard.Composite(v, time.Time{}, epoch, time.Second) }
	ordered := []struct {
		name          string
		higher, lower float64
	}{
		{"MorePointsFirst", c(11, time.Hour), c(10, time.Second)},
		{"EarlierFirstOnEqualPoints", c(10, time.Second), c(10, 2*time.Second)},
		{"ScorerBeforeNeverScored", c(0, time.Duration(leaderboard.TieRange)*time.Second), never(0)},
		{"NeverScoredZeroBeforeNegative", never(0), c(-1, 0)},
		{"LargestBeatsNextLargest", c(leaderboard.MaxValue, time.Hour), c(leaderboard.MaxValue-1, 0)},
	}
	for _, tt := range ordered {
		t.Run(tt.name, func(t *testing.T) {
			if !(tt.higher > tt.lower) {
				t.Fatalf("%v should rank above %v", tt.higher, tt.lower)
			}
		})
	}
}

func TestPeriodBounds(t *testing.T) {
	t.Parallel()
	paris, _ := time.LoadLocation("Europe/Paris")
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		name       string
		period     leaderboard.Period
		at         time.Time
		start, end time.Time
	}{
		{"WeekStartsMonday", leaderboard.PeriodWeek, at("2026-11-25 10:00"), at("2026-11-23 00:00"), at("2026-11-30 00:00")},
		{"SundayNightIsSameWeek", leaderboard.PeriodWeek, at("2026-11-29 23:59"), at("2026-11-23 00:00"), at("2026-11-30 00:00")},
		{"MondayMidnightIsNewWeek", leaderboard.PeriodWeek, at("2026-11-30 00:00"), at("2026-11-30 00:00"), at("2026-12-07 00:00")},
		{"WeekAcrossDSTEnd", leaderboard.PeriodWeek, at("2026-10-25 12:00"), at("2026-10-19 00:00"), at("2026-10-26 00:00")},
		{"Month", leaderboard.PeriodMonth, at("2026-12-31 23:30"), at("2026-12-01 00:00"), at("2027-01-01 00:00")},
		{"Quarter", leaderboard.PeriodQuarter, at("2026-11-25 10:00"), at("2026-10-01 00:00"), at("2027-01-01 00:00")},
		{"QuarterFirstDay", leaderboard.PeriodQuarter, at("2026-04-01 00:00"), at("2026-04-01 00:00"), at("2026-07-01 00:00")},
		// 23:30 UTC on 31 December is already January in Paris.
		{"TimeZoneDecides", leaderboard.PeriodMonth, time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC), at("2027-01-01 00:00"), at("2027-02-01 00:00")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.period.Bounds(tt.at, paris)
			if !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Fatalf("bounds = [%v, %v), want [%v, %v)", start, end, tt.start, tt.end)
			}
		})
	}
	start, end := leaderboard.PeriodAllTime.Bounds(at("2026-11-25 10:00"), paris)
	if !end.IsZero() || start.After(at("2021-01-01 00:00")) {
		t.Fatalf("all time = [%v, %v)", start, end)
	}
}
