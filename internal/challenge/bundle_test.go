package challenge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
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
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

// clock is the injected clock: tests set it to the exact instants they
// check.
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

// boardsView reads what the leaderboard recorded for a challenge, from
// PostgreSQL (its ledger and boards).
type boardsView struct {
	db     *postgres.DB
	tenant uuid.UUID
}

func (v boardsView) query(t *testing.T, sql string, dest any, args ...any) {
	t.Helper()
	err := v.db.ReadTenant(context.Background(), v.tenant, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), sql, args...).Scan(dest)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// points is a person's total on a challenge's individual board.
func (v boardsView) points(t *testing.T, challengeID, user uuid.UUID) int64 {
	t.Helper()
	var n int64
	v.query(t, `SELECT coalesce(sum(points), 0)::bigint FROM points_ledger WHERE tenant_id = $1 AND challenge_id = $2 AND user_id = $3`,
		&n, v.tenant, challengeID, user)
	return n
}

// players counts the people on a challenge's boards (-1: no boards).
func (v boardsView) players(t *testing.T, challengeID uuid.UUID) int {
	t.Helper()
	var boards, n int
	v.query(t, `SELECT count(*) FROM boards WHERE tenant_id = $1 AND challenge_id = $2`, &boards, v.tenant, challengeID)
	if boards == 0 {
		return -1
	}
	v.query(t, `SELECT count(*) FROM challenge_participants WHERE tenant_id = $1 AND challenge_id = $2`, &n, v.tenant, challengeID)
	return n
}

// frozen reports whether every board of a challenge is frozen.
func (v boardsView) frozen(t *testing.T, challengeID uuid.UUID) bool {
	t.Helper()
	var f bool
	v.query(t, `SELECT coalesce(bool_and(frozen_at IS NOT NULL), false) FROM boards WHERE tenant_id = $1 AND challenge_id = $2`,
		&f, v.tenant, challengeID)
	return f
}

// bundle is a company with teams and people, the event store and feed, the
// challenge service wired to the real leaderboard (PostgreSQL and a private
// Redis prefix) with an injected clock, and a River client that only
// inserts (tests run the jobs themselves).
type bundle struct {
	db      *postgres.DB
	org     *org.Service
	svc     *challenge.Service
	events  *event.Store
	feed    *event.Feed
	boards  boardsView
	lb      *leaderboard.Service
	scores  *countingScores // the leaderboard seam, counting receipts
	clock   *clock
	tenant  org.Tenant
	admin   rallye.Principal
	north   org.Team
	south   org.Team
	sales   org.Team // parent of north and south
	manager org.User // manages north
	reps    []org.User
	hr      org.User
}

// t0 is a Monday morning in Paris; challenges in the tests start at t0+1h.
var t0 = time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	db := testutil.DB(t)
	b := &bundle{db: db, org: org.NewService(db), events: event.NewStore(db), clock: &clock{t: t0}}
	jobs, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rdb, keys := testutil.Redis(t)
	lb := leaderboard.New(leaderboard.Deps{DB: db, Redis: rdb, Keys: keys, Log: quiet, Now: b.clock.Now})
	lb.SetJobs(jobs)
	t.Cleanup(lb.Close)
	seam := challenge.LeaderboardSeam{LB: lb}
	b.lb, b.scores = lb, &countingScores{inner: seam}
	b.svc = challenge.New(challenge.Deps{DB: db, Jobs: jobs, Scores: b.scores, Boards: seam, Now: b.clock.Now})
	b.feed = event.NewFeed(db, quiet)
	b.feed.Register(b.svc.Progress())

	var admin org.User
	b.tenant, admin, err = b.org.CreateTenant(ctx, org.NewTenant{Name: "Acme", Slug: "acme", TimeZone: "Europe/Paris",
		DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Admin", Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	b.admin = rallye.Principal{TenantID: b.tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	b.boards = boardsView{db: db, tenant: b.tenant.ID}
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
	b.manager = b.person(t, "manager", org.LocaleFR, []rallye.Role{rallye.RoleManager}, b.north)
	b.hr = b.person(t, "hr", org.LocaleFR, []rallye.Role{rallye.RoleHR})
	for i := range 4 {
		team := b.north
		if i >= 2 {
			team = b.south
		}
		locale := org.LocaleFR
		if i%2 == 1 {
			locale = org.LocaleEN
		}
		b.reps = append(b.reps, b.person(t, fmt.Sprintf("rep%d", i), locale, []rallye.Role{rallye.RoleRep}, team))
	}
	// Everyone joined their team long before the tests' clock.
	b.joinedAt(t, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), uuid.Nil)
	return b
}

