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
	"github.com/rallyehq/rallye/internal/reward"
)

// SprintName is the demo's finished challenge, whose rewards show in the
// wallets, badges and team feed.
var SprintName = challenge.Text{FR: "Sprint prospection Sud", EN: "South prospecting sprint"}

// SeedRewards gives the demo company its rewards: a catalogue (one reward
// for the south team only), France's public holidays, a daily calls streak
// with Camille's streak in progress, a welcome grant from each rep's manager,
// and a finished challenge of the south team with tied winners, whose
// results become final (and its rewards credited) as soon as a server runs
// its jobs. Idempotent: request ids, fixed event ids, and the sprint is
// created once.
func SeedRewards(ctx context.Context, rewards *reward.Service, challenges *challenge.Service, events *event.Store, res Result, now time.Time) error {
	admin := rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleAdmin}}
	byExt := map[string]rallye.Principal{}
	for _, u := range res.People {
		byExt[u.ExternalID] = rallye.Principal{TenantID: u.TenantID, UserID: u.ID, Roles: u.Roles}
	}
	var south uuid.UUID
	for _, t := range res.Teams {
		if t.ExternalID == "team-south" {
			south = t.ID
		}
	}
	if south == uuid.Nil || len(byExt) == 0 {
		return fmt.Errorf("demo rewards: seed the company first")
	}
	if err := seedCatalogue(ctx, rewards, admin, south); err != nil {
		return err
	}
	if err := seedHolidays(ctx, rewards, admin); err != nil {
		return err
	}
	if _, err := rewards.ListBadges(ctx, admin, false); err != nil { // installs the default badges
		return fmt.Errorf("demo badges: %w", err)
	}
	if err := seedStreak(ctx, rewards, events, admin, now); err != nil {
		return err
	}
	managers := map[string]string{"crm-rep-001": "crm-mgr-001", "crm-rep-002": "crm-mgr-001", "crm-rep-003": "crm-mgr-001",
		"crm-rep-004": "crm-mgr-002", "crm-rep-005": "crm-mgr-002", "crm-rep-006": "crm-mgr-002",
		"crm-rep-007": "crm-mgr-003", "crm-rep-008": "crm-mgr-003"}
	for rep, mgr := range managers {
		if _, err := rewards.GrantPoints(ctx, byExt[mgr], reward.GrantRequest{UserID: byExt[rep].UserID, Points: 200,
			Reason: "Bienvenue dans Rallye !", RequestID: "demo-welcome-" + rep}); err != nil {
			return fmt.Errorf("demo welcome points: %w", err)
		}
	}
	return seedSprint(ctx, challenges, events, res, byExt["crm-mgr-002"], south)
}

func seedCatalogue(ctx context.Context, rewards *reward.Service, admin rallye.Principal, south uuid.UUID) error {
	stock := func(n int) *int { return &n }
	money := func(cents int64) *int64 { return &cents }
	items := []struct {
		key string
		in  reward.ItemInput
	}{
		{"gift-card", reward.ItemInput{Name: reward.Text{FR: "Carte cadeau 50 €", EN: "50 EUR gift card"},
			Description: reward.Text{FR: "Une carte cadeau multi-enseignes, envoyée par e-mail.", EN: "A multi-brand gift card, sent by e-mail."},
			Cost:        500, Stock: stock(20), ApprovalRequired: true, MoneyValue: money(5000), PerPersonLimit: 2}},
		{"remote-day", reward.ItemInput{Name: reward.Text{FR: "Journée de télétravail", EN: "Remote work day"},
			Description: reward.Text{FR: "Une journée de télétravail à poser avec votre manager.", EN: "A remote day to plan with your manager."},
			Cost:        300, ApprovalRequired: true}},
		{"mug", reward.ItemInput{Name: reward.Text{FR: "Mug Rallye", EN: "Rallye mug"},
			Description: reward.Text{FR: "Le mug des champions.", EN: "The champions' mug."}, Cost: 100, Stock: stock(50)}},
		{"team-dinner", reward.ItemInput{Name: reward.Text{FR: "Dîner d'équipe Région Sud", EN: "South region team dinner"},
			Description: reward.Text{FR: "Pour toute l'équipe Sud, au restaurant de votre choix.", EN: "For the whole south team, at the restaurant of your choice."},
			Cost:        1500, Stock: stock(2), ApprovalRequired: true, TeamIDs: []uuid.UUID{south}, MoneyValue: money(40000)}},
	}
	for _, it := range items {
		if _, err := rewards.CreateItem(ctx, admin, it.in, "demo-item-"+it.key); err != nil {
			return fmt.Errorf("demo catalogue %s: %w", it.key, err)
		}
	}
	return nil
}

// frenchHolidays are France's public holidays.
var frenchHolidays = map[int][]string{
	2026: {"2026-01-01", "2026-04-06", "2026-05-01", "2026-05-08", "2026-05-14", "2026-05-25", "2026-07-14", "2026-08-15",
		"2026-11-01", "2026-11-11", "2026-12-25"},
	2027: {"2027-01-01", "2027-03-29", "2027-05-01", "2027-05-06", "2027-05-08", "2027-05-17", "2027-07-14", "2027-08-15",
		"2027-11-01", "2027-11-11", "2027-12-25"},
}

var holidayNames = map[string]string{"01-01": "Jour de l'an", "05-01": "Fête du travail", "05-08": "Victoire 1945",
	"07-14": "Fête nationale", "08-15": "Assomption", "11-01": "Toussaint", "11-11": "Armistice", "12-25": "Noël"}

