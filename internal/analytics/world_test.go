package analytics_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/analytics"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

// now is the tests' clock: every generated challenge has ended.
var now = time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)

var paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(err)
	}
	return loc
}()

// genPerson is a generated person as the reference sees them.
type genPerson struct {
	id    uuid.UUID
	name  string
	teams []uuid.UUID // sorted
	hire  time.Time
}

type genChallenge struct {
	id         uuid.UUID
	teams      []uuid.UUID
	users      []uuid.UUID
	start, end time.Time
	missions   []uuid.UUID
	enrolled   map[uuid.UUID]uuid.UUID // person -> team played for (uuid.Nil: none)
}

// genActivity is one sign of activity: a scored event (missions 0), a
// mission completion (missions 1) or a submission (points 0).
type genActivity struct {
	challenge, user uuid.UUID
	at              time.Time
	points          int64
	missions        int
	revoked         bool
}

// world is a generated company: teams North, South (with South-East below
// it) and West, reps with random hire dates, three challenges written as
// rows, and random activity.
type world struct {
	db         *postgres.DB
	org        *org.Service
	svc        *analytics.Service
	tenant     org.Tenant
	admin      rallye.Principal
	hr         rallye.Principal
	manager    rallye.Principal // of South (and South-East)
	north      org.Team
	south      org.Team
	southEast  org.Team
	west       org.Team
	people     []*genPerson
	byID       map[uuid.UUID]*genPerson
	challenges []*genChallenge
	acts       []genActivity
}

