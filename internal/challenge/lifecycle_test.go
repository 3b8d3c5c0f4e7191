package challenge_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/challenge"
	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

// TestLifecycleAtBoundaryInstants drives the jobs at the exact instants,
// one nanosecond before and again after: nothing happens early, everything
// happens once.
func TestLifecycleAtBoundaryInstants(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	if c.State != challenge.StateScheduled || c.Version != 2 {
		t.Fatalf("published challenge: state %s version %d", c.State, c.Version)
	}
	var start challenge.StartArgs
	if at := b.job(t, "challenge.start", &start); !at.Equal(c.StartsAt) || start.Version != c.Version {
		t.Fatalf("start job at %v version %d, want %v version %d", at, start.Version, c.StartsAt, c.Version)
	}
	var end challenge.EndArgs
	if at := b.job(t, "challenge.end", &end); !at.Equal(c.EndsAt) {
		t.Fatalf("end job at %v, want %v", at, c.EndsAt)
	}
	// The stored state, and the one reads show, must agree at every step.
	state := func() challenge.State {
		stored, shown := b.stored(t, c.ID), b.get(t, b.admin, c.ID).Challenge.State
		if stored != shown {
			return "stored " + stored + ", shown " + shown
		}
		return stored
	}

	t.Run("StartNotBefore", func(t *testing.T) {
		b.clock.Set(c.StartsAt.Add(-time.Nanosecond))
		retry, err := b.svc.Start(ctx, start)
		if err != nil || retry != time.Nanosecond || state() != challenge.StateScheduled {
			t.Fatalf("start 1ns early: retry %v err %v state %s", retry, err, state())
		}
	})
	t.Run("StartAtInstantOnce", func(t *testing.T) {
		b.clock.Set(c.StartsAt)
		for range 2 {
			if retry, err := b.svc.Start(ctx, start); err != nil || retry != 0 {
				t.Fatal(retry, err)
			}
			if state() != challenge.StateActive {
				t.Fatalf("state %s", state())
			}
		}
		if n := b.boards.players(t, c.ID); n != 2 {
			t.Fatalf("%d people on the boards, want the two north reps", n)
		}
	})
	// Points for the rewards: rep0 first with 10, rep1 without points.
	b.clock.Set(c.StartsAt.Add(time.Hour))
	b.ingest(t, meetingHeld(b.reps[0], c.StartsAt.Add(time.Hour)))
	t.Run("EndNotBefore", func(t *testing.T) {
		b.clock.Set(c.EndsAt.Add(-time.Nanosecond))
		retry, err := b.svc.End(ctx, end)
		if err != nil || retry != time.Nanosecond || state() != challenge.StateActive {
			t.Fatalf("end 1ns early: retry %v err %v state %s", retry, err, state())
		}
	})
	t.Run("EndAtInstantOnce", func(t *testing.T) {
		b.clock.Set(c.EndsAt)
		for range 2 { // the job run twice, as two servers would
			if retry, err := b.svc.End(ctx, end); err != nil || retry != 0 {
				t.Fatal(retry, err)
			}
		}
		if state() != challenge.StateEnded {
			t.Fatalf("state %s", state())
		}
		if n := b.jobCount(t, "challenge.finalize"); n != 1 {
			t.Fatalf("%d finalize jobs, want 1", n)
		}
	})
	var fin challenge.FinalizeArgs
	at := b.job(t, "challenge.finalize", &fin)
	if want := c.EndsAt.Add(challenge.DefaultGrace); !at.Equal(want) {
		t.Fatalf("finalize job at %v, want end + grace %v", at, want)
	}
	t.Run("FinalNotBeforeGrace", func(t *testing.T) {
		b.clock.Set(at.Add(-time.Nanosecond))
		retry, err := b.svc.Finalize(ctx, fin)
		if err != nil || retry != time.Nanosecond || b.get(t, b.admin, c.ID).Challenge.Final() {
			t.Fatalf("finalize early: retry %v err %v", retry, err)
		}
	})
	t.Run("FinalAtGraceOnce", func(t *testing.T) {
		b.ingest(t, meetingHeld(b.reps[1], c.EndsAt)) // the CRM's data reaches the end (the event is outside the window)
		b.clock.Set(at)
		for range 2 {
			if retry, err := b.svc.Finalize(ctx, fin); err != nil || retry != 0 {
				t.Fatal(retry, err)
			}
		}
		d := b.get(t, b.admin, c.ID)
		if !d.Challenge.Final() || !d.Challenge.FinalizedAt.Equal(at) {
			t.Fatalf("not final at %v: %v", at, d.Challenge.FinalizedAt)
		}
		if !b.boards.frozen(t, c.ID) {
			t.Fatal("boards not frozen")
		}
		// Rank rewards once, and only with points: the trophy to rep0,
		// no podium for rep1 (0 points).
		var grants []string
		err := b.db.ReadTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT reward_ref || ':' || user_id || ':' || coalesce(rank, 0) FROM challenge_reward_grants ORDER BY 1`)
			if err != nil {
				return err
			}
			grants, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := "upsell-trophy:" + b.reps[0].ID.String() + ":1"; len(grants) != 1 || grants[0] != want {
			t.Fatalf("grants %v, want [%s]", grants, want)
		}
		if d := b.get(t, principal(b.reps[0]), c.ID); d.Me.Rank != 1 || d.Me.Provisional {
			t.Fatalf("final rank %+v", d.Me)
		}
	})
}

// TestStaleJobs: extending reschedules the end; the job of the old window
// finds itself stale; a start moved later makes the first start job stale.
func TestStaleJobs(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	var oldStart challenge.StartArgs
	b.job(t, "challenge.start", &oldStart)

	later := c.StartsAt.Add(2 * time.Hour)
	c2, err := b.svc.Update(ctx, principal(b.manager), c.ID, challenge.Patch{StartsAt: later, Mask: []string{"start_time"}})
	if err != nil {
		t.Fatal(err)
	}
	b.clock.Set(c.StartsAt)
	if _, err := b.svc.Start(ctx, oldStart); err != nil {
		t.Fatal(err)
	}
	if st := b.get(t, b.admin, c.ID).Challenge.State; st != challenge.StateScheduled {
		t.Fatalf("the stale start job started the challenge: %s", st)
	}
	b.start(t, c2)

	var oldEnd challenge.EndArgs
	b.job(t, "challenge.end", &oldEnd)
	newEnd := c2.EndsAt.Add(48 * time.Hour)
	c3, err := b.svc.Extend(ctx, principal(b.manager), c.ID, newEnd)
	if err != nil {
		t.Fatal(err)
	}
	var end challenge.EndArgs
	if at := b.job(t, "challenge.end", &end); !at.Equal(newEnd) || end.Version != c3.Version || end.Version == oldEnd.Version {
		t.Fatalf("extension scheduled the end at %v version %d", at, end.Version)
	}
	var boardEnd time.Time
	if err := b.db.ReadTenant(ctx, c.TenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT ends_at FROM boards WHERE tenant_id = $1 AND challenge_id = $2 AND kind = 'individual'`,
			c.TenantID, c.ID).Scan(&boardEnd)
	}); err != nil {
		t.Fatal(err)
	}
	if !boardEnd.Equal(newEnd.Truncate(time.Microsecond)) {
		t.Fatalf("the extension left the board ending at %v, want %v", boardEnd, newEnd)
	}
	b.clock.Set(c2.EndsAt)
	if retry, err := b.svc.End(ctx, oldEnd); err != nil || retry != 0 {
		t.Fatal(retry, err)
	}
	if st := b.get(t, b.admin, c.ID).Challenge.State; st != challenge.StateActive {
		t.Fatalf("the stale end job ended the extended challenge: %s", st)
	}
	t.Run("ErrShortenRunning", func(t *testing.T) {
		_, err := b.svc.Extend(ctx, principal(b.manager), c.ID, c2.EndsAt)
		wantCode(t, err, rallye.CodeInvalid)
	})
	b.clock.Set(newEnd)
	if _, err := b.svc.End(ctx, end); err != nil {
		t.Fatal(err)
	}
	if st := b.get(t, b.admin, c.ID).Challenge.State; st != challenge.StateEnded {
		t.Fatalf("state %s", st)
	}
	t.Run("ErrExtendEnded", func(t *testing.T) {
		_, err := b.svc.Extend(ctx, principal(b.manager), c.ID, newEnd.Add(time.Hour))
		wantCode(t, err, rallye.CodeFailedPrecondition)
	})
}

