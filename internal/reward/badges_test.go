package reward_test

import (
	"context"
	"slices"
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

func (b *bundle) badgeKeys(t *testing.T, u org.User) []string {
	t.Helper()
	awards, err := b.svc.UserBadges(context.Background(), principal(u), uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, a := range awards {
		keys = append(keys, a.Badge.Key)
	}
	slices.Sort(keys)
	return keys
}

// TestBadgeKeptWhenACorrectionUnreachesIt: a rep completes a mission (a
// missions badge) and wins a first deal (the first-deal badge); the CRM
// then retracts the events. The decision, documented in the README: badges
// are kept once earned, points are clawed back (the mission's points were
// pending, the challenge running, and leave the wallet and its lifetime
// total; the history says why).
func TestBadgeKeptWhenACorrectionUnreachesIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rep := b.reps[0]
	if _, err := b.svc.CreateBadge(ctx, b.admin, reward.BadgeInput{Key: "first-mission",
		Name: reward.Text{FR: "Première mission", EN: "First mission"}, Criterion: reward.Criterion{Kind: reward.CriterionMissions, Threshold: 1}}, ""); err != nil {
		t.Fatal(err)
	}
	start := b.clock.Now().Add(time.Hour)
	c, err := b.challenges.Create(ctx, principal(b.manager), challenge.CreateRequest{
		Definition: challenge.Definition{Name: challenge.Text{FR: "Rencontres", EN: "Meetings"},
			Missions: []challenge.Mission{{Key: "two-meetings", Name: challenge.Text{FR: "Deux rendez-vous", EN: "Two meetings"},
				Points: 40, Aggregate: challenge.AggCount, EventTypes: []event.Type{event.MeetingHeld}, Comparison: challenge.AtLeast,
				Target: 2, Unit: challenge.UnitCount}}},
		TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start, EndsAt: start.Add(7 * 24 * time.Hour), Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Set(start)
	if _, err := b.challenges.Start(ctx, challenge.StartArgs{TenantID: b.tenant.ID, ChallengeID: c.ID}); err != nil {
		t.Fatal(err)
	}
	m1, m2 := ev(event.MeetingHeld, rep, start.Add(time.Minute)), ev(event.MeetingHeld, rep, start.Add(2*time.Minute))
	deal := dealWon(rep, start.Add(3*time.Minute), 120000)
	b.ingest(t, m1, m2, deal)
	if got, want := b.badgeKeys(t, rep), []string{"first-deal", "first-mission"}; !slices.Equal(got, want) {
		t.Fatalf("badges %v, want %v", got, want)
	}
	w := b.wallet(t, rep)
	if w.Pending != 40 || w.Lifetime != 40 || w.Spendable != 0 {
		t.Fatalf("after the mission: %+v, want 40 pending", w.Balance)
	}
	if w.Entries[0].Text != "+40 Mission «\u202fDeux rendez-vous\u202f» accomplie (Rencontres)" {
		t.Fatalf("history %q", w.Entries[0].Text)
	}

	b.ingest(t, retracted(m2), retracted(deal))
	if got, want := b.badgeKeys(t, rep), []string{"first-deal", "first-mission"}; !slices.Equal(got, want) {
		t.Fatalf("after the correction: badges %v, want %v kept", got, want)
	}
	w = b.wallet(t, rep)
	if w.Pending != 0 || w.Lifetime != 0 {
		t.Fatalf("after the correction: %+v, want the points clawed back", w.Balance)
	}
	if w.Entries[0].Text != "−40 Correction\u00a0: mission «\u202fDeux rendez-vous\u202f» annulée, données CRM corrigées" {
		t.Fatalf("history %q", w.Entries[0].Text)
	}
	b.checkBalances(t)
	// The counters follow the truth: the mission completed again counts
	// once more, the badge is not awarded twice.
	b.ingest(t, ev(event.MeetingHeld, rep, start.Add(4*time.Minute)))
	var awards, missions int
	err = b.db.ReadTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM badge_awards WHERE user_id = $1`, rep.ID).Scan(&awards); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT value FROM reward_counters WHERE user_id = $1 AND counter = 'missions'`, rep.ID).Scan(&missions)
	})
	if err != nil {
		t.Fatal(err)
	}
	if awards != 2 || missions != 1 {
		t.Fatalf("%d awards and %d missions counted, want 2 and 1", awards, missions)
	}
	// The team feed showed the win, and hides it once retracted.
	items, err := b.svc.Feed(ctx, principal(b.reps[1]), reward.ListFeedRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Kind == reward.FeedWin {
			t.Fatalf("retracted win still in the feed: %q", it.Text)
		}
	}
}

