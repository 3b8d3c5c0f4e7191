package challenge_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
)

// TestRuleErrorsAreCounted: a scoring rule whose filter cannot be evaluated
// for an event (a missing attribute) gives nothing for it, and the feed
// counts it instead of dropping it silently; the event still counts for the
// other rules.
func TestRuleErrorsAreCounted(t *testing.T) {
	b := setup(t)
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.CreateFromTemplate(context.Background(), principal(b.manager), challenge.FromTemplateRequest{
		TemplateKey: "upsell", TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start, EndsAt: start.Add(7 * 24 * time.Hour),
		Publish: true, Mask: []string{"scoring_rules"},
		Overrides: challenge.Definition{Rules: []challenge.Rule{
			{EventTypes: []event.Type{event.MeetingHeld}, Per: 1, Points: 10, Label: challenge.Text{FR: "Rendez-vous", EN: "Meeting"}},
			{EventTypes: []event.Type{event.DealWon}, Filter: `attributes["tier"] == "gold"`, Per: 1, Points: 100,
				Label: challenge.Text{FR: "Client or", EN: "Gold customer"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.start(t, c)
	rep := b.reps[0]
	at := c.StartsAt.Add(time.Hour)
	gold := dealWon(rep, at, 100_00, event.KindNew)
	gold.Attributes = map[string]string{"tier": "gold"}
	b.ingest(t, meetingHeld(rep, at), dealWon(rep, at, 100_00, event.KindNew), gold)
	if got := b.get(t, principal(rep), c.ID).Me.Points; got != 10+100 {
		t.Fatalf("points %d, want 110: the meeting and the gold deal", got)
	}
	if got := feedCounter(t, b.feed, "rallye_feed_rule_errors_total", challenge.ProgressConsumer); got != 1 {
		t.Fatalf("rule errors counted: %v, want 1 (the deal without a tier)", got)
	}
	if got := feedCounter(t, b.feed, "rallye_feed_changes_applied_total", challenge.ProgressConsumer); got != 3 {
		t.Fatalf("changes applied: %v, want 3", got)
	}
}

// feedCounter reads a feed counter of a consumer.
func feedCounter(t *testing.T, feed *event.Feed, name, consumer string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(feed.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == consumer {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
