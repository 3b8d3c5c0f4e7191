package analytics

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Method is how the interval of an impact is computed.
type Method string

// Methods.
const (
	// MethodBootstrap: percentile bootstrap (people resampled with
	// replacement within each group), seeded, DefaultResamples draws.
	MethodBootstrap Method = "bootstrap"
	// MethodNormal: normal approximation, estimate ± 1.96 standard errors
	// (Welch's: the two groups' variances of the change, each over its size).
	MethodNormal Method = "normal"
)

// DefaultResamples is the number of bootstrap draws.
const DefaultResamples = 2000

// MinImpactSample is the fewest people with a value in both periods a group
// (participants, controls) needs for an impact to be computed at all: below
// it the answer is "not enough data" (and never below the company's
// minimum group size).
const MinImpactSample = 10

// z975 is the standard normal quantile of a two-sided 95 % interval.
const z975 = 1.959963984540054

// Sample is one person's KPI value before and during a challenge.
type Sample struct {
	Before, During float64
}

// Estimate is a difference in differences with its 95 % interval.
type Estimate struct {
	// Enough is false when a group has fewer than the minimum people: then
	// only the sizes are set.
	Enough                                                     bool
	Effect, Low, High                                          float64
	Treated, Control                                           int
	TreatedBefore, TreatedDuring, ControlBefore, ControlDuring float64
	Method                                                     Method
	Seed                                                       int64
	Resamples                                                  int
}

// DiffInDiff estimates the effect of a treatment as the mean change of the
// treated minus the mean change of the controls, with a 95 % interval by
// method (bootstrap with seed, or the normal approximation).
func DiffInDiff(treated, control []Sample, method Method, seed int64, resamples, minSample int) Estimate {
	e := Estimate{Treated: len(treated), Control: len(control), Method: method}
	if len(treated) < minSample || len(control) < minSample {
		return e
	}
	e.Enough = true
	dt, dc := changes(treated), changes(control)
	e.TreatedBefore, e.TreatedDuring = meanOf(treated, true), meanOf(treated, false)
	e.ControlBefore, e.ControlDuring = meanOf(control, true), meanOf(control, false)
	e.Effect = mean(dt) - mean(dc)
	switch method {
	case MethodNormal:
		se := math.Sqrt(variance(dt)/float64(len(dt)) + variance(dc)/float64(len(dc)))
		e.Low, e.High = e.Effect-z975*se, e.Effect+z975*se
	default:
		e.Method, e.Seed = MethodBootstrap, seed
		if resamples <= 0 {
			resamples = DefaultResamples
		}
		e.Resamples = resamples
		rng := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
		effects := make([]float64, resamples)
		for b := range effects {
			effects[b] = resampledMean(rng, dt) - resampledMean(rng, dc)
		}
		slices.Sort(effects)
		e.Low, e.High = percentile(effects, 0.025), percentile(effects, 0.975)
	}
	return e
}

func changes(s []Sample) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = v.During - v.Before
	}
	return out
}

func meanOf(s []Sample, before bool) float64 {
	var sum float64
	for _, v := range s {
		if before {
			sum += v.Before
		} else {
			sum += v.During
		}
	}
	return sum / float64(len(s))
}

func mean(x []float64) float64 {
	var sum float64
	for _, v := range x {
		sum += v
	}
	return sum / float64(len(x))
}

// variance is the unbiased sample variance.
func variance(x []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	m := mean(x)
	var ss float64
	for _, v := range x {
		ss += (v - m) * (v - m)
	}
	return ss / float64(len(x)-1)
}

func resampledMean(rng *rand.Rand, x []float64) float64 {
	var sum float64
	for range x {
		sum += x[rng.IntN(len(x))]
	}
	return sum / float64(len(x))
}

// percentile of sorted values, linearly interpolated.
func percentile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}
