package kpi

import (
	"math"
	"testing"
)

// TestCountedValuesSortAsPostgreSQLDoes checks the current period's
// merge against PostgreSQL's float8 order (NaN last) and percentile_cont's
// ranks, on a list whose expected ranks are written out.
func TestCountedValuesSortAsPostgreSQLDoes(t *testing.T) {
	nan := math.NaN()
	a := sortCounts(map[float64]int64{3: 1, nan: 1, 1: 2})
	b := sortCounts(map[float64]int64{2: 1, 3: 1})
	got := mergeCounts(a, b)
	want := []valueCount{{1, 2}, {2, 1}, {3, 2}, {nan, 1}}
	if len(got) != len(want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	for i := range want {
		same := got[i].v == want[i].v || (math.IsNaN(got[i].v) && math.IsNaN(want[i].v))
		if !same || got[i].n != want[i].n {
			t.Fatalf("merged %v, want %v", got, want)
		}
	}
	// 1 1 2 3 3 NaN: the median interpolates ranks 2 and 3 (2 and 3).
	cases := []struct {
		name string
		q    float64
		want float64
	}{
		{"Median", 0.5, 2.5},
		{"FirstQuartile", 0.25, 1.25},
		{"Minimum", 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if p := percentileCont(got, 6, c.q); p != c.want {
				t.Fatalf("percentile %v = %v, want %v", c.q, p, c.want)
			}
		})
	}
	if p := percentileCont(got, 6, 1); !math.IsNaN(p) {
		t.Fatalf("maximum = %v, want NaN (last, as PostgreSQL sorts it)", p)
	}
}
