package org_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/postgres"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

type bundle struct {
	db  *postgres.DB
	svc *org.Service
	op  rallye.Principal
	t   org.Tenant
}

func setup(t *testing.T) bundle {
	t.Helper()
	db := testutil.DB(t)
	svc := org.NewService(db)
	return bundle{db: db, svc: svc}.withCompany(t, "acme")
}

func (b bundle) withCompany(t *testing.T, slug string) bundle {
	t.Helper()
	tenant, admin, err := b.svc.CreateTenant(context.Background(), org.NewTenant{
		Name: slug, Slug: slug, TimeZone: "Europe/Paris", DefaultLocale: org.LocaleFR,
		Admin: org.UserInput{DisplayName: "Admin", Email: "admin@" + slug + ".test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.t = tenant
	b.op = rallye.Principal{TenantID: tenant.ID, UserID: admin.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	return b
}

func wantCode(t *testing.T, err error, code rallye.Code) {
	t.Helper()
	if got := rallye.ErrorCode(err); got != code {
		t.Fatalf("got %q (%v), want %q", got, err, code)
	}
}

func rep(n int, teams ...uuid.UUID) org.UserInput {
	return org.UserInput{
		DisplayName: fmt.Sprintf("Rep %d", n), Email: fmt.Sprintf("rep%d@acme.test", n), Locale: org.LocaleFR,
		ExternalID: fmt.Sprintf("crm-%d", n), Roles: []rallye.Role{rallye.RoleRep}, TeamIDs: teams,
	}
}

func TestCreateTenant(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		in    org.NewTenant
		code  rallye.Code
		field string
	}{
		{"ErrSlugTaken", org.NewTenant{Name: "X", Slug: "acme", TimeZone: "UTC", DefaultLocale: org.LocaleEN,
			Admin: org.UserInput{DisplayName: "A", Email: "a@x.test"}}, rallye.CodeAlreadyExists, "slug"},
		{"ErrBadSlug", org.NewTenant{Name: "X", Slug: "Not A Slug", TimeZone: "UTC", DefaultLocale: org.LocaleEN,
			Admin: org.UserInput{DisplayName: "A", Email: "a@x.test"}}, rallye.CodeInvalid, "slug"},
		{"ErrBadTimeZone", org.NewTenant{Name: "X", Slug: "x1", TimeZone: "Europe/Atlantis", DefaultLocale: org.LocaleEN,
			Admin: org.UserInput{DisplayName: "A", Email: "a@x.test"}}, rallye.CodeInvalid, "time_zone"},
		{"ErrBadAdminEmail", org.NewTenant{Name: "X", Slug: "x2", TimeZone: "UTC", DefaultLocale: org.LocaleEN,
			Admin: org.UserInput{DisplayName: "A", Email: "nope"}}, rallye.CodeInvalid, "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := b.svc.CreateTenant(ctx, tt.in)
			wantCode(t, err, tt.code)
			if e, _ := rallye.AsError(err); e.Field != tt.field {
				t.Fatalf("field = %q, want %q", e.Field, tt.field)
			}
		})
	}
	tenants, err := b.svc.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tenants) != 1 {
		t.Fatalf("a failed creation left a company behind: %d companies", len(tenants))
	}
}

func TestCreateTeamIsIdempotentUnderConcurrency(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	const callers = 16
	ids := make([]uuid.UUID, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			team, err := b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "Nord", RequestID: "req-1"})
			ids[i], errs[i] = team.ID, err
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("caller %d got team %s, caller 0 got %s", i, ids[i], ids[0])
		}
	}
	teams, err := b.svc.ListTeams(ctx, b.op, org.ListTeamsRequest{Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(teams) != 1 {
		t.Fatalf("%d teams exist, want 1", len(teams))
	}
	_, err = b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "Sud", RequestID: "req-1"})
	wantCode(t, err, rallye.CodeInvalid)
}

