package leaderboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/leaderboard"
)

// TestWatchersOfANewPeriodSeeItsFirstPoints watches the company's period
// boards before anyone scored in the period (they exist only virtually:
// nothing of them is in PostgreSQL or Redis), then records points. The
// first points create the boards; their announcement must wake the
// watchers, with the streams' periodic re-read pushed out to an hour and
// no repair job running (this test runs none), so that only the
// announcement can deliver them.
func TestWatchersOfANewPeriodSeeItsFirstPoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	jobs, err := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	svc := leaderboard.New(leaderboard.Deps{DB: b.db, Redis: b.rdb, Keys: b.keys, Log: quiet(), WatchRefresh: time.Hour})
	svc.SetJobs(jobs)
	t.Cleanup(svc.Close)
	users := b.people(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	periods, err := svc.CurrentPeriods(ctx, b.op)
	if err != nil || len(periods) != len(leaderboard.Periods) {
		t.Fatalf("current periods: %v, %v", periods, err)
	}

	type update struct {
		period leaderboard.Period
		points map[string]int64
	}
	updates := make(chan update, 64)
	done := make(chan error, len(periods))
	for _, p := range periods {
		go func() {
			done <- svc.Watch(ctx, b.op, leaderboard.RankingRequest{BoardID: p.ID, PageSize: 10}, func(r leaderboard.Ranking) error {
				points := map[string]int64{}
				for _, e := range r.Entries {
					points[e.ParticipantID.String()] = e.Points
				}
				updates <- update{p.Period, points}
				return nil
			})
		}()
	}
	// last[period] is what its stream last showed.
	last := map[leaderboard.Period]map[string]int64{}
	await := func(what string, want map[string]int64) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			all := len(last) == len(periods)
			for _, p := range periods {
				all = all && equalPoints(last[p.Period], want)
			}
			if all {
				return
			}
			select {
			case u := <-updates:
				last[u.period] = u.points
			case err := <-done:
				t.Fatalf("a stream ended: %v", err)
			case <-deadline:
				t.Fatalf("%s: the streams show %v, want %v on every period board", what, last, want)
			}
		}
	}
	await("before any points", map[string]int64{})

	now := time.Now()
	b.tryRecordOrFail(t, svc, leaderboard.Entry{Key: "first", UserID: users[0], Points: 25, At: now, Reason: "test"})
	want := map[string]int64{users[0].String(): 25}
	await("the period's first points", want)

	b.tryRecordOrFail(t, svc, leaderboard.Entry{Key: "second", UserID: users[1], Points: 40, At: now, Reason: "test"})
	want[users[1].String()] = 40
	await("the next points", want)
}

func (b bundle) tryRecordOrFail(t *testing.T, svc *leaderboard.Service, e leaderboard.Entry) {
	t.Helper()
	if _, err := b.tryRecord(svc, e); err != nil {
		t.Fatal(err)
	}
}

func equalPoints(got, want map[string]int64) bool {
	if got == nil {
		return false
	}
	n := 0
	for k, v := range got {
		if v != 0 {
			n++
			if want[k] != v {
				return false
			}
		}
	}
	return n == len(want)
}
