package reward_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/outbox"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/reward"
	"github.com/rallyehq/rallye/internal/testutil"
)

// clock is the injected clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// bundle is a company with teams and people, wired as a server wires it:
// events and their feed (challenge progress and this area's activity
// consumer), challenges on the real leaderboard (PostgreSQL and a private
// Redis prefix), the outbox with this area's consumer, and the rewards
// service, all on an injected clock. Tests drain the feed and the outbox
// themselves.
type bundle struct {
	db         *postgres.DB
	org        *org.Service
	events     *event.Store
	feed       *event.Feed
	outbox     *outbox.Runner
	challenges *challenge.Service
	svc        *reward.Service
	clock      *clock
	tenant     org.Tenant
	admin      rallye.Principal
	sales      org.Team
	north      org.Team
	south      org.Team
	manager    org.User // manages north
	hr         org.User
	reps       []org.User // two in north, two in south
}

// t0 is Monday 2 March 2026, 9:00 in Paris.
var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	db := testutil.DB(t)
	b := &bundle{db: db, org: org.NewService(db), events: event.NewStore(db), clock: &clock{t: t0}}
	jobs, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rdb, keys := testutil.Redis(t)
	lb := leaderboard.New(leaderboard.Deps{DB: db, Redis: rdb, Keys: keys, Log: quiet(), Now: b.clock.Now})
	lb.SetJobs(jobs)
	t.Cleanup(lb.Close)
	seam := challenge.LeaderboardSeam{LB: lb}
	b.challenges = challenge.New(challenge.Deps{DB: db, Jobs: jobs, Scores: seam, Boards: seam, Now: b.clock.Now})
	b.svc = reward.New(reward.Deps{DB: db, Ledger: lb.Scores, Log: quiet(), Now: b.clock.Now})
	b.feed = event.NewFeed(db, quiet())
	b.feed.Register(b.challenges.Progress())
	b.feed.Register(b.svc.Activity())
	b.outbox = outbox.NewRunner(db, quiet())
	b.outbox.MaxAttempts = 1 // a failing message fails the test at once (see deliver)
	b.outbox.Register(b.svc.Consumer())

	var admin org.User
	b.tenant, admin, err = b.org.CreateTenant(ctx, org.NewTenant{Name: "Acme", Slug: "acme", TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Admin", Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	b.admin = rallye.Principal{TenantID: b.tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	mk := func(name string, parent uuid.UUID) org.Team {
		team, err := b.org.CreateTeam(ctx, b.admin, org.CreateTeamRequest{Name: name, ParentID: parent})
		if err != nil {
			t.Fatal(err)
		}
		return team
	}
	b.sales = mk("Ventes", uuid.Nil)
	b.north = mk("Nord", b.sales.ID)
	b.south = mk("Sud", b.sales.ID)
	b.manager = b.person(t, "Sophie Martin", org.LocaleFR, "", []rallye.Role{rallye.RoleManager}, b.north)
	b.hr = b.person(t, "Hélène Roux", org.LocaleFR, "", []rallye.Role{rallye.RoleHR})
	for i := range 4 {
		team := b.north
		if i >= 2 {
			team = b.south
		}
		locale := org.LocaleFR
		if i%2 == 1 {
			locale = org.LocaleEN
		}
		b.reps = append(b.reps, b.person(t, fmt.Sprintf("Rep %d", i), locale, "", []rallye.Role{rallye.RoleRep}, team))
	}
	b.joinedLongAgo(t)
	return b
}

