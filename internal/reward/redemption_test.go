package reward_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
)

// TestParallelRedemptionsOfTheLastItems: 100 people redeem at once an item
// with 10 left: exactly 10 succeed, the others are told it is out of
// stock, and every balance equals its ledger.
func TestParallelRedemptionsOfTheLastItems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const people, stock, cost = 100, 10, 50
	var reps []org.User
	for i := range people {
		team := b.north
		if i%2 == 1 {
			team = b.south
		}
		reps = append(reps, b.person(t, fmt.Sprintf("Buyer %d", i), org.LocaleFR, "", []rallye.Role{rallye.RoleRep}, team))
	}
	for _, r := range reps {
		if _, err := b.svc.GrantPoints(ctx, b.admin, reward.GrantRequest{UserID: r.ID, Points: 2 * cost, Reason: "welcome"}); err != nil {
			t.Fatal(err)
		}
	}
	it := b.item(t, cost, intp(stock), false)
	var wg sync.WaitGroup
	errs := make([]error, people)
	for i, r := range reps {
		wg.Go(func() {
			_, errs[i] = b.svc.Redeem(ctx, principal(r), reward.RedeemRequest{ItemID: it.ID, RequestID: "buy-" + r.ID.String()})
		})
	}
	wg.Wait()
	ok, out := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case rallye.ErrorCode(err) == rallye.CodeResourceExhausted:
			wantReason(t, err, "OUT_OF_STOCK")
			out++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != stock || out != people-stock {
		t.Fatalf("%d redeemed and %d out of stock, want %d and %d", ok, out, stock, people-stock)
	}
	got, err := b.svc.GetItem(ctx, b.admin, it.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stock == nil || *got.Stock != 0 {
		t.Fatalf("stock %v, want 0", got.Stock)
	}
	bals := b.checkBalances(t)
	spent := 0
	for _, r := range reps {
		switch bals[r.ID].Spendable {
		case cost:
			spent++
		case 2 * cost:
		default:
			t.Fatalf("balance %+v", bals[r.ID])
		}
	}
	if spent != stock {
		t.Fatalf("%d wallets spent, want %d", spent, stock)
	}
}

