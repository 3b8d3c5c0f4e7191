package app_test

import (
	"context"
	"testing"
	"time"
)

// TestJobQueueQuietAtRest: a server that started, ran its first job
// (the periodic purge of request ids, run at start) and stopped logged
// nothing of River's below WARN; its routine steps used to be most of the
// log at rest.
func TestJobQueueQuietAtRest(t *testing.T) {
	s := serve(t, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// River has started (its "client started" line is written then), elected
	// a leader and worked a job once the purge has completed.
	for {
		var done bool
		err := s.app.DB.Pool.QueryRow(ctx,
			`SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = 'idempotency.purge' AND state = 'completed')`).Scan(&done)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the start-up purge job never completed")
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.cancel()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
	s.done <- nil // for the cleanup
	jobs, quiet := 0, 0
	for _, r := range s.log.records(t) {
		if r["component"] != "jobs" {
			continue
		}
		jobs++
		if r["level"] == "INFO" || r["level"] == "DEBUG" {
			t.Errorf("the job queue logged at %v: %v", r["level"], r)
			continue
		}
		quiet++
	}
	t.Logf("%d job-queue lines, %d at WARN or above", jobs, quiet)
}