// joinedAt sets when people joined their teams (all of them for uuid.Nil):
// the database stamps memberships with its own clock.
func (b *bundle) joinedAt(t *testing.T, at time.Time, user uuid.UUID) {
	t.Helper()
	err := b.db.InTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `UPDATE team_members SET added_at = $2
			WHERE tenant_id = $1 AND ($3::uuid IS NULL OR user_id = $3)`, b.tenant.ID, at, nullable(user))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func nullable(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func (b *bundle) person(t *testing.T, name string, locale org.Locale, roles []rallye.Role, teams ...org.Team) org.User {
	t.Helper()
	in := org.UserInput{DisplayName: name, Email: name + "@acme.test", Locale: locale, ExternalID: "crm-" + name, Roles: roles}
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

// ingest stores events and drains the feed, as a server would on the
// notification.
func (b *bundle) ingest(t *testing.T, evs ...event.Event) event.Result {
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
	return res
}

func (b *bundle) drain(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending, err := b.feed.Drain(context.Background(), b.tenant.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the feed did not drain")
		}
	}
}

// job returns the newest job of a kind, decoded into args.
func (b *bundle) job(t *testing.T, kind string, args any) (scheduledAt time.Time) {
	t.Helper()
	var raw []byte
	err := b.db.Pool.QueryRow(context.Background(), `SELECT args, scheduled_at FROM river_job WHERE kind = $1 ORDER BY id DESC LIMIT 1`, kind).
		Scan(&raw, &scheduledAt)
	if err != nil {
		t.Fatalf("no %s job: %v", kind, err)
	}
	if err := json.Unmarshal(raw, args); err != nil {
		t.Fatal(err)
	}
	return scheduledAt
}

func (b *bundle) jobCount(t *testing.T, kind string) int {
	t.Helper()
	var n int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = $1`, kind).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var evSeq int

func ev(typ event.Type, rep org.User, at time.Time) event.Event {
	evSeq++
	return event.Event{Source: "crm", ExternalID: fmt.Sprintf("%s-%d", typ, evSeq), Type: typ, OccurredAt: at, RepExternalID: rep.ExternalID}
}

func dealWon(rep org.User, at time.Time, cents int64, kind string) event.Event {
	e := ev(event.DealWon, rep, at)
	e.OpportunityID, e.Amount, e.Currency, e.DealKind = "opp-"+e.ExternalID, cents, "EUR", kind
	e.OpportunityCreatedAt = at.Add(-10 * 24 * time.Hour)
	e.Product = "platform"
	return e
}

func meetingHeld(rep org.User, at time.Time) event.Event { return ev(event.MeetingHeld, rep, at) }

// upsell creates and publishes the upsell template for the north team,
// starting an hour from the clock's now, for a week.
func (b *bundle) upsell(t *testing.T, adjust ...challenge.MissionAdjustment) *challenge.Challenge {
	t.Helper()
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.CreateFromTemplate(context.Background(), principal(b.manager), challenge.FromTemplateRequest{
		TemplateKey: "upsell", TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start,
		EndsAt: start.Add(7 * 24 * time.Hour), Adjustments: adjust, Publish: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start runs the start job at its instant.
func (b *bundle) start(t *testing.T, c *challenge.Challenge) {
	t.Helper()
	var a challenge.StartArgs
	b.job(t, "challenge.start", &a)
	b.clock.Set(c.StartsAt)
	if retry, err := b.svc.Start(context.Background(), a); err != nil || retry != 0 {
		t.Fatalf("start: retry %v, %v", retry, err)
	}
}

// stored is the state the lifecycle wrote (reads show the clock's, see
// Challenge.StateAt).
func (b *bundle) stored(t *testing.T, id uuid.UUID) challenge.State {
	t.Helper()
	var st challenge.State
	err := b.db.ReadTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT state FROM challenges WHERE id = $1`, id).Scan(&st)
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (b *bundle) get(t *testing.T, p rallye.Principal, id uuid.UUID) *challenge.Detail {
	t.Helper()
	d, err := b.svc.Get(context.Background(), p, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mission(t *testing.T, d *challenge.Detail, key string) challenge.MissionView {
	t.Helper()
	if d.Me == nil {
		t.Fatal("not a participant")
	}
	for _, m := range d.Me.Missions {
		if m.Key == key {
			return m
		}
	}
	t.Fatalf("no mission %s", key)
	return challenge.MissionView{}
}

func wantCode(t *testing.T, err error, code rallye.Code) {
	t.Helper()
	if got := rallye.ErrorCode(err); got != code {
		t.Fatalf("error %v: code %q, want %q", err, got, code)
	}
}