func TestTeamTree(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	root, err := b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "France"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "Nord", ParentID: root.ID})
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "Lille", ParentID: child.ID})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ErrCycle", func(t *testing.T) {
		_, err := b.svc.UpdateTeam(ctx, b.op, root.ID, org.TeamPatch{ParentID: &grandchild.ID})
		wantCode(t, err, rallye.CodeFailedPrecondition)
		_, err = b.svc.UpdateTeam(ctx, b.op, root.ID, org.TeamPatch{ParentID: &root.ID})
		wantCode(t, err, rallye.CodeFailedPrecondition)
	})
	t.Run("ErrActiveChildren", func(t *testing.T) {
		_, err := b.svc.DeactivateTeam(ctx, b.op, child.ID)
		wantCode(t, err, rallye.CodeFailedPrecondition)
	})
	t.Run("DescendantsOfRoot", func(t *testing.T) {
		var got []uuid.UUID
		err := b.db.ReadTenant(ctx, b.t.ID, func(tx pgx.Tx) error {
			var err error
			got, err = org.TeamAndDescendants(ctx, tx, b.t.ID, []uuid.UUID{root.ID})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("descendants = %v, want the 3 teams", got)
		}
	})
	t.Run("MoveToTopLevel", func(t *testing.T) {
		none := uuid.Nil
		moved, err := b.svc.UpdateTeam(ctx, b.op, grandchild.ID, org.TeamPatch{ParentID: &none})
		if err != nil {
			t.Fatal(err)
		}
		if moved.ParentID != uuid.Nil {
			t.Fatalf("parent = %s", moved.ParentID)
		}
		if _, err := b.svc.DeactivateTeam(ctx, b.op, grandchild.ID); err != nil {
			t.Fatal(err)
		}
		again, err := b.svc.DeactivateTeam(ctx, b.op, grandchild.ID)
		if err != nil || again.Active {
			t.Fatalf("deactivating twice: %v %v", again, err)
		}
	})
}

func TestUsers(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	team, err := b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := b.svc.CreateUser(ctx, b.op, org.CreateUserRequest{User: rep(1, team.ID)})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ErrEmailTakenIgnoringCase", func(t *testing.T) {
		in := rep(2)
		in.Email = "REP1@acme.test"
		_, err := b.svc.CreateUser(ctx, b.op, org.CreateUserRequest{User: in})
		wantCode(t, err, rallye.CodeAlreadyExists)
	})
	t.Run("ErrExternalIDTaken", func(t *testing.T) {
		in := rep(3)
		in.ExternalID = "crm-1"
		_, err := b.svc.CreateUser(ctx, b.op, org.CreateUserRequest{User: in})
		wantCode(t, err, rallye.CodeAlreadyExists)
	})
	t.Run("ErrUnknownTeam", func(t *testing.T) {
		_, err := b.svc.CreateUser(ctx, b.op, org.CreateUserRequest{User: rep(4, uuid.New())})
		wantCode(t, err, rallye.CodeNotFound)
	})
	t.Run("UpdateKeepsUnmaskedFields", func(t *testing.T) {
		name := "Camille"
		got, err := b.svc.UpdateUser(ctx, b.op, u.ID, org.UserPatch{DisplayName: &name})
		if err != nil {
			t.Fatal(err)
		}
		if got.DisplayName != name || got.Email != u.Email || len(got.TeamIDs) != 1 {
			t.Fatalf("update = %+v", got)
		}
	})
	t.Run("ErrDeactivateSelf", func(t *testing.T) {
		_, err := b.svc.DeactivateUser(ctx, b.op, b.op.UserID)
		wantCode(t, err, rallye.CodeFailedPrecondition)
	})
	t.Run("ListByTeamAndPages", func(t *testing.T) {
		for i := 10; i < 15; i++ {
			if _, err := b.svc.CreateUser(ctx, b.op, org.CreateUserRequest{User: rep(i, team.ID)}); err != nil {
				t.Fatal(err)
			}
		}
		var seen []uuid.UUID
		cursor := page.Cursor{}
		for {
			users, err := b.svc.ListUsers(ctx, b.op, org.ListUsersRequest{Size: 2, Cursor: cursor, TeamID: team.ID})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range users {
				seen = append(seen, u.ID)
			}
			if len(users) == 0 {
				break
			}
			next := page.Next(users[len(users)-1].ID, len(users), 2)
			if next == "" {
				break
			}
			cursor, _ = page.Decode(next)
		}
		if len(seen) != 6 {
			t.Fatalf("paged through %d members, want 6", len(seen))
		}
		for i := 1; i < len(seen); i++ {
			if seen[i].String() <= seen[i-1].String() {
				t.Fatal("pages overlap or are out of order")
			}
		}
	})
}

