package reward_test

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// refRanks ranks points best first, equal points sharing a rank (1, 1, 3),
// nobody ranked without points.
func refRanks(points map[uuid.UUID]int64) map[uuid.UUID]int {
	var ids []uuid.UUID
	for id := range points {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return points[ids[i]] > points[ids[j]] })
	out := map[uuid.UUID]int{}
	for i, id := range ids {
		switch {
		case i > 0 && points[id] == points[ids[i-1]]:
			out[id] = out[ids[i-1]]
		default:
			out[id] = i + 1
		}
	}
	return out
}

// TestRankRewardsOnceWithTies: a challenge ends with two people tied first;
// its ending and finalizing jobs run twice, two of them at once; the
// rewards are granted once, each tied person gets the reward of the shared
// rank, the points land in the wallet once (even when the outbox delivers
// the results again), the badges are real badges, and each participant's
// result says it.
func TestRankRewardsOnceWithTies(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	third := b.person(t, "Rep North 3", org.LocaleFR, "", []rallye.Role{rallye.RoleRep}, b.north)
	fourth := b.person(t, "Rep North 4", org.LocaleEN, "", []rallye.Role{rallye.RoleRep}, b.north)
	b.reps = append(b.reps, third, fourth)
	b.joinedLongAgo(t)
	meetings := map[uuid.UUID]int{b.reps[0].ID: 3, b.reps[1].ID: 3, third.ID: 1, fourth.ID: 0}
	rewards := []challenge.Reward{
		{Kind: challenge.RewardRank, FromRank: 1, ToRank: 1, Ref: "winner", Points: 500, Badge: "march-trophy",
			Label: challenge.Text{FR: "Trophée de mars", EN: "March trophy"}},
		{Kind: challenge.RewardRank, FromRank: 2, ToRank: 3, Ref: "podium", Points: 300, Badge: "podium",
			Label: challenge.Text{FR: "Podium", EN: "Podium"}},
		{Kind: challenge.RewardThreshold, MinPoints: 25, Ref: "regular", Badge: "regular",
			Label: challenge.Text{FR: "Régulier", EN: "Regular"}},
	}
	c := b.competitionTwice(t, rewards, meetings)

	// Reference: ranks from the points, rewards from the ranks.
	points := map[uuid.UUID]int64{}
	for u, n := range meetings {
		points[u] = int64(10 * n)
	}
	ranks := refRanks(points)
	wantBonus := map[uuid.UUID]int64{}
	wantBadges := map[uuid.UUID][]string{}
	for u, p := range points {
		for _, r := range rewards {
			switch {
			case r.Kind == challenge.RewardRank && p > 0 && ranks[u] >= r.FromRank && ranks[u] <= r.ToRank,
				r.Kind == challenge.RewardThreshold && p >= r.MinPoints:
				wantBonus[u] += r.Points
				wantBadges[u] = append(wantBadges[u], r.Badge)
			}
		}
		if p > 0 && ranks[u] == 1 {
			wantBadges[u] = append(wantBadges[u], "challenge-winner")
		}
		if p > 0 && ranks[u] <= 3 {
			wantBadges[u] = append(wantBadges[u], "podium")
		}
	}
	var grants int
	err := b.db.ReadTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM challenge_reward_grants WHERE challenge_id = $1`, c.ID).Scan(&grants)
	})
	if err != nil {
		t.Fatal(err)
	}
	wantGrants := 0
	for u, p := range points {
		for _, r := range rewards {
			if r.Kind == challenge.RewardRank && p > 0 && ranks[u] >= r.FromRank && ranks[u] <= r.ToRank ||
				r.Kind == challenge.RewardThreshold && p >= r.MinPoints {
				wantGrants++
			}
		}
	}
	if grants != wantGrants {
		t.Fatalf("%d grants, want %d", grants, wantGrants)
	}

	// Redeliver every message to the rewards consumer: nothing changes.
	before := b.checkBalances(t)
	err = b.db.InTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE outbox_cursors SET seq = 0 WHERE consumer = $1`, reward.OutboxConsumer)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	b.drain(t)
	after := b.checkBalances(t)
	for u, bal := range before {
		if after[u] != bal {
			t.Fatalf("redelivery changed %s: %+v -> %+v", u, bal, after[u])
		}
	}

	for u, p := range points {
		bal := after[u]
		if bal.Pending != 0 || bal.Spendable != p+wantBonus[u] || bal.Lifetime != p+wantBonus[u] {
			t.Fatalf("%s: balance %+v, want %d spendable (points %d, bonus %d), nothing pending", u, bal, p+wantBonus[u], p, wantBonus[u])
		}
		awards, err := b.svc.UserBadges(ctx, b.admin, u)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, a := range awards {
			keys = append(keys, a.Badge.Key)
		}
		slices.Sort(keys)
		want := slices.Compact(slices.Sorted(slices.Values(wantBadges[u])))
		if !slices.Equal(keys, want) {
			t.Fatalf("%s holds %v, want %v", u, keys, want)
		}
	}

	// Each participant's result says it, in their language.
	texts := map[uuid.UUID]string{
		b.reps[0].ID: "1er ex æquo\u00a0: +500 points et le badge «\u202fTrophée de mars\u202f» et le badge «\u202fRégulier\u202f»",
		b.reps[1].ID: "1st (tied): +500 points and the 'March trophy' badge and the 'Regular' badge",
		third.ID:     "3e\u00a0: +300 points et le badge «\u202fPodium\u202f»",
	}
	for u, want := range texts {
		d, err := b.challenges.Get(ctx, principal(b.userByID(t, u)), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if d.Me == nil || d.Me.Result != want {
			t.Fatalf("%s's result %q, want %q", u, d.Me.Result, want)
		}
	}
	// The wallet's history names the reward.
	w := b.wallet(t, third)
	if w.Entries[0].Text != "+300 Récompense\u00a0: 3e de «\u202fRendez-vous de mars\u202f» (Podium)" {
		t.Fatalf("history line %q", w.Entries[0].Text)
	}
}

