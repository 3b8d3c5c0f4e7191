// Package holdout draws the people kept out of a challenge so that its
// effect can be measured against them: a random share of the eligible
// people of each team (stratified, so every team keeps the same share in
// the control group), reproducible from the seed recorded with the
// challenge.
package holdout

import (
	"bytes"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/google/uuid"
)

// MaxShare is the largest share a manager may hold out: beyond half, the
// challenge would be the exception.
const MaxShare = 0.5

// Member is an eligible person and the stratum (team) they are drawn in.
type Member struct {
	ID, Stratum uuid.UUID
}

// Draw returns the held-out people, sorted by id: in each stratum,
// round(share × size) people chosen by a shuffle seeded with seed and the
// stratum. The result depends only on seed, share and the set of members
// (not their order).
func Draw(seed int64, share float64, members []Member) []uuid.UUID {
	if share <= 0 || len(members) == 0 {
		return nil
	}
	strata := map[uuid.UUID][]uuid.UUID{}
	for _, m := range members {
		strata[m.Stratum] = append(strata[m.Stratum], m.ID)
	}
	var out []uuid.UUID
	for stratum, ids := range strata {
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
		ids = slices.Compact(ids)
		h := fnv.New64a()
		h.Write(stratum[:])
		rng := rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		n := int(math.Round(share * float64(len(ids))))
		out = append(out, ids[:n]...)
	}
	Sort(out)
	return out
}

// Sort sorts ids in the order Contains expects.
func Sort(ids []uuid.UUID) {
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
}

// Contains reports whether sorted (as Draw returns it) holds id.
func Contains(sorted []uuid.UUID, id uuid.UUID) bool {
	_, ok := slices.BinarySearchFunc(sorted, id, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return ok
}
