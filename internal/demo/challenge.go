package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/page"
	"github.com/rallyehq/rallye/internal/rallye"
)

// DemoSource is the source of the demo's CRM events.
const DemoSource = "demo-crm"

// SeedChallenge makes sure the demo company has a running upsell challenge
// for the north region, launched by its manager from the upsell template,
// with a few CRM events so that progress shows as soon as the server
// applies them. Idempotent: while one is scheduled or running it is
// returned as is, and the events carry fixed ids (replays are duplicates).
func SeedChallenge(ctx context.Context, challenges *challenge.Service, events *event.Store, res Result) (*challenge.Challenge, error) {
	var north uuid.UUID
	for _, t := range res.Teams {
		if t.ExternalID == "team-north" {
			north = t.ID
		}
	}
	byExt := map[string]rallye.Principal{}
	for _, u := range res.People {
		byExt[u.ExternalID] = rallye.Principal{TenantID: u.TenantID, UserID: u.ID, Roles: u.Roles}
	}
	manager, ok := byExt["crm-mgr-001"]
	if north == uuid.Nil || !ok {
		return nil, fmt.Errorf("demo challenge: seed the company first")
	}
	running, err := challenges.List(ctx, manager, challenge.ListRequest{
		States: []challenge.State{challenge.StateScheduled, challenge.StateActive}, TeamID: north, Size: 100, Cursor: page.Cursor{},
	})
	if err != nil {
		return nil, fmt.Errorf("demo challenge: %w", err)
	}
	for _, o := range running {
		if o.Challenge.TemplateKey == "upsell" {
			return o.Challenge, nil
		}
	}
	c, err := challenges.CreateFromTemplate(ctx, manager, challenge.FromTemplateRequest{
		TemplateKey: "upsell", TeamIDs: []uuid.UUID{north}, Publish: true,
		Overrides: challenge.Definition{Name: challenge.Text{FR: "Upsell Région Nord", EN: "North region upsell"}},
		Mask:      []string{"name"},
		RequestID: "demo-upsell-" + uuid.NewString(), // a new one each time none is running
	})
	if err != nil {
		return nil, fmt.Errorf("demo challenge: %w", err)
	}
	if err := seedEvents(ctx, events, res.Tenant.ID, c); err != nil {
		return nil, err
	}
	return c, nil
}

// seedEvents sends a few CRM events inside the challenge's window.
func seedEvents(ctx context.Context, events *event.Store, tenantID uuid.UUID, c *challenge.Challenge) error {
	at := c.StartsAt.Add(time.Second)
	id := func(s string) string { return c.ID.String()[:8] + "-" + s }
	meeting := func(ext, rep string) event.Row {
		return event.Row{Event: event.Event{Source: DemoSource, ExternalID: id(ext), Type: event.MeetingHeld, OccurredAt: at, RepExternalID: rep}}
	}
	deal := func(ext, rep string, euros int64, product string) event.Row {
		return event.Row{HasAmount: true, Event: event.Event{Source: DemoSource, ExternalID: id(ext), Type: event.DealWon, OccurredAt: at,
			RepExternalID: rep, OpportunityID: id("opp-" + ext), Amount: euros * 100, Currency: "EUR", DealKind: event.KindUpsell,
			Product: product, Segment: "mid-market", OpportunityCreatedAt: at.Add(-21 * 24 * time.Hour)}}
	}
	rows := []event.Row{
		meeting("m1", "crm-rep-001"), meeting("m2", "crm-rep-001"), deal("d1", "crm-rep-001", 4200, "support-plus"),
		meeting("m3", "crm-rep-002"), deal("d2", "crm-rep-002", 6800, "analytics"), deal("d3", "crm-rep-002", 4100, "platform"),
		meeting("m4", "crm-rep-003"),
	}
	_, err := ingest(ctx, events, rallye.Principal{TenantID: tenantID, Roles: []rallye.Role{rallye.RoleIntegration}}, rows)
	if err != nil {
		return fmt.Errorf("demo events: %w", err)
	}
	return nil
}