// TestParallelSpendingNeverBelowZero: one wallet, many redemptions at once
// of an unlimited item: exactly what the balance affords succeeds, the rest
// is refused for insufficient points, and the balance ends at the
// remainder, never below zero.
func TestParallelSpendingNeverBelowZero(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rep := b.reps[0]
	const balance, cost, tries = 1000, 70, 40
	b.grant(t, rep, balance)
	it := b.item(t, cost, nil, false)
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i := range tries {
		wg.Go(func() {
			_, errs[i] = b.svc.Redeem(ctx, principal(rep), reward.RedeemRequest{ItemID: it.ID, RequestID: fmt.Sprintf("r%d", i)})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		wantCode(t, err, rallye.CodeFailedPrecondition)
		wantReason(t, err, "INSUFFICIENT_POINTS")
	}
	if want := balance / cost; ok != want {
		t.Fatalf("%d redemptions succeeded, want %d", ok, want)
	}
	bals := b.checkBalances(t)
	if got, want := bals[rep.ID].Spendable, int64(balance%cost); got != want {
		t.Fatalf("spendable %d, want %d", got, want)
	}
	if got := bals[rep.ID].Lifetime; got != balance {
		t.Fatalf("lifetime %d, want %d: spending does not lower it", got, balance)
	}
}

// TestRedemptionRequestIDOnce: the same request id, sent twice in a row and
// ten times at once, makes one redemption and one ledger entry.
func TestRedemptionRequestIDOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	rep := b.reps[0]
	b.grant(t, rep, 500)
	it := b.item(t, 100, intp(5), false)
	first, err := b.svc.Redeem(ctx, principal(rep), reward.RedeemRequest{ItemID: it.ID, RequestID: "same"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.svc.Redeem(ctx, principal(rep), reward.RedeemRequest{ItemID: it.ID, RequestID: "same"})
	if err != nil || again.ID != first.ID {
		t.Fatalf("retry gave %v, %v; want redemption %s", again.ID, err, first.ID)
	}
	var wg sync.WaitGroup
	ids := make([]uuid.UUID, 10)
	for i := range ids {
		wg.Go(func() {
			r, err := b.svc.Redeem(ctx, principal(rep), reward.RedeemRequest{ItemID: it.ID, RequestID: "burst"})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = r.ID
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent retries made several redemptions: %v", ids)
		}
	}
	rs, err := b.svc.ListRedemptions(ctx, principal(rep), reward.ListRedemptionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("%d redemptions, want 2", len(rs))
	}
	if got := b.checkBalances(t)[rep.ID].Spendable; got != 300 {
		t.Fatalf("spendable %d, want 300", got)
	}
	// The same id for another item is a reuse, refused.
	other := b.item(t, 10, nil, false)
	_, err = b.svc.Redeem(ctx, principal(rep), reward.RedeemRequest{ItemID: other.ID, RequestID: "same"})
	wantCode(t, err, rallye.CodeInvalid)
}

// TestRedemptionLifecycle walks the states with their refunds, stock and
// rights, and exports the fulfilled ones.
func TestRedemptionLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	north, south := b.reps[0], b.reps[2]
	b.grant(t, north, 1000)
	b.grant(t, south, 1000)
	value := int64(2500)
	it, err := b.svc.CreateItem(ctx, b.admin, reward.ItemInput{Name: reward.Text{FR: "Carte cadeau 25 €", EN: "25 EUR gift card"},
		Cost: 250, Stock: intp(3), ApprovalRequired: true, MoneyValue: &value, PerPersonLimit: 2}, "card")
	if err != nil {
		t.Fatal(err)
	}
	redeem := func(u org.User) reward.Redemption {
		t.Helper()
		r, err := b.svc.Redeem(ctx, principal(u), reward.RedeemRequest{ItemID: it.ID})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r1 := redeem(north)
	if r1.State != reward.RedemptionPending {
		t.Fatalf("state %s, want pending", r1.State)
	}
	cases := []struct {
		name string
		by   rallye.Principal
		id   uuid.UUID
		d    reward.Decision
		code rallye.Code
	}{
		{"ErrRepApproves", principal(north), r1.ID, reward.Approve, rallye.CodePermissionDenied},
		{"ErrFulfillPending", b.admin, r1.ID, reward.Fulfill, rallye.CodeFailedPrecondition},
		{"ErrOtherTeamManager", principal(b.manager), redeem(south).ID, reward.Approve, rallye.CodeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := b.svc.Decide(ctx, c.by, c.id, c.d, "")
			wantCode(t, err, c.code)
		})
	}
	approved, err := b.svc.Decide(ctx, principal(b.manager), r1.ID, reward.Approve, "bravo")
	if err != nil || approved.State != reward.RedemptionApproved {
		t.Fatalf("approve: %v %v", approved.State, err)
	}
	if again, err := b.svc.Decide(ctx, principal(b.manager), r1.ID, reward.Approve, ""); err != nil || again.State != reward.RedemptionApproved {
		t.Fatalf("approving twice: %v %v", again.State, err)
	}
	_, err = b.svc.Decide(ctx, principal(b.manager), r1.ID, reward.Reject, "")
	wantCode(t, err, rallye.CodeFailedPrecondition)
	b.clock.Set(t0.Add(time.Hour))
	if f, err := b.svc.Decide(ctx, b.admin, r1.ID, reward.Fulfill, "sent"); err != nil || f.State != reward.RedemptionFulfilled {
		t.Fatalf("fulfill: %v %v", f.State, err)
	}
	// The per-person limit: the second is fine, the third is refused.
	r2 := redeem(north)
	_, err = b.svc.Redeem(ctx, principal(north), reward.RedeemRequest{ItemID: it.ID})
	wantReason(t, err, "LIMIT_REACHED")
	// Rejecting refunds and returns to stock.
	if r, err := b.svc.Decide(ctx, principal(b.manager), r2.ID, reward.Reject, "not this month"); err != nil || r.State != reward.RedemptionRejected {
		t.Fatalf("reject: %v %v", r.State, err)
	}
	bals := b.checkBalances(t)
	if bals[north.ID].Spendable != 750 {
		t.Fatalf("north spendable %d, want 750 (one card bought, one refunded)", bals[north.ID].Spendable)
	}
	got, _ := b.svc.GetItem(ctx, b.admin, it.ID)
	if *got.Stock != 1 {
		t.Fatalf("stock %d, want 1 (3, minus north's fulfilled and south's pending)", *got.Stock)
	}
	// The rep cancels their pending one.
	r3 := redeem(north)
	if r, err := b.svc.Decide(ctx, principal(north), r3.ID, reward.Cancel, ""); err != nil || r.State != reward.RedemptionCancelled {
		t.Fatalf("cancel: %v %v", r.State, err)
	}
	b.checkBalances(t)
	w := b.wallet(t, north)
	if w.Entries[0].Text != "+250 Remboursement\u00a0: «\u202fCarte cadeau 25 €\u202f» annulée" {
		t.Fatalf("history line %q", w.Entries[0].Text)
	}

	// The export: the fulfilled one, with money value and CRM id.
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	var rows []reward.ExportRow
	err = b.svc.ExportFulfilled(ctx, b.admin, t0, t0.Add(24*time.Hour), func(r reward.ExportRow) error {
		rows = append(rows, r)
		return cw.Write([]string{r.PersonCRMID, fmt.Sprint(r.MoneyValue)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].RedemptionID != r1.ID || rows[0].PersonCRMID != north.ExternalID || rows[0].MoneyValue != value ||
		rows[0].ApprovedBy != "Sophie Martin" {
		t.Fatalf("export %+v", rows)
	}
	err = b.svc.ExportFulfilled(ctx, principal(b.manager), t0, t0.Add(time.Hour), func(reward.ExportRow) error { return nil })
	wantCode(t, err, rallye.CodePermissionDenied)
}