// TestActivityBadgeOverAPeriod: "50,000 EUR won in a month" is earned by
// the deal that crosses the threshold within one local month, not by deals
// spread over two.
func TestActivityBadgeOverAPeriod(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a, c := b.reps[0], b.reps[1]
	// a: 30,000 on 31 March and 30,000 on 1 April (Paris): two months.
	b.ingest(t, dealWon(a, time.Date(2026, 3, 31, 20, 0, 0, 0, time.UTC), 3_000_000),
		dealWon(a, time.Date(2026, 3, 31, 22, 30, 0, 0, time.UTC), 3_000_000))
	// c: the same amounts on 2 and 3 March.
	b.ingest(t, dealWon(c, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC), 3_000_000),
		dealWon(c, time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC), 3_000_000))
	has := func(u org.User) bool { return slices.Contains(b.badgeKeys(t, u), "big-month") }
	if has(a) {
		t.Fatal("a's deals fall in two Paris months (22:30 UTC on 31 March is 1 April in Paris)")
	}
	if !has(c) {
		t.Fatal("c won 60,000 in March")
	}
}

// TestLevels: "level 4, 320 points to level 5" in one call; each level is
// announced once, in the feed and the outbox.
func TestLevels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rep := b.reps[0]
	for _, p := range []int64{200, 1000, 980, 500} { // 200, 1200, 2180, 2680
		b.grant(t, rep, p)
		b.drain(t)
	}
	w := b.wallet(t, rep)
	if w.Level.Number != 4 || w.Next == nil || w.Next.Number != 5 || w.ToNext != 320 {
		t.Fatalf("level %d, next %+v, %d to go; want 4, 5, 320", w.Level.Number, w.Next, w.ToNext)
	}
	var levels []int
	var announced int
	err := b.db.ReadTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT level FROM reward_levels WHERE user_id = $1 ORDER BY level`, rep.ID)
		if err != nil {
			return err
		}
		if levels, err = pgx.CollectRows(rows, pgx.RowTo[int]); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM outbox_messages WHERE kind = $1`, string(reward.MessageLevelReached)).Scan(&announced)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(levels, []int{2, 3, 4}) || announced != 2 {
		t.Fatalf("levels %v, %d announced; want [2 3 4] and 2 (level 2 at 1,200 points was passed with 3)", levels, announced)
	}
	items, err := b.svc.Feed(ctx, principal(rep), reward.ListFeedRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) == 0 || items[0].Text != "Rep 0 passe au niveau 4\u00a0: Expert" {
		t.Fatalf("feed %+v", items)
	}
}

// TestBadgeRights: admins define badges; the criterion is checked; a
// manager sees who holds a badge in their teams only.
func TestBadgeRights(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cases := []struct {
		name string
		by   rallye.Principal
		in   reward.BadgeInput
		code rallye.Code
	}{
		{"ErrManager", principal(b.manager), reward.BadgeInput{Key: "x", Name: reward.Text{FR: "x", EN: "x"},
			Criterion: reward.Criterion{Kind: reward.CriterionMissions, Threshold: 1}}, rallye.CodePermissionDenied},
		{"ErrUnknownEventType", b.admin, reward.BadgeInput{Key: "x", Name: reward.Text{FR: "x", EN: "x"},
			Criterion: reward.Criterion{Kind: reward.CriterionActivity, EventTypes: []string{"deal.signed"}, Measure: "count", Period: "week", Threshold: 1}}, rallye.CodeInvalid},
		{"ErrTakenKey", b.admin, reward.BadgeInput{Key: "podium", Name: reward.Text{FR: "x", EN: "x"},
			Criterion: reward.Criterion{Kind: reward.CriterionMissions, Threshold: 1}}, rallye.CodeAlreadyExists},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := b.svc.CreateBadge(ctx, c.by, c.in, "")
			wantCode(t, err, c.code)
		})
	}
	b.ingest(t, dealWon(b.reps[0], t0, 100), dealWon(b.reps[2], t0, 100))
	bs, err := b.svc.ListBadges(ctx, principal(b.reps[0]), false)
	if err != nil {
		t.Fatal(err)
	}
	var first uuid.UUID
	for _, x := range bs {
		if x.Key == "first-deal" {
			first = x.ID
		}
	}
	_, holders, err := b.svc.BadgeHolders(ctx, principal(b.manager), reward.BadgeHoldersRequest{BadgeID: first})
	if err != nil {
		t.Fatal(err)
	}
	if len(holders) != 1 || holders[0].UserID != b.reps[0].ID {
		t.Fatalf("the north manager sees %+v, want rep 0 only", holders)
	}
	_, _, err = b.svc.BadgeHolders(ctx, principal(b.manager), reward.BadgeHoldersRequest{BadgeID: first, TeamID: b.south.ID})
	wantCode(t, err, rallye.CodePermissionDenied)
	_, all, err := b.svc.BadgeHolders(ctx, principal(b.hr), reward.BadgeHoldersRequest{BadgeID: first})
	if err != nil || len(all) != 2 {
		t.Fatalf("HR sees %d holders (%v), want 2", len(all), err)
	}
}