// TestFinalWaitsForData: after the grace period, an ended challenge waits
// until every source that sent data since the start reaches the end, or
// until the maximum data wait.
func TestFinalWaitsForData(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	b.start(t, c)
	rep := b.reps[0]
	b.ingest(t, meetingHeld(rep, c.StartsAt.Add(time.Hour)))
	hubspot := meetingHeld(rep, c.StartsAt.Add(2*time.Hour))
	hubspot.Source = "hubspot"
	b.ingest(t, hubspot)

	var end challenge.EndArgs
	b.job(t, "challenge.end", &end)
	b.clock.Set(c.EndsAt)
	if _, err := b.svc.End(ctx, end); err != nil {
		t.Fatal(err)
	}
	var fin challenge.FinalizeArgs
	graceOver := b.job(t, "challenge.finalize", &fin)
	b.clock.Set(graceOver)
	retry, err := b.svc.Finalize(ctx, fin)
	if err != nil || retry != time.Minute {
		t.Fatalf("with both sources behind the end: retry %v, %v", retry, err)
	}
	d := b.get(t, b.admin, c.ID)
	if d.Completeness == nil || d.Completeness.Complete || len(d.Completeness.Sources) != 2 {
		t.Fatalf("completeness %+v", d.Completeness)
	}

	// A late event of the window arrives during the grace period: it counts.
	late := meetingHeld(rep, c.EndsAt.Add(-time.Minute))
	b.ingest(t, late)
	// The CRM delivers past the end; hubspot stays behind.
	after := meetingHeld(rep, c.EndsAt.Add(time.Minute))
	b.ingest(t, after)
	if retry, _ := b.svc.Finalize(ctx, fin); retry == 0 {
		t.Fatal("final while hubspot is behind")
	}
	if got := b.get(t, principal(rep), c.ID).Me.Points; got != 30 {
		t.Fatalf("points %d, want 30 (three meetings in the window, the one after it not counted)", got)
	}

	b.clock.Set(c.LatestFinal().Add(-time.Nanosecond))
	if retry, _ := b.svc.Finalize(ctx, fin); retry != time.Nanosecond {
		t.Fatalf("retry %v just before the max wait", retry)
	}
	b.clock.Set(c.LatestFinal())
	if retry, err := b.svc.Finalize(ctx, fin); err != nil || retry != 0 {
		t.Fatal(retry, err)
	}
	d = b.get(t, principal(rep), c.ID)
	if !d.Challenge.Final() || d.Me.Rank != 1 || d.Me.Provisional {
		t.Fatalf("final %v rank %d provisional %v", d.Challenge.Final(), d.Me.Rank, d.Me.Provisional)
	}

	// After final nothing moves.
	b.ingest(t, meetingHeld(rep, c.EndsAt.Add(-2*time.Minute)))
	retract := late
	retract.Revision, retract.Retracted = 1, true
	b.ingest(t, retract)
	if got := b.get(t, principal(rep), c.ID).Me.Points; got != 30 {
		t.Fatalf("points moved after final: %d", got)
	}
	if got := b.boards.points(t, c.ID, rep.ID); got != 30 {
		t.Fatalf("board points %d", got)
	}
}

