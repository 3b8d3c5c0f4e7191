package challenge_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/event/eventgen"
	"github.com/rallyehq/rallye/internal/org"
	"github.com/rallyehq/rallye/internal/rallye"
)

func TestProgressUpsell(t *testing.T) {
	b := setup(t)
	c := b.upsell(t, challenge.MissionAdjustment{Key: "basket-uplift", Remove: true}) // tested on its own
	b.start(t, c)
	fr, en := b.reps[0], b.reps[1] // rep0 reads French, rep1 English
	at := c.StartsAt.Add(time.Hour)

	b.ingest(t, meetingHeld(fr, at), dealWon(fr, at, 1_200_00, event.KindUpsell), dealWon(en, at, 1_200_00, event.KindUpsell))
	d := b.get(t, principal(fr), c.ID)
	if d.Me.Points != 22 { // 10 per meeting, 1 per 100 EUR of upsell
		t.Fatalf("points %d, want 22", d.Me.Points)
	}
	rev := mission(t, d, "upsell-revenue")
	if rev.Current != 1200 || rev.Target != 10000 || rev.Percent != 12 || rev.Completed {
		t.Fatalf("upsell revenue %+v", rev)
	}
	if want := "8\u202f800\u00a0EUR de plus"; rev.Missing != want {
		t.Fatalf("missing %q, want %q", rev.Missing, want)
	}
	if got := mission(t, b.get(t, principal(en), c.ID), "upsell-revenue").Missing; got != "8,800\u00a0EUR more" {
		t.Fatalf("missing in English %q", got)
	}
	attach := mission(t, d, "attach-rate")
	if attach.Volume != 1 || attach.MinVolume != 5 || attach.Missing != "4 affaires gagnées de plus ; 30 points de plus (0\u00a0% actuellement)" {
		t.Fatalf("attach rate %+v", attach)
	}

	// A 9,000 EUR upsell deal completes the revenue mission: +90 +300.
	big := dealWon(fr, at.Add(time.Hour), 9_000_00, event.KindUpsell)
	b.ingest(t, big)
	d = b.get(t, principal(fr), c.ID)
	rev = mission(t, d, "upsell-revenue")
	if !rev.Completed || rev.Missing != "" || rev.Percent != 100 || d.Me.Points != 22+90+300 {
		t.Fatalf("after the big deal: points %d, %+v", d.Me.Points, rev)
	}
	if got := b.boards.points(t, c.ID, fr.ID); got != d.Me.Points {
		t.Fatalf("board %d, challenge %d", got, d.Me.Points)
	}

	// The same batch again changes nothing.
	b.ingest(t, big)
	if got := b.get(t, principal(fr), c.ID).Me.Points; got != 412 {
		t.Fatalf("replay moved points to %d", got)
	}

	// A correction halves the amount: the mission un-completes, the points
	// follow exactly.
	corrected := big
	corrected.Revision, corrected.Amount = 1, 4_500_00
	b.ingest(t, corrected)
	d = b.get(t, principal(fr), c.ID)
	if rev = mission(t, d, "upsell-revenue"); rev.Completed || rev.Current != 5700 || d.Me.Points != 22+45 {
		t.Fatalf("after the correction: points %d, %+v", d.Me.Points, rev)
	}
	// A reopening withdraws the win; a new win completes it again.
	reopen := ev(event.DealReopened, fr, at.Add(2*time.Hour))
	reopen.OpportunityID = big.OpportunityID
	b.ingest(t, reopen)
	if got := b.get(t, principal(fr), c.ID).Me.Points; got != 22 {
		t.Fatalf("after the reopening: %d", got)
	}
	again := dealWon(fr, at.Add(3*time.Hour), 9_500_00, event.KindUpsell)
	again.OpportunityID = big.OpportunityID
	b.ingest(t, again)
	d = b.get(t, principal(fr), c.ID)
	if rev = mission(t, d, "upsell-revenue"); !rev.Completed || d.Me.Points != 22+95+300 {
		t.Fatalf("won again: points %d, %+v", d.Me.Points, rev)
	}
	if got := b.boards.points(t, c.ID, fr.ID); got != d.Me.Points {
		t.Fatalf("board %d, challenge %d", got, d.Me.Points)
	}
	// Retracting the reopening counts the first win again (the version
	// counts a second time: a new key, not a duplicate).
	undo := reopen
	undo.Revision, undo.Retracted = 1, true
	b.ingest(t, undo)
	d = b.get(t, principal(fr), c.ID)
	if want := int64(22 + 45 + 95 + 300); d.Me.Points != want || b.boards.points(t, c.ID, fr.ID) != want {
		t.Fatalf("after retracting the reopening: %d (board %d), want %d", d.Me.Points, b.boards.points(t, c.ID, fr.ID), want)
	}

	// The other team's rep and events outside the window count for nothing.
	south := b.reps[2]
	b.ingest(t, meetingHeld(south, at), meetingHeld(fr, c.StartsAt.Add(-time.Second)), meetingHeld(fr, c.EndsAt))
	if got := b.get(t, principal(fr), c.ID).Me.Points; got != 462 {
		t.Fatalf("events outside the window or team counted: %d", got)
	}
	_, err := b.svc.Get(context.Background(), principal(south), c.ID)
	wantCode(t, err, rallye.CodeNotFound)
}