func TestImportUsers(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	team, err := b.svc.CreateTeam(ctx, b.op, org.CreateTeamRequest{Name: "Nord"})
	if err != nil {
		t.Fatal(err)
	}
	rows := []org.ImportRow{{User: rep(1, team.ID)}, {User: rep(2)}, {User: rep(3, uuid.New())}, {User: rep(4)}}
	noExt := rep(5)
	noExt.ExternalID = ""
	rows = append(rows, org.ImportRow{User: noExt})

	first, err := b.svc.ImportUsers(ctx, b.op, rows)
	if err != nil {
		t.Fatal(err)
	}
	if first.Created != 3 || first.Updated != 0 || len(first.Rejected) != 2 {
		t.Fatalf("first import = %+v", first)
	}
	if first.Rejected[0].Index != 2 || first.Rejected[0].Field != "team_ids" || first.Rejected[1].Index != 4 || first.Rejected[1].Field != "external_id" {
		t.Fatalf("rejections = %+v", first.Rejected)
	}

	replay, err := b.svc.ImportUsers(ctx, b.op, rows)
	if err != nil {
		t.Fatal(err)
	}
	if replay.Created != 0 || replay.Updated != 0 || replay.Unchanged != 3 {
		t.Fatalf("replay changed something: %+v", replay)
	}

	rows[1].User.DisplayName = "Renamed"
	rows[3].User.TeamIDs = []uuid.UUID{team.ID}
	changed, err := b.svc.ImportUsers(ctx, b.op, rows)
	if err != nil {
		t.Fatal(err)
	}
	if changed.Updated != 2 || changed.Unchanged != 1 {
		t.Fatalf("second import = %+v", changed)
	}
}

func TestConcurrentImportsCreateEachPersonOnce(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	var rows []org.ImportRow
	for i := range 50 {
		rows = append(rows, org.ImportRow{User: rep(i)})
	}
	const importers = 6
	results := make([]org.ImportResult, importers)
	errs := make([]error, importers)
	var wg sync.WaitGroup
	for i := range importers {
		wg.Go(func() { results[i], errs[i] = b.svc.ImportUsers(ctx, b.op, rows) })
	}
	wg.Wait()
	created, unchanged := 0, 0
	for i := range importers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if len(results[i].Rejected) > 0 {
			t.Fatalf("importer %d rejected rows: %+v", i, results[i].Rejected)
		}
		created += results[i].Created
		unchanged += results[i].Unchanged
	}
	if created != len(rows) || unchanged != len(rows)*(importers-1) {
		t.Fatalf("created %d, unchanged %d; want %d and %d", created, unchanged, len(rows), len(rows)*(importers-1))
	}
}

// TestRowLevelSecurity checks the second wall: even a query that forgets its
// tenant condition sees one company only, and nothing outside a scope.
func TestRowLevelSecurity(t *testing.T) {
	a := setup(t)
	ctx := context.Background()
	g := a.withCompany(t, "globex")
	for _, bb := range []bundle{a, g} {
		if _, err := bb.svc.CreateUser(ctx, bb.op, org.CreateUserRequest{User: org.UserInput{
			DisplayName: "P", Email: "p@" + bb.t.Slug + ".test", Locale: org.LocaleEN, Roles: []rallye.Role{rallye.RoleRep},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	countUsers := func(scope func(postgres.TxFunc) error) (n int) {
		t.Helper()
		if err := scope(func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n) // no tenant condition on purpose
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := countUsers(func(f postgres.TxFunc) error { return a.db.ReadTenant(ctx, a.t.ID, f) }); n != 2 {
		t.Fatalf("acme sees %d people, want its 2", n)
	}
	if n := countUsers(func(f postgres.TxFunc) error { return a.db.AcrossTenants(ctx, f) }); n != 4 {
		t.Fatalf("across tenants sees %d people, want 4", n)
	}
	var unscoped int
	if err := a.db.Pool.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&unscoped); err != nil {
		t.Fatal(err)
	}
	if unscoped != 0 {
		t.Fatalf("an unscoped query sees %d people, want 0", unscoped)
	}
	err := a.db.InTenant(ctx, a.t.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO teams (tenant_id, id, name) VALUES ($1, $2, 'smuggled')`, g.t.ID, uuid.New())
		return err
	})
	if err == nil {
		t.Fatal("acme wrote a team into globex")
	}
}
