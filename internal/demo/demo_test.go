package demo_test

import (
	"context"
	"testing"

	"github.com/rallyehq/rallye/internal/demo"
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
