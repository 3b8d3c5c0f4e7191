package leaderboard_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/leaderboard"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/redisdb"
	"github.com/rallyehq/rallye/internal/testutil"
)

type bundle struct {
	db     *postgres.DB
	rdb    redis.UniversalClient
	keys   redisdb.Keyspace
	svc    *leaderboard.Service
	org    *org.Service
	tenant org.Tenant
	op     rallye.Principal
	events *eventLog
}

// eventLog collects Overtaken events.
type eventLog struct {
	mu     sync.Mutex
	events []leaderboard.Overtaken
}

func (l *eventLog) Overtaken(_ context.Context, e leaderboard.Overtaken) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) all() []leaderboard.Overtaken {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t *testing.T) bundle {
	t.Helper()
	db := testutil.DB(t)
	rdb, keys := testutil.Redis(t)
	b := bundle{db: db, rdb: rdb, keys: keys, org: org.NewService(db), events: &eventLog{}}
	b.svc = b.newService(t, rdb)
	b.tenant, b.op = b.company(t, "acme")
	return b
}

// newService returns a service on the bundle's database and key prefix,
// with the given Redis client.
func (b bundle) newService(t *testing.T, rdb redis.UniversalClient) *leaderboard.Service {
	t.Helper()
	jobs, err := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	svc := leaderboard.New(leaderboard.Deps{DB: b.db, Redis: rdb, Keys: b.keys, Log: quiet(), Events: b.events})
	svc.SetJobs(jobs)
	t.Cleanup(svc.Close)
	return svc
}

func (b bundle) company(t *testing.T, slug string) (org.Tenant, rallye.Principal) {
	t.Helper()
	tenant, admin, err := b.org.CreateTenant(context.Background(), org.NewTenant{
		Name: slug, Slug: slug, TimeZone: "Europe/Paris", DefaultLocale: org.LocaleFR,
		Admin: org.UserInput{DisplayName: "Admin", Email: "admin@" + slug + ".test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tenant, rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
}

// people inserts n reps directly (fast) and returns their ids.
func (b bundle) people(t *testing.T, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	names := make([]string, n)
	emails := make([]string, n)
	for i := range ids {
		ids[i] = uuid.New()
		names[i] = fmt.Sprintf("Rep %s", ids[i].String()[:8])
		emails[i] = ids[i].String() + "@acme.test"
	}
	err := b.db.InTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), `INSERT INTO users (tenant_id, id, display_name, email, locale, roles)
			SELECT $1, unnest($2::uuid[]), unnest($3::text[]), unnest($4::text[]), 'fr', '{rep}'`, b.tenant.ID, ids, names, emails)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// challenge creates a challenge's boards and enrolls participants.
func (b bundle) challenge(t *testing.T, c leaderboard.ChallengeBoards, participants ...leaderboard.Participant) uuid.UUID {
	t.Helper()
	if c.ChallengeID == uuid.Nil {
		c.ChallengeID = uuid.New()
	}
	err := b.db.InTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
		if err := b.svc.Boards.CreateChallengeBoards(context.Background(), tx, b.tenant.ID, c); err != nil {
			return err
		}
		return b.svc.Boards.Enroll(context.Background(), tx, b.tenant.ID, c.ChallengeID, participants)
	})
	if err != nil {
		t.Fatal(err)
	}
	return c.ChallengeID
}

func enrolled(users []uuid.UUID) []leaderboard.Participant {
	out := make([]leaderboard.Participant, len(users))
	for i, u := range users {
		out[i] = leaderboard.Participant{UserID: u}
	}
	return out
}

// record records entries in one transaction and publishes them.
func (b bundle) record(t *testing.T, entries ...leaderboard.Entry) leaderboard.Receipt {
	t.Helper()
	r, err := b.tryRecord(b.svc, entries...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (b bundle) tryRecord(svc *leaderboard.Service, entries ...leaderboard.Entry) (leaderboard.Receipt, error) {
	ctx := context.Background()
	var r leaderboard.Receipt
	err := b.db.InTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		var err error
		r, err = svc.Scores.Record(ctx, tx, b.tenant.ID, entries)
		return err
	})
	if err == nil {
		svc.Scores.Publish(ctx, r)
	}
	return r, err
}

func (b bundle) ranking(t *testing.T, req leaderboard.RankingRequest) leaderboard.Ranking {
	t.Helper()
	r, err := b.svc.Ranking(context.Background(), b.op, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantCode(t *testing.T, err error, code rallye.Code) {
	t.Helper()
	if got := rallye.ErrorCode(err); got != code {
		t.Fatalf("got %q (%v), want %q", got, err, code)
	}
}

// refEntry is a participant's total computed by the test from the entries
// it recorded, independently of the package.
type refEntry struct {
	id      uuid.UUID
	points  int64
	reached time.Time // zero: never scored
}

type refStanding struct {
	id       uuid.UUID
	points   int64
	position int64
	rank     int64
}

// reference ranks totals the plain way: more points first; then, on equal
// points, whoever reached them first (to the board's tick, never-scored
// last); then the higher id (Redis's order for equal scores).
func reference(rows []refEntry, start time.Time, tick time.Duration, shared bool) []refStanding {
	tickOf := func(r refEntry) int64 {
		if r.reached.IsZero() {
			return 1 << 62
		}
		if !r.reached.After(start) {
			return 0
		}
		return int64(r.reached.Sub(start) / tick)
	}
	sorted := slices.Clone(rows)
	slices.SortFunc(sorted, func(a, b refEntry) int {
		switch {
		case a.points != b.points:
			return cmpInt(b.points, a.points)
		case tickOf(a) != tickOf(b):
			return cmpInt(tickOf(a), tickOf(b))
		}
		return -bytes.Compare(a.id[:], b.id[:])
	})
	out := make([]refStanding, len(sorted))
	for i, r := range sorted {
		out[i] = refStanding{id: r.id, points: r.points, position: int64(i + 1), rank: int64(i + 1)}
		if shared && i > 0 && r.points == sorted[i-1].points {
			out[i].rank = out[i-1].rank
		}
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// totals sums entries per person.
func totals(base []uuid.UUID, entries []leaderboard.Entry) []refEntry {
	m := map[uuid.UUID]*refEntry{}
	var out []refEntry
	for _, id := range base {
		m[id] = &refEntry{id: id}
	}
	for _, e := range entries {
		r := m[e.UserID]
		if r == nil {
			r = &refEntry{id: e.UserID}
			m[e.UserID] = r
		}
		r.points += e.Points
		if e.At.After(r.reached) {
			r.reached = e.At
		}
	}
	for _, r := range m {
		out = append(out, *r)
	}
	return out
}

func orgTeam(name string) org.CreateTeamRequest { return org.CreateTeamRequest{Name: name} }

func keyspace(prefix string) redisdb.Keyspace { return redisdb.Keyspace{Prefix: prefix} }
