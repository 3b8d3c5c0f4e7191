package challenge_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

// meetingsChallenge is a challenge for the whole sales team (the four reps)
// that gives 10 points per meeting held, in format f.
func meetingsChallenge(t *testing.T, b *bundle, f challenge.Format, tune func(*challenge.Definition)) *challenge.Challenge {
	t.Helper()
	def := challenge.Definition{
		Name: challenge.Text{FR: "Réunions", EN: "Meetings"}, Format: f,
		Rules: []challenge.Rule{{EventTypes: []event.Type{event.MeetingHeld}, Points: 10}},
	}
	if tune != nil {
		tune(&def)
	}
	start := b.clock.Now().Add(time.Hour)
	c, err := b.svc.Create(context.Background(), b.admin, challenge.CreateRequest{Definition: def,
		TeamIDs: []uuid.UUID{b.sales.ID}, StartsAt: start, EndsAt: start.Add(7 * 24 * time.Hour), Publish: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func standings(t *testing.T, b *bundle, c *challenge.Challenge) *challenge.Standings {
	t.Helper()
	_, st, err := b.svc.Standings(context.Background(), b.admin, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func order(st *challenge.Standings) []uuid.UUID {
	out := make([]uuid.UUID, len(st.People))
	for i, r := range st.People {
		out[i] = r.UserID
	}
	return out
}

// TestRace: the first to reach the target by event time wins, whatever the
// order events arrive in; equal instants go by arrival; a correction can
// change the winner.
func TestRace(t *testing.T) {
	b := setup(t)
	c := meetingsChallenge(t, b, challenge.FormatRace, func(d *challenge.Definition) { d.RaceTarget = 30 })
	b.start(t, c)
	h := func(n int) time.Time { return c.StartsAt.Add(time.Duration(n) * time.Hour) }
	r0, r1, r2, r3 := b.reps[0], b.reps[1], b.reps[2], b.reps[3]
	first := meetingHeld(r0, h(3))
	b.ingest(t, meetingHeld(r1, h(1)), meetingHeld(r1, h(2)), meetingHeld(r1, h(6))) // r1 reaches 30 at h6, first to arrive
	b.ingest(t, first, meetingHeld(r0, h(4)), meetingHeld(r0, h(5)))                 // r0 reaches 30 at h5, arrives later
	b.ingest(t, meetingHeld(r2, h(1)), meetingHeld(r2, h(2)), meetingHeld(r2, h(5))) // r2 also at h5, arrives last
	b.ingest(t, meetingHeld(r3, h(1)))
	st := standings(t, b, c)
	want := []uuid.UUID{r0.ID, r2.ID, r1.ID, r3.ID}
	for i, id := range order(st) {
		if id != want[i] || st.People[i].Rank != i+1 {
			t.Fatalf("race order %v (ranks %+v), want r0, r2, r1, r3", order(st), st.People)
		}
	}
	if !st.People[0].Reached.Equal(h(5)) || !st.People[3].Reached.IsZero() {
		t.Fatalf("reach times %+v", st.People)
	}
	retract := first
	retract.Revision, retract.Retracted = 1, true
	b.ingest(t, retract)
	st = standings(t, b, c)
	if got := order(st); got[0] != r2.ID || got[1] != r1.ID || got[2] != r0.ID {
		t.Fatalf("after r0's correction: %v", got)
	}
}

// TestLeague ranks on the percentage of each one's own target.
func TestLeague(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := meetingsChallenge(t, b, challenge.FormatLeague, func(d *challenge.Definition) { d.LeagueTarget = 100 })
	b.start(t, c)
	junior, senior := b.reps[0], b.reps[1]
	// The north manager does not manage the whole sales team.
	wantCode(t, b.svc.SetTarget(ctx, principal(b.manager), challenge.TargetRequest{ChallengeID: c.ID, UserID: junior.ID, Points: 50}), rallye.CodePermissionDenied)
	if err := b.svc.SetTarget(ctx, b.admin, challenge.TargetRequest{ChallengeID: c.ID, UserID: junior.ID, Points: 50}); err != nil {
		t.Fatal(err)
	}
	at := c.StartsAt.Add(time.Hour)
	b.ingest(t, meetingHeld(junior, at), meetingHeld(junior, at), meetingHeld(junior, at), meetingHeld(junior, at),
		meetingHeld(senior, at), meetingHeld(senior, at), meetingHeld(senior, at), meetingHeld(senior, at),
		meetingHeld(senior, at), meetingHeld(senior, at))
	st := standings(t, b, c)
	if st.People[0].UserID != junior.ID || st.People[0].Percent != 80 || st.People[1].UserID != senior.ID || st.People[1].Percent != 60 {
		t.Fatalf("league %+v", st.People[:2])
	}
	if d := b.get(t, principal(junior), c.ID); d.Me.Rank != 1 || d.Me.Target != 50 || d.Me.Percent != 80 {
		t.Fatalf("junior sees %+v", d.Me)
	}
	t.Run("ErrTargetOutsideLeague", func(t *testing.T) {
		other := meetingsChallenge(t, b, challenge.FormatLeaderboard, nil)
		wantCode(t, b.svc.SetTarget(ctx, b.admin, challenge.TargetRequest{ChallengeID: other.ID, UserID: junior.ID, Points: 50}), rallye.CodeFailedPrecondition)
	})
	t.Run("ErrTargetNotParticipant", func(t *testing.T) {
		wantCode(t, b.svc.SetTarget(ctx, b.admin, challenge.TargetRequest{ChallengeID: c.ID, UserID: b.hr.ID, Points: 50}), rallye.CodeNotFound)
	})
}

// TestDuels: pairs of similar strength (points the rules would have given
// over the 30 days before); the late joiner duels the average.
func TestDuels(t *testing.T) {
	b := setup(t)
	r0, r1, r2, r3 := b.reps[0], b.reps[1], b.reps[2], b.reps[3]
	// History: r0 and r3 are strong, r1 and r2 are not.
	past := b.clock.Now().Add(-48 * time.Hour)
	var history []event.Event
	for range 5 {
		history = append(history, meetingHeld(r0, past), meetingHeld(r3, past))
	}
	history = append(history, meetingHeld(r1, past))
	b.ingest(t, history...)
	c := meetingsChallenge(t, b, challenge.FormatDuels, nil)
	b.start(t, c)
	st := standings(t, b, c)
	if len(st.Duels) != 2 {
		t.Fatalf("duels %+v", st.Duels)
	}
	pair := map[uuid.UUID]uuid.UUID{}
	for _, d := range st.Duels {
		pair[d.A], pair[d.B] = d.B, d.A
	}
	if pair[r0.ID] != r3.ID || pair[r1.ID] != r2.ID {
		t.Fatalf("pairs %v: want the two strong ones together", pair)
	}
	// Deterministic: a second start changes nothing.
	b.start(t, c)
	if again := standings(t, b, c); again.Duels[0] != st.Duels[0] {
		t.Fatal("pairing moved")
	}
	at := c.StartsAt.Add(time.Hour)
	b.ingest(t, meetingHeld(r0, at), meetingHeld(r3, at), meetingHeld(r3, at), meetingHeld(r2, at))
	d := b.get(t, principal(r3), c.ID)
	if d.Me.Duel == nil || d.Me.Rank != 1 {
		t.Fatalf("r3 %+v", d.Me)
	}
	out := d.Me.Duel.AOutcome
	if d.Me.Duel.B == r3.ID {
		out = d.Me.Duel.BOutcome
	}
	if out != challenge.Leading {
		t.Fatalf("r3's duel: %+v", d.Me.Duel)
	}
	// Someone joining the team after the pairing duels the average.
	late := b.person(t, "late", "en", []rallye.Role{rallye.RoleRep}, b.north)
	b.joinedAt(t, at, late.ID)
	b.ingest(t, meetingHeld(late, at.Add(time.Hour)), meetingHeld(late, at.Add(time.Hour)))
	d = b.get(t, principal(late), c.ID)
	if d.Me.Duel == nil || d.Me.Duel.B != uuid.Nil || d.Me.Duel.BAverage != 10 || d.Me.Duel.AOutcome != challenge.Leading {
		t.Fatalf("late joiner's bye: %+v", d.Me.Duel)
	}
}

// TestTieRule: equal points rank by the challenge's tie rule (issue 15 item
// 7). By default the earliest achiever of the score ranks first and ranks
// are distinct, whatever order the events arrive in; shared_rank gives
// equal points one rank. The boards are created with the same rule.
func TestTieRule(t *testing.T) {
	sharedBoards := func(t *testing.T, b *bundle, id uuid.UUID) bool {
		var shared bool
		view := boardsView{db: b.db, tenant: b.tenant.ID}
		view.query(t, `SELECT bool_and(shared_ranks) FROM boards WHERE tenant_id = $1 AND challenge_id = $2`, &shared, b.tenant.ID, id)
		return shared
	}
	// Each case has its own company, so that one's events do not fall in
	// the other's window.
	play := func(t *testing.T, b *bundle, c *challenge.Challenge) *challenge.Standings {
		r0, r1, r2 := b.reps[0], b.reps[1], b.reps[2]
		h := func(n int) time.Time { return c.StartsAt.Add(time.Duration(n) * time.Hour) }
		b.start(t, c)
		b.ingest(t, meetingHeld(r0, h(1)), meetingHeld(r0, h(3))) // 20 points at h3, arrives first
		b.ingest(t, meetingHeld(r1, h(2)), meetingHeld(r1, h(1))) // 20 points at h2
		b.ingest(t, meetingHeld(r2, h(1)))                        // 10 points
		return standings(t, b, c)                                 // r3: nothing
	}
	// want is the reference: by points, then (earliest) by the instant of
	// the last meeting, the never-scored last.
	type row struct {
		id     uuid.UUID
		points int64
		rank   int
	}

	t.Run("EarliestAchieverByDefault", func(t *testing.T) {
		b := setup(t)
		r0, r1, r2, r3 := b.reps[0], b.reps[1], b.reps[2], b.reps[3]
		c := meetingsChallenge(t, b, challenge.FormatLeaderboard, nil)
		if c.Definition.TieRule != challenge.TieEarliestAchiever {
			t.Fatalf("default tie rule %q", c.Definition.TieRule)
		}
		st := play(t, b, c)
		want := []row{{r1.ID, 20, 1}, {r0.ID, 20, 2}, {r2.ID, 10, 3}, {r3.ID, 0, 4}}
		for i, w := range want {
			if got := st.People[i]; got.UserID != w.id || got.Points != w.points || got.Rank != w.rank {
				t.Fatalf("standings %+v, want %+v", st.People, want)
			}
		}
		if sharedBoards(t, b, c.ID) {
			t.Fatal("the boards share ranks")
		}
	})
	t.Run("SharedRank", func(t *testing.T) {
		b := setup(t)
		r0, r1, r2, r3 := b.reps[0], b.reps[1], b.reps[2], b.reps[3]
		c := meetingsChallenge(t, b, challenge.FormatLeaderboard, func(d *challenge.Definition) { d.TieRule = challenge.TieSharedRank })
		st := play(t, b, c)
		ranks := map[uuid.UUID]int{}
		for _, r := range st.People {
			ranks[r.UserID] = r.Rank
		}
		if ranks[r0.ID] != 1 || ranks[r1.ID] != 1 || ranks[r2.ID] != 3 || ranks[r3.ID] != 4 {
			t.Fatalf("shared ranks %+v", st.People)
		}
		if !sharedBoards(t, b, c.ID) {
			t.Fatal("the boards do not share ranks")
		}
	})
	t.Run("ErrInvalidTieRule", func(t *testing.T) {
		b := setup(t)
		_, err := b.svc.Create(context.Background(), b.admin, challenge.CreateRequest{Definition: challenge.Definition{
			Name: challenge.Text{FR: "Réunions", EN: "Meetings"}, TieRule: "coin_toss",
			Rules: []challenge.Rule{{EventTypes: []event.Type{event.MeetingHeld}, Points: 10}},
		}, TeamIDs: []uuid.UUID{b.sales.ID}})
		if e, ok := rallye.AsError(err); !ok || e.Field != "definition.tie_rule" {
			t.Fatalf("err = %v", err)
		}
	})
}
