package period

import (
	"testing"
	"time"
)

func TestPeriods(t *testing.T) {
	paris, _ := time.LoadLocation("Europe/Paris")
	tests := []struct {
		name       string
		kind       Kind
		at         time.Time
		start, end time.Time
		key        string
	}{
		{"DayBeforeMidnight", Day, time.Date(2026, 3, 2, 22, 59, 59, 0, time.UTC),
			time.Date(2026, 3, 2, 0, 0, 0, 0, paris), time.Date(2026, 3, 3, 0, 0, 0, 0, paris), "2026-03-02"},
		{"DayAtMidnightParis", Day, time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC),
			time.Date(2026, 3, 3, 0, 0, 0, 0, paris), time.Date(2026, 3, 4, 0, 0, 0, 0, paris), "2026-03-03"},
		{"SpringForwardDayIs23Hours", Day, time.Date(2026, 3, 29, 12, 0, 0, 0, paris),
			time.Date(2026, 3, 29, 0, 0, 0, 0, paris), time.Date(2026, 3, 30, 0, 0, 0, 0, paris), "2026-03-29"},
		{"WeekStartsMonday", Week, time.Date(2026, 3, 1, 12, 0, 0, 0, paris), // a Sunday
			time.Date(2026, 2, 23, 0, 0, 0, 0, paris), time.Date(2026, 3, 2, 0, 0, 0, 0, paris), "2026-W09"},
		{"QuarterAcrossDST", Quarter, time.Date(2026, 3, 31, 23, 30, 0, 0, paris),
			time.Date(2026, 1, 1, 0, 0, 0, 0, paris), time.Date(2026, 4, 1, 0, 0, 0, 0, paris), "2026-Q1"},
		{"Month", Month, time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC), // 00:00 on Jan 1 in Paris
			time.Date(2027, 1, 1, 0, 0, 0, 0, paris), time.Date(2027, 2, 1, 0, 0, 0, 0, paris), "2027-01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Of(tt.kind, tt.at, paris)
			if !p.Start.Equal(tt.start) || !p.End.Equal(tt.end) || p.Key() != tt.key {
				t.Fatalf("got [%s, %s) %s, want [%s, %s) %s", p.Start, p.End, p.Key(), tt.start, tt.end, tt.key)
			}
			if !p.Contains(tt.at) || p.Contains(p.End) || !p.Contains(p.Start) {
				t.Fatal("bounds are not [start, end)")
			}
			if n := p.Next(); !n.Start.Equal(p.End) {
				t.Fatalf("next starts %s", n.Start)
			}
			if pr := p.Previous(); !pr.End.Equal(p.Start) {
				t.Fatalf("previous ends %s", pr.End)
			}
		})
	}
	spring := Of(Day, time.Date(2026, 3, 29, 12, 0, 0, 0, paris), paris)
	if d := spring.End.Sub(spring.Start); d != 23*time.Hour {
		t.Fatalf("the spring-forward day lasts %s", d)
	}
	if e := spring.Elapsed(spring.Start.Add(23 * time.Hour / 2)); e != 0.5 {
		t.Fatalf("elapsed = %v", e)
	}
}