// TestEndNowAndCancel: a manager ends a challenge now; another is
// cancelled and takes its points back.
func TestEndNowAndCancel(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	b.start(t, c)
	rep := b.reps[0]
	b.ingest(t, meetingHeld(rep, c.StartsAt.Add(time.Hour)))
	b.clock.Set(c.StartsAt.Add(2 * time.Hour))
	ended, err := b.svc.EndNow(ctx, principal(b.manager), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ended.State != challenge.StateEnded || !ended.EndsAt.Equal(b.clock.Now()) {
		t.Fatalf("ended %s at %v", ended.State, ended.EndsAt)
	}
	// An event after the new end does not count.
	b.ingest(t, meetingHeld(rep, c.StartsAt.Add(3*time.Hour)))
	if got := b.get(t, principal(rep), c.ID).Me.Points; got != 10 {
		t.Fatalf("points %d", got)
	}
	_, err = b.svc.EndNow(ctx, principal(b.manager), c.ID)
	wantCode(t, err, rallye.CodeFailedPrecondition)

	c2 := b.upsell(t)
	b.start(t, c2)
	b.ingest(t, meetingHeld(rep, c2.StartsAt.Add(time.Hour)), dealWon(rep, c2.StartsAt.Add(time.Hour), 2_000_00, event.KindUpsell))
	if got := b.boards.points(t, c2.ID, rep.ID); got != 30 {
		t.Fatalf("board points %d before cancel", got)
	}
	if _, err := b.svc.Cancel(ctx, principal(b.manager), c2.ID); err != nil {
		t.Fatal(err)
	}
	if got := b.boards.points(t, c2.ID, rep.ID); got != 0 {
		t.Fatalf("board points %d after cancel", got)
	}
	b.ingest(t, meetingHeld(rep, c2.StartsAt.Add(2*time.Hour)))
	if got := b.boards.points(t, c2.ID, rep.ID); got != 0 {
		t.Fatalf("a cancelled challenge still scores: %d", got)
	}
	if _, err := b.svc.Cancel(ctx, principal(b.manager), c2.ID); err != nil {
		t.Fatalf("cancelling twice: %v", err)
	}

	t.Run("EndBeforeTheStartJobRan", func(t *testing.T) {
		c3 := b.upsell(t)
		b.clock.Set(c3.StartsAt.Add(-time.Second))
		_, err := b.svc.EndNow(ctx, principal(b.manager), c3.ID)
		wantCode(t, err, rallye.CodeFailedPrecondition)
		b.clock.Set(c3.StartsAt.Add(time.Minute))
		ended, err := b.svc.EndNow(ctx, principal(b.manager), c3.ID)
		if err != nil || ended.State != challenge.StateEnded || ended.StartedAt.IsZero() {
			t.Fatalf("ended %+v, %v", ended, err)
		}
		var start challenge.StartArgs
		b.job(t, "challenge.start", &start)
		if _, err := b.svc.Start(ctx, start); err != nil {
			t.Fatal(err)
		}
		if st := b.get(t, b.admin, c3.ID).Challenge.State; st != challenge.StateEnded {
			t.Fatalf("the late start job moved the ended challenge to %s", st)
		}
	})
}

// TestTwoServersEndOnce runs the end and finalize jobs on several
// goroutines at once, as several servers would: one transition each, one
// finalization job, rewards granted once.
func TestTwoServersEndOnce(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	b.start(t, c)
	b.ingest(t, meetingHeld(b.reps[0], c.StartsAt.Add(time.Hour)), meetingHeld(b.reps[0], c.EndsAt.Add(time.Hour)))
	var end challenge.EndArgs
	b.job(t, "challenge.end", &end)
	b.clock.Set(c.EndsAt)
	run := func(fn func() error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() { errs <- fn() })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	run(func() error { _, err := b.svc.End(ctx, end); return err })
	if n := b.jobCount(t, "challenge.finalize"); n != 1 {
		t.Fatalf("%d finalize jobs", n)
	}
	var fin challenge.FinalizeArgs
	b.clock.Set(b.job(t, "challenge.finalize", &fin))
	run(func() error { _, err := b.svc.Finalize(ctx, fin); return err })
	var grants int
	err := b.db.ReadTenant(ctx, b.tenant.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM challenge_reward_grants`).Scan(&grants)
	})
	if err != nil || grants != 1 {
		t.Fatalf("%d grants, %v", grants, err)
	}
	if !b.get(t, b.admin, c.ID).Challenge.Final() || !b.boards.frozen(t, c.ID) {
		t.Fatal("not final")
	}
}

// Between an instant and its job (the queue picks a scheduled job within a
// few seconds), reads and the person's lists follow the clock.
func TestShownStateFollowsTheClock(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	c := b.upsell(t)
	rep := principal(b.reps[0])
	window := func(w challenge.Window) bool {
		t.Helper()
		got, err := b.svc.ListMine(ctx, rep, challenge.ListMineRequest{Window: w, Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 1 && got[0].Challenge.ID == c.ID
	}
	managed := func(st challenge.State) bool {
		t.Helper()
		got, err := b.svc.List(ctx, principal(b.manager), challenge.ListRequest{States: []challenge.State{st}, Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 1 && got[0].Challenge.ID == c.ID
	}
	tests := []struct {
		name  string
		at    time.Time
		shown challenge.State
		in    challenge.Window
		next  time.Time
	}{
		{"just before the start", c.StartsAt.Add(-time.Nanosecond), challenge.StateScheduled, challenge.WindowUpcoming, c.StartsAt},
		{"at the start, job not run", c.StartsAt, challenge.StateActive, challenge.WindowActive, c.EndsAt},
		{"at the end, no job run", c.EndsAt, challenge.StateEnded, challenge.WindowPast, c.EarliestFinal()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b.clock.Set(tc.at)
			if st := b.stored(t, c.ID); st != challenge.StateScheduled {
				t.Fatalf("stored state %s: no job ran", st)
			}
			if got := b.get(t, rep, c.ID).Challenge.State; got != tc.shown {
				t.Fatalf("shown %s, want %s", got, tc.shown)
			}
			for _, w := range []challenge.Window{challenge.WindowUpcoming, challenge.WindowActive, challenge.WindowPast} {
				if window(w) != (w == tc.in) {
					t.Errorf("in window %s: %v, want %v", w, window(w), w == tc.in)
				}
			}
			if !managed(tc.shown) {
				t.Errorf("the manager's list filtered on %s misses it", tc.shown)
			}
			got, err := b.svc.ListMine(ctx, rep, challenge.ListMineRequest{Window: tc.in, Size: 10})
			if err != nil || len(got) != 1 || !got[0].Next.Equal(tc.next) {
				t.Fatalf("next instant: %v, %v; want %v", got, err, tc.next)
			}
		})
	}
}