// competitionTwice is competition with the lifecycle jobs run twice and two
// finalizations at once (two servers).
func (b *bundle) competitionTwice(t *testing.T, rewards []challenge.Reward, meetings map[uuid.UUID]int) *challenge.Challenge {
	t.Helper()
	ctx := context.Background()
	start := b.clock.Now().Add(time.Hour)
	def := challenge.Definition{
		Name: challenge.Text{FR: "Rendez-vous de mars", EN: "March meetings"}, Kind: challenge.KindProspecting,
		Rules: []challenge.Rule{{EventTypes: []event.Type{event.MeetingHeld}, Points: 10,
			Label: challenge.Text{FR: "10 points par rendez-vous", EN: "10 points a meeting"}}},
		Rewards: rewards, Grace: challenge.Duration(time.Minute), MaxDataWait: challenge.Duration(time.Minute),
		// Equal scores share a rank and its reward: what this test is about.
		TieRule: challenge.TieSharedRank,
	}
	c, err := b.challenges.Create(ctx, principal(b.manager), challenge.CreateRequest{Definition: def,
		TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start, EndsAt: start.Add(24 * time.Hour), Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Set(start)
	for range 2 {
		if _, err := b.challenges.Start(ctx, challenge.StartArgs{TenantID: b.tenant.ID, ChallengeID: c.ID}); err != nil {
			t.Fatal(err)
		}
	}
	var evs []event.Event
	for u, n := range meetings {
		rep := b.userByID(t, u)
		for i := range n {
			evs = append(evs, ev(event.MeetingHeld, rep, start.Add(time.Duration(i+1)*time.Minute)))
		}
	}
	b.ingest(t, evs...)
	// Pending until final.
	if w := b.wallet(t, b.reps[0]); w.Pending != 30 || w.Spendable != 0 || !w.Entries[0].Pending {
		t.Fatalf("before final: %+v", w.Balance)
	}
	b.clock.Set(start.Add(24 * time.Hour))
	for range 2 {
		if _, err := b.challenges.End(ctx, challenge.EndArgs{TenantID: b.tenant.ID, ChallengeID: c.ID}); err != nil {
			t.Fatal(err)
		}
	}
	b.clock.Set(start.Add(24*time.Hour + 2*time.Minute))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := b.challenges.Finalize(ctx, challenge.FinalizeArgs{TenantID: b.tenant.ID, ChallengeID: c.ID}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := b.challenges.Finalize(ctx, challenge.FinalizeArgs{TenantID: b.tenant.ID, ChallengeID: c.ID}); err != nil {
		t.Fatal(err)
	}
	b.drain(t)
	return c
}