// TestChangeAppliedOnce hands the progress consumer the same changes twice:
// the second time changes nothing (what a version gave is recorded).
func TestChangeAppliedOnce(t *testing.T) {
	b := setup(t)
	c := b.upsell(t)
	b.start(t, c)
	rep := b.reps[0]
	b.ingest(t, meetingHeld(rep, c.StartsAt.Add(time.Hour)), dealWon(rep, c.StartsAt.Add(time.Hour), 500_00, event.KindUpsell))
	stored, err := b.events.List(context.Background(), b.admin, event.ListRequest{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	var changes []event.Change
	for i, st := range stored {
		changes = append(changes, event.Change{Seq: int64(1000 + i), Sign: 1, Event: st.Event})
	}
	for range 2 {
		err := b.db.InTenant(context.Background(), b.tenant.ID, func(tx pgx.Tx) error {
			applied, err := b.svc.Progress().Consume(context.Background(), tx, b.tenant.ID, changes)
			if applied.After != nil {
				defer applied.After(context.Background())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := b.get(t, principal(rep), c.ID).Me.Points; got != 15 {
		t.Fatalf("points %d, want 15", got)
	}
	if got := b.boards.points(t, c.ID, rep.ID); got != 15 {
		t.Fatalf("board %d", got)
	}
}

// TestConcurrentEvents: many batches for one rep ingested in parallel while
// two "servers" drain the feed give exact points.
func TestConcurrentEvents(t *testing.T) {
	b := setup(t)
	c := b.upsell(t, challenge.MissionAdjustment{Key: "upsell-revenue", Remove: true},
		challenge.MissionAdjustment{Key: "basket-uplift", Remove: true}, challenge.MissionAdjustment{Key: "attach-rate", Remove: true})
	b.start(t, c)
	rep := b.reps[0]
	ctx := context.Background()
	const workers, perWorker = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	stop := make(chan struct{})
	var drainers sync.WaitGroup
	for range 2 {
		drainers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.feed.Drain(ctx, b.tenant.ID); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var want int64
	for w := range workers {
		var batch []event.Row
		for i := range perWorker {
			at := c.StartsAt.Add(time.Duration(w*perWorker+i) * time.Minute)
			e := meetingHeld(rep, at)
			e.ExternalID = fmt.Sprintf("par-%d-%d", w, i)
			batch = append(batch, event.Row{Event: e})
			want += 10
			if i%5 == 0 {
				d := dealWon(rep, at, int64(100_00*(i+1)+37), event.KindUpsell)
				d.ExternalID = fmt.Sprintf("par-deal-%d-%d", w, i)
				d.OpportunityID = d.ExternalID
				batch = append(batch, event.Row{Event: d, HasAmount: true})
				want += int64(i + 1)
			}
		}
		wg.Go(func() {
			_, err := b.events.Ingest(ctx, rallye.Principal{TenantID: b.tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}, batch)
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(stop)
	drainers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.drain(t)
	if got := b.get(t, principal(rep), c.ID).Me.Points; got != want {
		t.Fatalf("points %d, want %d", got, want)
	}
	if got := b.boards.points(t, c.ID, rep.ID); got != want {
		t.Fatalf("board %d, want %d", got, want)
	}
}

// TestAgainstGroundTruth feeds realistic CRM traffic (duplicates,
// corrections, retractions, reopened deals, late and out-of-order) and
// compares points and mission values with a plain computation on the
// versions that finally count.
func TestAgainstGroundTruth(t *testing.T) {
	b := setup(t)
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.CreateFromTemplate(context.Background(), principal(b.manager), challenge.FromTemplateRequest{
		TemplateKey: "upsell", TeamIDs: []uuid.UUID{b.north.ID}, StartsAt: start, Publish: true, // 30 days
	})
	if err != nil {
		t.Fatal(err)
	}
	b.start(t, c)
	loc, _ := time.LoadLocation("Europe/Paris")
	reps := []eventgen.Rep{{ExternalID: b.reps[0].ExternalID, Skill: 1.2}, {ExternalID: b.reps[1].ExternalID, Skill: 0.9},
		{ExternalID: b.reps[2].ExternalID, Skill: 1}}
	// Opportunities take weeks to close: simulate from well before the
	// window so that deals close inside it.
	cfg := eventgen.Default(7, reps, c.StartsAt.Add(-40*24*time.Hour), c.EndsAt.Add(24*time.Hour), loc)
	cfg.ReopenRate, cfg.CorrectionRate, cfg.RetractionRate, cfg.Activity = 0.2, 0.1, 0.05, 2
	var batch []event.Row
	var truth []event.Event
	flush := func() {
		if len(batch) > 0 {
			if _, err := b.events.Ingest(context.Background(), rallye.Principal{TenantID: b.tenant.ID, Roles: []rallye.Role{rallye.RoleIntegration}}, batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	err = eventgen.Generate(cfg, func(d eventgen.Delivery) error {
		batch = append(batch, event.Row{Event: d.Event, HasAmount: d.HasAmount})
		if len(batch) == 250 {
			flush()
			b.drain(t) // drain as it goes: later changes correct applied ones
		}
		return nil
	}, func(e event.Event) { truth = append(truth, e) })
	if err != nil {
		t.Fatal(err)
	}
	flush()
	b.drain(t)

	type ref struct {
		points  int64
		revenue float64
		deals   int
	}
	want := map[string]*ref{}
	for _, e := range truth {
		if e.OccurredAt.Before(c.StartsAt) || !e.OccurredAt.Before(c.EndsAt) {
			continue
		}
		r := want[e.RepExternalID]
		if r == nil {
			r = &ref{}
			want[e.RepExternalID] = r
		}
		switch {
		case e.Type == event.MeetingHeld:
			r.points += 10
		case e.Type == event.DealWon && e.DealKind == event.KindUpsell:
			r.points += int64(math.Floor(float64(e.Amount) / 100 / 100))
			r.revenue += float64(e.Amount) / 100
			r.deals++
		}
	}
	for _, rep := range b.reps[:2] {
		r := want[rep.ExternalID]
		if r == nil || r.deals == 0 {
			t.Fatalf("the dataset has no upsell deal for %s", rep.ExternalID)
		}
		d := b.get(t, principal(rep), c.ID)
		rev := mission(t, d, "upsell-revenue")
		bonus := int64(0)
		if r.revenue >= 10000 {
			bonus = 300
		}
		// Other missions may add their bonuses; compare without them.
		var others int64
		for _, m := range d.Me.Missions {
			if m.Completed && m.Key != "upsell-revenue" {
				others += m.Points
			}
		}
		if got := d.Me.Points - others; got != r.points+bonus {
			t.Errorf("%s: points %d (+%d of other missions), want %d", rep.ExternalID, got, others, r.points+bonus)
		}
		if math.Abs(rev.Current-r.revenue) > 1e-6 || rev.Completed != (r.revenue >= 10000) {
			t.Errorf("%s: upsell revenue %v (completed %v), want %v", rep.ExternalID, rev.Current, rev.Completed, r.revenue)
		}
		if got := b.boards.points(t, c.ID, rep.ID); got != d.Me.Points {
			t.Errorf("%s: board %d, challenge %d", rep.ExternalID, got, d.Me.Points)
		}
	}
}

// TestSequentialOnboarding: missions unlock in order; a mission met while
// locked completes when its predecessor does; a retraction re-locks what
// follows.
func TestSequentialOnboarding(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.CreateFromTemplate(ctx, principal(b.manager), challenge.FromTemplateRequest{
		TemplateKey: "onboarding", UserIDs: []uuid.UUID{b.reps[1].ID}, StartsAt: start, Publish: true,
		// Only the mission bonuses: the scoring rules are tested elsewhere.
		Mask: []string{"scoring_rules"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !c.EndsAt.Equal(start.Add(30 * 24 * time.Hour)) {
		t.Fatalf("default duration: ends %v", c.EndsAt)
	}
	b.start(t, c)
	rep := b.reps[1]
	at := c.StartsAt.Add(time.Hour)
	won := dealWon(rep, at, 1_000_00, event.KindNew)
	b.ingest(t, won)
	d := b.get(t, principal(rep), c.ID)
	if m := mission(t, d, "first-deal"); m.Completed || !m.Locked || m.Missing != `done: counts once "Create a first qualified opportunity" is completed` {
		t.Fatalf("first deal while locked: %+v", m)
	}
	training := ev(event.TrainingCompleted, rep, at)
	training.ContentID = "product-101"
	var meetings []event.Event
	for range 3 {
		m := meetingHeld(rep, at)
		m.DiscoveryCompleted = true
		meetings = append(meetings, m)
	}
	b.ingest(t, append(meetings, training)...)
	d = b.get(t, principal(rep), c.ID)
	if !mission(t, d, "product-training").Completed || !mission(t, d, "discovery-meetings").Completed || d.Me.Points != 150 {
		t.Fatalf("first two missions: points %d %+v", d.Me.Points, d.Me.Missions)
	}
	stage := ev(event.OpportunityStageChanged, rep, at)
	stage.OpportunityID, stage.FromStage, stage.Stage, stage.StageEnteredAt = "opp-x", "qualification", "discovery", at.Add(-time.Hour)
	b.ingest(t, stage)
	d = b.get(t, principal(rep), c.ID)
	if !mission(t, d, "first-deal").Completed || d.Me.Points != 450 {
		t.Fatalf("the locked mission did not complete with its predecessor: points %d", d.Me.Points)
	}
	retract := training
	retract.Revision, retract.Retracted = 1, true
	b.ingest(t, retract)
	d = b.get(t, principal(rep), c.ID)
	for _, m := range d.Me.Missions {
		if m.Completed {
			t.Fatalf("%s still completed after the training was retracted", m.Key)
		}
	}
	if d.Me.Points != 0 || b.boards.points(t, c.ID, rep.ID) != 0 {
		t.Fatalf("points %d board %d after the cascade", d.Me.Points, b.boards.points(t, c.ID, rep.ID))
	}
}

// TestTeamMissionsAndLateJoiner: a team mission counts the team's events
// and awards each member; someone who joins the team mid-challenge is
// enrolled at their first event and counts from when they joined.
func TestTeamMissionsAndLateJoiner(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	start := b.clock.Now().Add(time.Hour)
	def := challenge.Definition{
		Name: challenge.Text{FR: "Bataille des régions", EN: "Battle of the regions"}, Kind: challenge.KindProspecting,
		Mode: challenge.ModeTeam, Format: challenge.FormatTeamBattle, TeamMetric: challenge.TeamAverage,
		Missions: []challenge.Mission{{Key: "team-meetings", Name: challenge.Text{FR: "Réunions d'équipe", EN: "Team meetings"},
			Scope: challenge.ScopeTeam, Points: 50, Aggregate: challenge.AggCount, EventTypes: []event.Type{event.MeetingHeld}, Target: 3}},
		Rules: []challenge.Rule{{EventTypes: []event.Type{event.MeetingHeld}, Points: 10}},
	}
	c, err := b.svc.Create(ctx, b.admin, challenge.CreateRequest{Definition: def, TeamIDs: []uuid.UUID{b.north.ID, b.south.ID},
		StartsAt: start, EndsAt: start.Add(72 * time.Hour), Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	b.start(t, c)
	at := c.StartsAt.Add(time.Hour)
	n0, n1 := b.reps[0], b.reps[1]
	b.ingest(t, meetingHeld(n0, at), meetingHeld(n0, at), meetingHeld(n1, at))
	for _, r := range []org.User{n0, n1} {
		d := b.get(t, principal(r), c.ID)
		m := mission(t, d, "team-meetings")
		if !m.Completed || m.SubjectID != b.north.ID || m.Current != 3 {
			t.Fatalf("team mission for %s: %+v", r.DisplayName, m)
		}
	}
	if p0, p1 := b.get(t, principal(n0), c.ID).Me.Points, b.get(t, principal(n1), c.ID).Me.Points; p0 != 70 || p1 != 60 {
		t.Fatalf("points %d and %d, want 70 and 60", p0, p1)
	}

	// A new rep joins the north team mid-challenge.
	joined := at.Add(time.Hour)
	newbie := b.person(t, "newbie", org.LocaleEN, []rallye.Role{rallye.RoleRep}, b.north)
	b.joinedAt(t, joined, newbie.ID)
	b.ingest(t, meetingHeld(newbie, joined.Add(-time.Minute)))
	d := b.get(t, principal(newbie), c.ID)
	if d.Me == nil || !d.Me.Enrolled || !d.Me.CountsFrom.Equal(joined) || d.Me.Points != 0 || d.Me.TeamID != b.north.ID {
		t.Fatalf("late joiner: %+v", d.Me)
	}
	b.ingest(t, meetingHeld(newbie, joined.Add(time.Minute)))
	if d = b.get(t, principal(newbie), c.ID); d.Me.Points != 10 {
		t.Fatalf("late joiner's event after joining: %d points", d.Me.Points)
	}

	// The retraction of a team member's meeting un-completes the team
	// mission for everyone... only if the count drops below 3: it has 4.
	_, st, err := b.svc.Standings(ctx, b.admin, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Teams) != 2 || st.Teams[0].TeamID != b.north.ID || st.Teams[0].Members != 3 {
		t.Fatalf("team standings %+v", st.Teams)
	}
}

// A challenge published "now" starts at the second, a little before its
// publication: people already in its teams play from that start, even if
// they joined the team within that second; someone who joins after the
// publication plays from their joining.
func TestStartNowCountsFromTheStartForMembersAtPublication(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	b.clock.Set(b.clock.Now().Truncate(time.Second).Add(700 * time.Millisecond))
	published := b.clock.Now()
	member, newcomer := b.reps[0], b.person(t, "newcomer", org.LocaleEN, []rallye.Role{rallye.RoleRep}, b.north)
	b.joinedAt(t, published.Add(-200*time.Millisecond), member.ID) // after the start, before the publication
	b.joinedAt(t, published.Add(2*time.Second), newcomer.ID)
	def := challenge.Definition{
		Name: challenge.Text{FR: "Sprint", EN: "Sprint"}, Kind: challenge.KindProspecting,
		Missions: []challenge.Mission{{Key: "meetings", Name: challenge.Text{FR: "Réunions", EN: "Meetings"},
			Points: 5, Aggregate: challenge.AggCount, EventTypes: []event.Type{event.MeetingHeld}, Target: 10}},
		Rules: []challenge.Rule{{EventTypes: []event.Type{event.MeetingHeld}, Points: 10}},
	}
	c, err := b.svc.Create(ctx, b.admin, challenge.CreateRequest{Definition: def, TeamIDs: []uuid.UUID{b.north.ID},
		EndsAt: published.Add(time.Hour), Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	if !c.StartsAt.Equal(published.Truncate(time.Second)) {
		t.Fatalf("starts at %v, want %v", c.StartsAt, published.Truncate(time.Second))
	}
	early := c.StartsAt.Add(100 * time.Millisecond) // before both joined
	b.clock.Set(published.Add(3 * time.Second))
	b.ingest(t, meetingHeld(member, early), meetingHeld(newcomer, early), meetingHeld(newcomer, published.Add(2500*time.Millisecond)))
	tests := []struct {
		name       string
		who        org.User
		countsFrom time.Time
		points     int64
	}{
		{"member at publication", member, c.StartsAt, 10},
		{"joined after publication", newcomer, published.Add(2 * time.Second), 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			me := b.get(t, principal(tc.who), c.ID).Me
			if me == nil || !me.CountsFrom.Equal(tc.countsFrom) || me.Points != tc.points {
				t.Fatalf("participation %+v, want counting from %v with %d points", me, tc.countsFrom, tc.points)
			}
		})
	}
}
