package reward_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// TestKudosAllowanceUnderConcurrency: kudos sent at once never give more
// than the sender's monthly allowance; the recipients' wallets get exactly
// what was given.
func TestKudosAllowanceUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sender, to := b.reps[0], b.reps[1]
	const allowance, each, tries = 100, 15, 20
	if _, err := b.svc.UpdateSettings(ctx, b.admin, reward.SettingsPatch{Settings: reward.Settings{KudosAllowance: allowance},
		Mask: []string{"kudos_allowance"}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i := range tries {
		wg.Go(func() {
			_, errs[i] = b.svc.SendKudos(ctx, principal(sender), reward.KudosRequest{RecipientID: to.ID,
				Message: fmt.Sprintf("merci %d", i), Points: each})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		wantCode(t, err, rallye.CodeResourceExhausted)
	}
	if want := allowance / each; ok != want {
		t.Fatalf("%d kudos with points, want %d", ok, want)
	}
	if got := b.checkBalances(t)[to.ID].Spendable; got != int64(ok*each) {
		t.Fatalf("recipient has %d, want %d", got, ok*each)
	}
	// Without points, kudos are unlimited; with a message, always.
	k, err := b.svc.SendKudos(ctx, principal(sender), reward.KudosRequest{RecipientID: to.ID, Message: "Bravo pour la démo !"})
	if err != nil || k.AllowanceLeft != allowance-int64(ok*each) {
		t.Fatalf("kudos without points: %+v, %v", k, err)
	}
	b.drain(t)
	items, err := b.svc.Feed(ctx, principal(b.manager), reward.ListFeedRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(items) == 0 || items[0].Text != "Rep 0 félicite Rep 1\u00a0: «\u202fBravo pour la démo !\u202f»" {
		t.Fatalf("feed %+v", items)
	}
	cases := []struct {
		name string
		req  reward.KudosRequest
		code rallye.Code
	}{
		{"ErrSelf", reward.KudosRequest{RecipientID: sender.ID, Message: "moi"}, rallye.CodeInvalid},
		{"ErrEmpty", reward.KudosRequest{RecipientID: to.ID, Message: "  "}, rallye.CodeInvalid},
		{"ErrUnknown", reward.KudosRequest{RecipientID: uuid.New(), Message: "x"}, rallye.CodeNotFound},
		{"ErrRepAttachesAWin", reward.KudosRequest{RecipientID: to.ID, Message: "x", WinID: uuid.New()}, rallye.CodePermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := b.svc.SendKudos(ctx, principal(sender), c.req)
			wantCode(t, err, c.code)
		})
	}
}

// TestKudosOnAWin: a manager attaches kudos to a win of the feed.
func TestKudosOnAWin(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rep := b.reps[0]
	b.ingest(t, dealWon(rep, t0, 1_250_000))
	items, err := b.svc.Feed(ctx, principal(b.manager), reward.ListFeedRequest{TeamID: b.north.ID})
	if err != nil {
		t.Fatal(err)
	}
	var win uuid.UUID
	for _, it := range items {
		if it.Kind == reward.FeedWin {
			win = it.ID
			if it.Text != "Rep 0 a gagné une affaire\u00a0: 12\u202f500\u00a0EUR" {
				t.Fatalf("win %q", it.Text)
			}
		}
	}
	if win == uuid.Nil {
		t.Fatalf("no win in %+v", items)
	}
	k, err := b.svc.SendKudos(ctx, principal(b.manager), reward.KudosRequest{RecipientID: rep.ID, Message: "Superbe affaire", Points: 20, WinID: win, RequestID: "k1"})
	if err != nil || k.WinID != win {
		t.Fatalf("%+v %v", k, err)
	}
	again, err := b.svc.SendKudos(ctx, principal(b.manager), reward.KudosRequest{RecipientID: rep.ID, Message: "Superbe affaire", Points: 20, WinID: win, RequestID: "k1"})
	if err != nil || again.ID != k.ID {
		t.Fatalf("retry: %+v %v", again, err)
	}
	if got := b.checkBalances(t)[rep.ID].Spendable; got != 20 {
		t.Fatalf("spendable %d, want 20 once", got)
	}
	w := b.wallet(t, rep)
	if w.Entries[0].Text != "+20 Kudos de Sophie Martin\u00a0: «\u202fSuperbe affaire\u202f»" {
		t.Fatalf("history %q", w.Entries[0].Text)
	}
	// South's reps do not see north's feed; HR sees every team.
	south, err := b.svc.Feed(ctx, principal(b.reps[2]), reward.ListFeedRequest{})
	if err != nil || len(south) != 0 {
		t.Fatalf("south sees %d entries, %v", len(south), err)
	}
	_, err = b.svc.Feed(ctx, principal(b.reps[2]), reward.ListFeedRequest{TeamID: b.north.ID})
	wantCode(t, err, rallye.CodePermissionDenied)
	if all, err := b.svc.Feed(ctx, principal(b.hr), reward.ListFeedRequest{}); err != nil || len(all) != len(items)+1 {
		t.Fatalf("HR sees %d, %v; want %d", len(all), err, len(items)+1)
	}
}