func newWorld(t *testing.T, seed uint64, reps int) *world {
	t.Helper()
	ctx := context.Background()
	db := testutil.DB(t)
	w := &world{db: db, org: org.NewService(db), svc: analytics.New(db), byID: map[uuid.UUID]*genPerson{}}
	w.svc.SetClock(func() time.Time { return now })
	rng := rand.New(rand.NewPCG(seed, 16))
	tenant, admin, err := w.org.CreateTenant(ctx, org.NewTenant{Name: "Acme", Slug: fmt.Sprintf("acme-%d", seed%1000),
		TimeZone: "Europe/Paris", DefaultLocale: org.LocaleFR, Admin: org.UserInput{DisplayName: "Admin", Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	w.tenant = tenant
	w.admin = rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	team := func(name string, parent uuid.UUID) org.Team {
		tm, err := w.org.CreateTeam(ctx, w.admin, org.CreateTeamRequest{Name: name, ParentID: parent})
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	w.north, w.south, w.west = team("Nord", uuid.Nil), team("Sud", uuid.Nil), team("Ouest", uuid.Nil)
	w.southEast = team("Sud-Est", w.south.ID)
	person := func(name string, roles []rallye.Role, hire time.Time, teams ...uuid.UUID) org.User {
		u, err := w.org.CreateUser(ctx, w.admin, org.CreateUserRequest{User: org.UserInput{
			DisplayName: name, Email: fmt.Sprintf("%s@acme.test", uuid.NewString()[:8]), Locale: org.LocaleFR,
			Roles: roles, TeamIDs: teams, HireDate: hire}})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	hr := person("Hélène RH", []rallye.Role{rallye.RoleHR}, time.Time{})
	w.hr = rallye.Principal{TenantID: tenant.ID, UserID: hr.ID, Roles: []rallye.Role{rallye.RoleHR}}
	mgr := person("Sophie Manager", []rallye.Role{rallye.RoleManager}, time.Time{}, w.south.ID)
	w.manager = rallye.Principal{TenantID: tenant.ID, UserID: mgr.ID, Roles: []rallye.Role{rallye.RoleManager}}
	homes := []uuid.UUID{w.north.ID, w.south.ID, w.southEast.ID, w.west.ID}
	for i := range reps {
		var hire time.Time
		if rng.IntN(6) > 0 {
			hire = now.AddDate(0, 0, -rng.IntN(6*365)).Truncate(24 * time.Hour)
		}
		teams := []uuid.UUID{homes[rng.IntN(len(homes))]}
		if rng.IntN(10) == 0 {
			teams = append(teams, homes[rng.IntN(len(homes))])
		}
		slices.SortFunc(teams, func(a, b uuid.UUID) int { return compareID(a, b) })
		teams = slices.Compact(teams)
		u := person(fmt.Sprintf("Rep %03d é", i), []rallye.Role{rallye.RoleRep}, hire, teams...)
		p := &genPerson{id: u.ID, name: u.DisplayName, teams: teams, hire: hire}
		w.people = append(w.people, p)
		w.byID[p.id] = p
	}

	day := 24 * time.Hour
	base := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	named := []uuid.UUID{w.people[0].id, w.people[1].id, w.people[2].id}
	w.challenges = []*genChallenge{
		{teams: []uuid.UUID{w.north.ID}, start: base, end: base.Add(28 * day)},
		{teams: []uuid.UUID{w.south.ID}, start: base.Add(8 * day), end: base.Add(40 * day)},
		{teams: []uuid.UUID{w.north.ID, w.west.ID}, users: named, start: base.Add(20 * day), end: base.Add(50 * day)},
	}
	err = db.InTenant(ctx, tenant.ID, func(tx pgx.Tx) error {
		for ci, c := range w.challenges {
			c.id = uuid.Must(uuid.NewV7())
			c.enrolled = map[uuid.UUID]uuid.UUID{}
			if _, err := tx.Exec(ctx, `INSERT INTO challenges (tenant_id, id, kind, definition, state, team_ids, user_ids,
					starts_at, ends_at, time_zone) VALUES ($1, $2, 'custom', '{}', 'ended', $3, $4, $5, $6, 'Europe/Paris')`,
				tenant.ID, c.id, c.teams, append([]uuid.UUID{}, c.users...), c.start, c.end); err != nil {
				return err
			}
			for m := range 2 + ci {
				id := uuid.Must(uuid.NewV7())
				c.missions = append(c.missions, id)
				if _, err := tx.Exec(ctx, `INSERT INTO challenge_missions (tenant_id, challenge_id, id, position, key, definition)
					VALUES ($1, $2, $3, $4, $5, '{}')`, tenant.ID, c.id, id, m, fmt.Sprintf("m%d", m)); err != nil {
					return err
				}
			}
			for _, p := range w.people {
				if !w.invitedTo(c, p) || rng.IntN(10) < 3 {
					continue
				}
				team := w.playsFor(c, p)
				c.enrolled[p.id] = team
				if _, err := tx.Exec(ctx, `INSERT INTO challenge_enrollments (tenant_id, challenge_id, user_id, team_id, via,
						enrolled_at, counts_from) VALUES ($1, $2, $3, $4, 'auto', $5, $5)`,
					tenant.ID, c.id, p.id, nullID(team), c.start); err != nil {
					return err
				}
				// Some are never active; the others act on random days,
				// a few only in the first week (drop-off).
				kind := rng.IntN(4)
				if kind == 0 {
					continue
				}
				span := c.end.Sub(c.start)
				if kind == 1 {
					span = 6 * day
				}
				for range 1 + rng.IntN(8) {
					at := c.start.Add(time.Duration(rng.Int64N(int64(span))))
					a := genActivity{challenge: c.id, user: p.id, at: at, points: int64(rng.IntN(50))}
					switch rng.IntN(5) {
					case 0:
						a.missions, a.points = 1, int64(100+rng.IntN(3)*50)
						a.revoked = rng.IntN(6) == 0
					case 1:
						a.points = 0
						a.missions = -1 // a submission
					}
					w.acts = append(w.acts, a)
				}
			}
		}
		for i, a := range w.acts {
			c := w.challenge(a.challenge)
			switch a.missions {
			case 0:
				_, err := tx.Exec(ctx, `INSERT INTO challenge_contributions (tenant_id, challenge_id, version_id, user_id, occurred_at,
					points, missions) VALUES ($1, $2, $3, $4, $5, $6, '{}')`, tenant.ID, a.challenge, uuid.New(), a.user, a.at, a.points)
				if err != nil {
					return err
				}
			case 1:
				var revoked *time.Time
				if a.revoked {
					revoked = &a.at
				}
				_, err := tx.Exec(ctx, `INSERT INTO challenge_awards (tenant_id, challenge_id, mission_id, user_id, ordinal, subject_id,
					points, awarded_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $4, $6, $7, $8)`,
					tenant.ID, a.challenge, c.missions[0], a.user, i, a.points, a.at, revoked)
				if err != nil {
					return err
				}
			default:
				_, err := tx.Exec(ctx, `INSERT INTO mission_submissions (tenant_id, id, challenge_id, mission_id, user_id, state,
					submitted_at) VALUES ($1, $2, $3, $4, $5, 'rejected', $6)`, tenant.ID, uuid.New(), a.challenge, c.missions[0], a.user, a.at)
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) challenge(id uuid.UUID) *genChallenge {
	for _, c := range w.challenges {
		if c.id == id {
			return c
		}
	}
	panic("no challenge " + id.String())
}

// under reports whether team is root or below it.
func (w *world) under(team, root uuid.UUID) bool {
	return team == root || root == w.south.ID && team == w.southEast.ID
}

// invitedTo: a rep of one of the challenge's teams (or below), or named.
func (w *world) invitedTo(c *genChallenge, p *genPerson) bool {
	if slices.Contains(c.users, p.id) {
		return true
	}
	for _, t := range p.teams {
		for _, ct := range c.teams {
			if w.under(t, ct) {
				return true
			}
		}
	}
	return false
}

// playsFor: the challenge's team that contains them, else their first team.
func (w *world) playsFor(c *genChallenge, p *genPerson) uuid.UUID {
	for _, t := range p.teams {
		for _, ct := range c.teams {
			if w.under(t, ct) {
				return ct
			}
		}
	}
	if len(p.teams) > 0 {
		return p.teams[0]
	}
	return uuid.Nil
}

func nullID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

func compareID(a, b uuid.UUID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}
