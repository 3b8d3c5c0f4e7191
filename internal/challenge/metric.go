package challenge

import (
	"math"
	"slices"
	"time"

	"github.com/google/uuid"
)

// progress holds a mission's accumulators for one subject (a person, or a
// team for team missions). A change adds or takes back its contribution, so
// progress moves incrementally and a correction undoes exactly what the
// original did.
type progress struct {
	MissionID, SubjectID uuid.UUID
	// Volume counts the events counted; Hits those a rate counts as hits.
	Volume, Hits int64
	// Total sums the values, in 1/valueScale units.
	Total int64
	// Samples are the values, sorted (medians, minimums, maximums).
	Samples []float64
	// Target overrides the mission's target for this subject (uplift).
	Target *float64

	Met, Completed bool
	CompletedAt    time.Time
	Completions    int

	stored, dirty bool
}

// apply adds (sign +1) or takes back (sign -1) a contribution to m's
// accumulators.
func (p *progress) apply(m Mission, c contribution, sign int) {
	s := int64(sign)
	p.Volume += s
	p.Total += s * c.Value
	if c.Hit {
		p.Hits += s
	}
	if m.Aggregate == AggMedian || m.Aggregate == AggMin || m.Aggregate == AggMax {
		if sign > 0 {
			i, _ := slices.BinarySearch(p.Samples, c.Sample)
			p.Samples = slices.Insert(p.Samples, i, c.Sample)
		} else if i, ok := slices.BinarySearch(p.Samples, c.Sample); ok {
			p.Samples = slices.Delete(p.Samples, i, i+1)
		}
	}
	p.dirty = true
}

// target is the subject's target for m.
func (p *progress) target(m Mission) float64 {
	if p.Target != nil {
		return *p.Target
	}
	return m.Target
}

// measure returns the mission's current value for the subject and whether
// enough events were counted for it to mean something (rates, averages and
// order statistics need MinVolume events, and at least one).
func measure(m Mission, p *progress) (float64, bool) {
	enough := p.Volume >= max(m.MinVolume, 1)
	switch m.Aggregate {
	case AggCount:
		return float64(p.Volume), true
	case AggSum:
		return float64(p.Total) / valueScale, true
	case AggRate:
		if p.Volume == 0 {
			return 0, false
		}
		return float64(p.Hits) * 100 / float64(p.Volume), enough
	case AggAverage:
		if p.Volume == 0 {
			return 0, false
		}
		return float64(p.Total) / valueScale / float64(p.Volume), enough
	case AggMedian, AggMin, AggMax:
		n := len(p.Samples)
		if n == 0 {
			return 0, false
		}
		switch m.Aggregate {
		case AggMin:
			return p.Samples[0], enough
		case AggMax:
			return p.Samples[n-1], enough
		}
		if n%2 == 1 {
			return p.Samples[n/2], enough
		}
		return (p.Samples[n/2-1] + p.Samples[n/2]) / 2, enough
	}
	return 0, false
}

// tolerance absorbs the rounding of values computed in floating point.
const tolerance = 1e-9

// conditionMet reports whether an automatic mission's condition holds.
func conditionMet(m Mission, p *progress) bool {
	v, ok := measure(m, p)
	return ok && meets(m, v, p.target(m))
}

// meets compares a value with a target, whatever the volume.
func meets(m Mission, v, t float64) bool {
	if m.Comparison == AtMost {
		return v <= t+tolerance*math.Max(1, math.Abs(t))
	}
	return v >= t-tolerance*math.Max(1, math.Abs(t))
}

// percent is how far the subject is towards completion, 0 to 100.
func percent(m Mission, p *progress) int {
	if p.Completed || (m.IsManual() && p.Met) {
		return 100
	}
	if m.IsManual() {
		return 0
	}
	v, _ := measure(m, p)
	t := p.target(m)
	var pct float64
	switch {
	case p.Volume == 0:
		pct = 0
	case m.Comparison == AtMost:
		if v <= t {
			pct = 100
		} else {
			pct = 100 * t / v
		}
	case t <= 0:
		pct = 100
	default:
		pct = 100 * v / t
	}
	if m.Aggregate != AggCount && m.Aggregate != AggSum && m.MinVolume > 0 {
		pct = math.Min(pct, 100*float64(p.Volume)/float64(m.MinVolume))
	}
	pct = math.Max(0, math.Min(100, math.Floor(pct)))
	if pct == 100 && !conditionMet(m, p) {
		pct = 99 // rounding must not show a mission done when it is not
	}
	return int(pct)
}