// joinedLongAgo dates every team membership before the tests' clock (the
// database stamps them with its own).
func (b *bundle) joinedLongAgo(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	err := b.db.InTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE team_members SET added_at = '2025-01-01' WHERE tenant_id = $1`, b.tenant.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

var personSeq atomic.Int64

func (b *bundle) person(t *testing.T, name string, locale org.Locale, tz string, roles []rallye.Role, teams ...org.Team) org.User {
	t.Helper()
	n := personSeq.Add(1)
	in := org.UserInput{DisplayName: name, Email: fmt.Sprintf("p%d@acme.test", n), Locale: locale, TimeZone: tz,
		ExternalID: fmt.Sprintf("crm-%d", n), Roles: roles}
	for _, team := range teams {
		in.TeamIDs = append(in.TeamIDs, team.ID)
	}
	u, err := b.org.CreateUser(context.Background(), b.admin, org.CreateUserRequest{User: in})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func principal(u org.User) rallye.Principal {
	return rallye.Principal{TenantID: u.TenantID, UserID: u.ID, Roles: u.Roles}
}

// ingest stores events and drains the feed and the outbox, as a server
// would on their notifications.
func (b *bundle) ingest(t *testing.T, evs ...event.Event) {
	t.Helper()
	rows := make([]event.Row, len(evs))
	for i, e := range evs {
		rows[i] = event.Row{Event: e, HasAmount: e.Amount != 0}
	}
	res, err := b.events.Ingest(context.Background(), rallye.Principal{TenantID: b.tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}, rows)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rejected) > 0 {
		t.Fatalf("rejected: %+v", res.Rejected)
	}
	b.drain(t)
}

// drain runs the feed's consumers, then the outbox's, until both caught
// up.
func (b *bundle) drain(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		fp, err := b.feed.Drain(context.Background(), b.tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		op, err := b.outbox.Drain(context.Background(), b.tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		var dead []outbox.DeadLetter
		_ = b.db.ReadTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
			dead, err = outbox.DeadLetters(context.Background(), tx, b.tenant.ID, 10)
			return err
		})
		if len(dead) > 0 {
			t.Fatalf("the rewards consumer failed: %+v", dead)
		}
		if !fp && !op {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the feed or the outbox did not drain")
		}
	}
}

var evSeq atomic.Int64

func ev(typ event.Type, rep org.User, at time.Time) event.Event {
	return event.Event{Source: "crm", ExternalID: fmt.Sprintf("%s-%d", typ, evSeq.Add(1)), Type: typ, OccurredAt: at, RepExternalID: rep.ExternalID}
}

func dealWon(rep org.User, at time.Time, cents int64) event.Event {
	e := ev(event.DealWon, rep, at)
	e.OpportunityID, e.Amount, e.Currency, e.DealKind = "opp-"+e.ExternalID, cents, "EUR", "new"
	e.OpportunityCreatedAt = at.Add(-10 * 24 * time.Hour)
	e.Product = "platform"
	return e
}

func retracted(e event.Event) event.Event {
	e.Revision++
	e.Retracted = true
	return e
}

// grant gives a rep points through the manager.
func (b *bundle) grant(t *testing.T, rep org.User, points int64) {
	t.Helper()
	by := principal(b.manager)
	if !inTeam(rep, b.north) {
		by = b.admin
	}
	if _, err := b.svc.GrantPoints(context.Background(), by, reward.GrantRequest{UserID: rep.ID, Points: points, Reason: "bonus"}); err != nil {
		t.Fatal(err)
	}
}

func inTeam(u org.User, team org.Team) bool {
	for _, id := range u.TeamIDs {
		if id == team.ID {
			return true
		}
	}
	return false
}

// ledgerRow is a raw ledger row, for reference computations.
type ledgerRow struct {
	user, challenge uuid.UUID
	points          int64
	kind            string
}

// checkBalances compares every cached balance with a plain computation
// from the ledger and the settlements, and that none is negative.
func (b *bundle) checkBalances(t *testing.T) map[uuid.UUID]reward.Balance {
	t.Helper()
	ctx := context.Background()
	var rows []ledgerRow
	settled := map[uuid.UUID]bool{}
	cached := map[uuid.UUID]reward.Balance{}
	err := b.db.ReadTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		rs, err := tx.Query(ctx, `SELECT user_id, coalesce(challenge_id, '00000000-0000-0000-0000-000000000000'), points, kind FROM points_ledger`)
		if err != nil {
			return err
		}
		var r ledgerRow
		if _, err := pgx.ForEachRow(rs, []any{&r.user, &r.challenge, &r.points, &r.kind}, func() error { rows = append(rows, r); return nil }); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, `SELECT challenge_id FROM wallet_settlements`)
		if err != nil {
			return err
		}
		var c uuid.UUID
		if _, err := pgx.ForEachRow(rs, []any{&c}, func() error { settled[c] = true; return nil }); err != nil {
			return err
		}
		rs, err = tx.Query(ctx, `SELECT user_id, spendable, lifetime, pending FROM wallet_balances`)
		if err != nil {
			return err
		}
		var u uuid.UUID
		var bal reward.Balance
		_, err = pgx.ForEachRow(rs, []any{&u, &bal.Spendable, &bal.Lifetime, &bal.Pending}, func() error { cached[u] = bal; return nil })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[uuid.UUID]reward.Balance{}
	for _, r := range rows {
		w := want[r.user]
		if r.kind != "redemption" && r.kind != "refund" {
			w.Lifetime += r.points
		}
		if r.challenge != uuid.Nil && !settled[r.challenge] {
			w.Pending += r.points
		} else {
			w.Spendable += r.points
		}
		want[r.user] = w
	}
	for u, w := range want {
		if cached[u] != w {
			t.Fatalf("balance of %s: cached %+v, ledger says %+v", u, cached[u], w)
		}
		if w.Spendable < 0 {
			t.Fatalf("balance of %s below zero: %+v", u, w)
		}
	}
	for u, c := range cached {
		if _, ok := want[u]; !ok && c != (reward.Balance{}) {
			t.Fatalf("balance of %s without ledger entries: %+v", u, c)
		}
	}
	return want
}

func wantCode(t *testing.T, err error, code rallye.Code) {
	t.Helper()
	if got := rallye.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	e, ok := rallye.AsError(err)
	if !ok || e.Reason != reason {
		t.Fatalf("error %v: want reason %s", err, reason)
	}
}

func intp(n int) *int { return &n }

// item creates a catalogue item.
func (b *bundle) item(t *testing.T, cost int64, stock *int, approval bool) reward.Item {
	t.Helper()
	it, err := b.svc.CreateItem(context.Background(), b.admin, reward.ItemInput{
		Name: reward.Text{FR: "Carte cadeau", EN: "Gift card"}, Cost: cost, Stock: stock, ApprovalRequired: approval,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// wallet reads a person's wallet as themselves.
func (b *bundle) wallet(t *testing.T, u org.User) reward.Wallet {
	t.Helper()
	w, err := b.svc.Wallet(context.Background(), principal(u), uuid.Nil, 20)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (b *bundle) userByID(t *testing.T, id uuid.UUID) org.User {
	t.Helper()
	for _, u := range append([]org.User{b.manager, b.hr}, b.reps...) {
		if u.ID == id {
			return u
		}
	}
	t.Fatalf("no person %s", id)
	return org.User{}
}
