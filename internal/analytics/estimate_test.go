package analytics_test

import (
	"math/rand/v2"
	"testing"

	"github.com/rallyehq/rallye/internal/analytics"
)

// groups generates n participants and n controls whose KPI drifts by trend
// for everyone between the periods, plus effect for the participants, with
// person-level noise; the two groups start from different levels (the
// comparison removes that).
func groups(rng *rand.Rand, n int, trend, effect float64) (treated, control []analytics.Sample) {
	for range n {
		base := 30 + rng.NormFloat64()*8
		treated = append(treated, analytics.Sample{Before: base, During: base + trend + effect + rng.NormFloat64()*5})
		base = 25 + rng.NormFloat64()*8
		control = append(control, analytics.Sample{Before: base, During: base + trend + rng.NormFloat64()*5})
	}
	return treated, control
}

// TestDiffInDiffRecoversAPlantedEffect: a planted effect of +4 points lies
// in the interval (both methods) and the interval excludes 0; with no
// effect the interval covers 0. Seeds fixed: the coverage over 200 seeds
// is BenchmarkImpactCoverage's.
func TestDiffInDiffRecoversAPlantedEffect(t *testing.T) {
	t.Parallel()
	for _, m := range []analytics.Method{analytics.MethodBootstrap, analytics.MethodNormal} {
		rng := rand.New(rand.NewPCG(11, 12))
		tr, co := groups(rng, 300, 2, 4)
		e := analytics.DiffInDiff(tr, co, m, 42, 2000, analytics.MinImpactSample)
		if !e.Enough || e.Low > 4 || e.High < 4 || e.Low <= 0 {
			t.Fatalf("%s: planted +4, got %.2f [%.2f, %.2f]", m, e.Effect, e.Low, e.High)
		}
		if e.Treated != 300 || e.Control != 300 || e.TreatedBefore < 25 || e.ControlBefore > 30 {
			t.Fatalf("%s: sizes and means %+v", m, e)
		}
		tr, co = groups(rng, 300, 2, 0)
		e = analytics.DiffInDiff(tr, co, m, 42, 2000, analytics.MinImpactSample)
		if e.Low > 0 || e.High < 0 {
			t.Fatalf("%s: no effect, got %.2f [%.2f, %.2f]", m, e.Effect, e.Low, e.High)
		}
	}
}

// TestDiffInDiffIsReproducible: the same seed gives the same interval.
func TestDiffInDiffIsReproducible(t *testing.T) {
	t.Parallel()
	tr, co := groups(rand.New(rand.NewPCG(3, 4)), 50, 1, 1)
	a := analytics.DiffInDiff(tr, co, analytics.MethodBootstrap, 7, 500, 10)
	b := analytics.DiffInDiff(tr, co, analytics.MethodBootstrap, 7, 500, 10)
	c := analytics.DiffInDiff(tr, co, analytics.MethodBootstrap, 8, 500, 10)
	if a != b || a.Seed != 7 || a.Resamples != 500 {
		t.Fatalf("%+v vs %+v", a, b)
	}
	if a.Low == c.Low && a.High == c.High {
		t.Fatal("another seed gave the same interval")
	}
}

// TestDiffInDiffNotEnoughData: below the minimum in either group, no
// estimate at all, only the sizes.
func TestDiffInDiffNotEnoughData(t *testing.T) {
	t.Parallel()
	tr, co := groups(rand.New(rand.NewPCG(5, 6)), 9, 1, 10)
	e := analytics.DiffInDiff(tr, co, analytics.MethodNormal, 0, 0, 10)
	if e.Enough || e.Effect != 0 || e.Low != 0 || e.High != 0 || e.Treated != 9 || e.Control != 9 {
		t.Fatalf("got %+v", e)
	}
}

// BenchmarkImpactCoverage reports, over 200 seeds of generated companies
// (150 participants, 150 controls), how often the 95 % interval covers the
// planted effect (+4) and covers 0 when there is none, for both methods:
//
//	go test -run '^$' -bench ImpactCoverage -benchtime 1x ./internal/analytics/
func BenchmarkImpactCoverage(b *testing.B) {
	for _, m := range []analytics.Method{analytics.MethodBootstrap, analytics.MethodNormal} {
		b.Run(string(m), func(b *testing.B) {
			for range b.N {
				const seeds = 200
				planted, none := 0, 0
				for s := range uint64(seeds) {
					rng := rand.New(rand.NewPCG(s, 99))
					tr, co := groups(rng, 150, 2, 4)
					if e := analytics.DiffInDiff(tr, co, m, int64(s), 1000, 10); e.Low <= 4 && 4 <= e.High {
						planted++
					}
					tr, co = groups(rng, 150, 2, 0)
					if e := analytics.DiffInDiff(tr, co, m, int64(s), 1000, 10); e.Low <= 0 && 0 <= e.High {
						none++
					}
				}
				b.ReportMetric(float64(planted)/seeds, "coverage-planted")
				b.ReportMetric(float64(none)/seeds, "coverage-null")
			}
		})
	}
}
