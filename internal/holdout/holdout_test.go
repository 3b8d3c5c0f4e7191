package holdout_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/holdout"
)

func members(rng *rand.Rand, teams, perTeamMax int) []holdout.Member {
	var out []holdout.Member
	for range teams {
		team := uuid.New()
		for range 1 + rng.IntN(perTeamMax) {
			out = append(out, holdout.Member{ID: uuid.New(), Stratum: team})
		}
	}
	return out
}

// TestDrawIsReproducibleAndBalanced: the same seed gives the same people
// whatever the order of the members; every team keeps round(share × size)
// of its people out; another seed draws other people.
func TestDrawIsReproducibleAndBalanced(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		ms := members(rng, 1+rng.IntN(8), 40)
		share := []float64{0.1, 0.2, 0.25, 0.5}[rng.IntN(4)]
		seed := rng.Int64()
		a := holdout.Draw(seed, share, ms)
		shuffled := slices.Clone(ms)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if b := holdout.Draw(seed, share, shuffled); !slices.Equal(a, b) {
			t.Fatal("the draw depends on the members' order")
		}
		size, out := map[uuid.UUID]int{}, map[uuid.UUID]int{}
		for _, m := range ms {
			size[m.Stratum]++
			if holdout.Contains(a, m.ID) {
				out[m.Stratum]++
			}
		}
		total := 0
		for team, n := range size {
			if want := int(math.Round(share * float64(n))); out[team] != want {
				t.Fatalf("team of %d, share %v: %d held out, want %d", n, share, out[team], want)
			}
			total += out[team]
		}
		if total != len(a) {
			t.Fatalf("%d held out, %d counted by team", len(a), total)
		}
		if len(ms) >= 20 && slices.Equal(a, holdout.Draw(seed+1, share, ms)) {
			t.Fatal("another seed drew the same people")
		}
	}
	if holdout.Draw(1, 0, members(rng, 3, 10)) != nil {
		t.Fatal("a share of 0 held people out")
	}
}

// TestDrawIsUniform: over many seeds every member of a team is held out
// about share of the time (chi-square-free check: within 5 standard
// deviations of the binomial).
func TestDrawIsUniform(t *testing.T) {
	t.Parallel()
	team := uuid.New()
	var ms []holdout.Member
	for range 10 {
		ms = append(ms, holdout.Member{ID: uuid.New(), Stratum: team})
	}
	count := map[uuid.UUID]int{}
	const seeds = 4000
	for s := range seeds {
		for _, id := range holdout.Draw(int64(s), 0.3, ms) {
			count[id]++
		}
	}
	sd := math.Sqrt(seeds * 0.3 * 0.7)
	for _, m := range ms {
		if d := math.Abs(float64(count[m.ID]) - seeds*0.3); d > 5*sd {
			t.Fatalf("held out %d times out of %d, expected about %.0f", count[m.ID], seeds, seeds*0.3)
		}
	}
}