func seedHolidays(ctx context.Context, rewards *reward.Service, admin rallye.Principal) error {
	for year, days := range frenchHolidays {
		var hs []reward.Holiday
		for _, d := range days {
			t, _ := time.Parse(time.DateOnly, d)
			name, ok := holidayNames[d[5:]]
			if !ok {
				name = "Jour férié"
			}
			hs = append(hs, reward.Holiday{Day: t, Name: name})
		}
		if _, err := rewards.SetCalendar(ctx, admin, reward.Calendar{Year: year, Weekend: []time.Weekday{time.Saturday, time.Sunday},
			Holidays: hs}); err != nil {
			return fmt.Errorf("demo holidays: %w", err)
		}
	}
	return nil
}

// seedStreak defines the daily calls streak and gives Camille (crm-rep-001)
// four calls on each of the last six working days and one today: a streak
// of six, today's goal still to reach.
func seedStreak(ctx context.Context, rewards *reward.Service, events *event.Store, admin rallye.Principal, now time.Time) error {
	if _, err := rewards.CreateStreakRule(ctx, admin, reward.StreakRuleInput{Key: "daily-calls",
		Name:       reward.Text{FR: "3 appels par jour", EN: "3 calls a day"},
		EventTypes: []string{string(event.CallLogged)}, MinCount: 3, Period: reward.StreakDay, FreezeEveryWeeks: 2},
		"demo-streak-daily-calls"); err != nil {
		return fmt.Errorf("demo streak: %w", err)
	}
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return err
	}
	holidays := map[string]bool{}
	for _, days := range frenchHolidays {
		for _, d := range days {
			holidays[d] = true
		}
	}
	working := func(d time.Time) bool {
		return d.Weekday() != time.Saturday && d.Weekday() != time.Sunday && !holidays[d.Format(time.DateOnly)]
	}
	local := now.In(paris)
	today := time.Date(local.Year(), local.Month(), local.Day(), 9, 0, 0, 0, paris)
	var rows []event.Row
	call := func(day time.Time, n int) {
		rows = append(rows, event.Row{Event: event.Event{Source: DemoSource, ExternalID: fmt.Sprintf("demo-call-%s-%d", day.Format("20060102"), n),
			Type: event.CallLogged, OccurredAt: day.Add(time.Duration(n) * 17 * time.Minute), RepExternalID: "crm-rep-001"}})
	}
	for d, found := today.AddDate(0, 0, -1), 0; found < 6; d = d.AddDate(0, 0, -1) {
		if !working(d) {
			continue
		}
		found++
		for n := range 4 {
			call(d, n)
		}
	}
	if working(today) && now.After(today) {
		call(today, 0)
	}
	if _, err := ingest(ctx, events, rallye.Principal{TenantID: admin.TenantID, Roles: []rallye.Role{rallye.RoleIntegration}}, rows); err != nil {
		return fmt.Errorf("demo streak events: %w", err)
	}
	return nil
}

// seedSprint creates, once, a short prospecting sprint of the south team
// with meetings making Thomas and Léa tie first and Hugo third, ended at
// once: its results become final a second after, when the server's jobs
// run, and the rewards consumer credits the rank rewards.
func seedSprint(ctx context.Context, challenges *challenge.Service, events *event.Store, res Result, manager rallye.Principal, south uuid.UUID) error {
	existing, err := challenges.List(ctx, manager, challenge.ListRequest{TeamID: south, Size: 100, Cursor: page.Cursor{}})
	if err != nil {
		return fmt.Errorf("demo sprint: %w", err)
	}
	for _, o := range existing {
		if o.Challenge.Definition.Name == SprintName {
			return nil
		}
	}
	def := challenge.Definition{
		Name: SprintName, Kind: challenge.KindProspecting,
		Description: challenge.Text{FR: "10 points par rendez-vous tenu. Podium récompensé.", EN: "10 points per meeting held. Podium rewarded."},
		Rules: []challenge.Rule{{EventTypes: []event.Type{event.MeetingHeld}, Points: 10,
			Label: challenge.Text{FR: "10 points par rendez-vous", EN: "10 points per meeting"}}},
		Rewards: []challenge.Reward{
			{Kind: challenge.RewardRank, FromRank: 1, ToRank: 1, Ref: "sprint-winner", Points: 300, Badge: "sprint-trophy",
				Label: challenge.Text{FR: "Trophée du sprint", EN: "Sprint trophy"}},
			{Kind: challenge.RewardRank, FromRank: 2, ToRank: 3, Ref: "sprint-podium", Points: 150, Badge: "podium",
				Label: challenge.Text{FR: "Podium", EN: "Podium"}},
		},
		Grace: challenge.Duration(time.Second), MaxDataWait: challenge.Duration(time.Second),
		// The demo's two leaders tie and share the trophy.
		TieRule: challenge.TieSharedRank,
	}
	c, err := challenges.Create(ctx, manager, challenge.CreateRequest{Definition: def, TeamIDs: []uuid.UUID{south},
		EndsAt: time.Now().Add(time.Hour), Publish: true, RequestID: "demo-sprint"})
	if err != nil {
		return fmt.Errorf("demo sprint: %w", err)
	}
	var rows []event.Row
	for rep, n := range map[string]int{"crm-rep-004": 4, "crm-rep-005": 4, "crm-rep-006": 2} {
		for i := range n {
			rows = append(rows, event.Row{Event: event.Event{Source: DemoSource, ExternalID: fmt.Sprintf("demo-sprint-%s-%d", rep, i),
				Type: event.MeetingHeld, OccurredAt: c.StartsAt, RepExternalID: rep}})
		}
	}
	if _, err := ingest(ctx, events, rallye.Principal{TenantID: res.Tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}, rows); err != nil {
		return fmt.Errorf("demo sprint events: %w", err)
	}
	if _, err := challenges.EndNow(ctx, manager, c.ID); err != nil {
		return fmt.Errorf("demo sprint end: %w", err)
	}
	return nil
}
