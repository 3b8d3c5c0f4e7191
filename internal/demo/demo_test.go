package demo_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/demo"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/kpi"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/period"
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

// TestSeedKPIsIsIdempotent seeds the demo's KPIs twice: the second run
// installs and ingests nothing, and the dashboards have values.
func TestSeedKPIsIsIdempotent(t *testing.T) {
	db := testutil.DB(t)
	ctx := context.Background()
	res, err := demo.Seed(ctx, org.NewService(db))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	kpis := kpi.NewService(db, nil, log)
	feed := event.NewFeed(db, log)
	feed.Register(kpis.Rollups())
	drains := 0
	a := demo.Activity{KPI: kpis, Events: event.NewStore(db), Now: time.Now(), Drain: func(ctx context.Context, id uuid.UUID) error {
		drains++
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			pending, err := feed.Drain(ctx, id)
			if err != nil || !pending {
				if err == nil {
					err = kpis.Backfill(ctx, id)
				}
				return err
			}
		}
		return errors.New("feed still pending")
	}}
	if err := demo.SeedKPIs(ctx, res, a); err != nil {
		t.Fatal(err)
	}
	marks, err := a.Events.Watermarks(ctx, res.Tenant.ID)
	if err != nil || len(marks) != 1 {
		t.Fatalf("watermarks %v %v", marks, err)
	}
	if err := demo.SeedKPIs(ctx, res, a); err != nil {
		t.Fatal(err)
	}
	again, err := a.Events.Watermarks(ctx, res.Tenant.ID)
	if err != nil || again[0].Events != marks[0].Events {
		t.Fatalf("the second seeding sent events: %d then %d", marks[0].Events, again[0].Events)
	}
	op := rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	ks, err := kpis.List(ctx, op, kpi.ListRequest{})
	if err != nil || len(ks) != len(kpi.Model()) {
		t.Fatalf("%d KPIs (%v), want the model's %d", len(ks), err, len(kpi.Model()))
	}
	cards, err := kpis.Cards(ctx, res.Tenant.ID, kpi.CardsRequest{Keys: []string{"prospecting_activity"}, Scopes: []kpi.ScopeRef{kpi.Company},
		Kind: period.Month, SeriesLength: 3})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, p := range cards[0][0].Series {
		if p.Value != nil {
			got++
		}
	}
	if got == 0 || drains != 2 {
		t.Fatalf("prospecting activity has no value over the last months (%d drains)", drains)
	}
}
