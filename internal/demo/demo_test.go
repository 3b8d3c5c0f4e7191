package demo_test

import (
	"context"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/demo"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
	"github.com/rallyehq/rallye/internal/testutil"
)

func TestSeedIsIdempotent(t *testing.T) {
	svc := org.NewService(testutil.DB(t))
	ctx := context.Background()
	first, err := demo.Seed(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	second, err := demo.Seed(ctx, svc)
	if err != nil {
		t.Fatal(err)
	}
	if first.Tenant.ID != second.Tenant.ID || len(first.Teams) != len(second.Teams) || len(first.People) != len(second.People) {
		t.Fatalf("seeding twice changed the company: %d/%d teams, %d/%d people",
			len(first.Teams), len(second.Teams), len(first.People), len(second.People))
	}
	for i := range first.Teams {
		if first.Teams[i].ID != second.Teams[i].ID {
			t.Fatalf("team %d recreated", i)
		}
	}
	roles := map[rallye.Role]int{}
	for _, p := range second.People {
		for _, r := range p.Roles {
			roles[r]++
		}
	}
	for _, r := range rallye.PersonRoles {
		if roles[r] == 0 {
			t.Errorf("the demo company has no %s", r)
		}
	}
}

func TestSeedChallengeIsIdempotent(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	jobs, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	svc := challenge.New(challenge.Deps{DB: db, Jobs: jobs})
	res, err := demo.Seed(ctx, org.NewService(db))
	if err != nil {
		t.Fatal(err)
	}
	store := event.NewStore(db)
	first, err := demo.SeedChallenge(ctx, svc, store, res)
	if err != nil {
		t.Fatal(err)
	}
	second, err := demo.SeedChallenge(ctx, svc, store, res)
	if err != nil {
		t.Fatal(err)
	}
	if first.ID != second.ID || first.State != challenge.StateScheduled || first.TemplateKey != "upsell" {
		t.Fatalf("seeding twice: %v then %v (%s)", first.ID, second.ID, first.State)
	}
	stored, err := store.List(ctx, rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}, event.ListRequest{Size: 100})
	if err != nil || len(stored) != 7 {
		t.Fatalf("%d demo events, %v", len(stored), err)
	}
}
