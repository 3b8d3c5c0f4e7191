package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/rallyehq/rallye/internal/testutil"
)

type jobA struct{ N int }

func (jobA) Kind() string { return "test_a" }

type jobB struct{ N int }

func (jobB) Kind() string { return "test_b" }

// gauges reads rallye_jobs from a registry as series → value.
func gauges(t *testing.T, reg *prometheus.Registry) map[jobSeries]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[jobSeries]float64{}
	for _, f := range families {
		if f.GetName() != "rallye_jobs" {
			continue
		}
		for _, m := range f.GetMetric() {
			var s jobSeries
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "queue":
					s.queue = l.GetValue()
				case "kind":
					s.kind = l.GetValue()
				case "state":
					s.state = l.GetValue()
				}
			}
			out[s] = m.GetGauge().GetValue()
		}
	}
	return out
}

// Jobs of two kinds in three queues, some moved to running or retryable:
// the gauges equal the counts of what the test did; once the jobs are gone,
// the series stay at 0.
func TestJobQueueDepth(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.DB(t)
	client, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewJobQueue(db.Pool, slog.New(slog.NewTextHandler(io.Discard, nil))))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	want := map[jobSeries]float64{}
	var ids []int64
	var series []jobSeries
	for _, queue := range []string{"default", "mail", "rebuild"} {
		for _, args := range []river.JobArgs{jobA{}, jobB{}} {
			for range 1 + rng.IntN(6) {
				res, err := client.Insert(ctx, args, &river.InsertOpts{Queue: queue})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, res.Job.ID)
				series = append(series, jobSeries{queue: queue, kind: args.Kind(), state: "available"})
			}
		}
	}
	for i, id := range ids {
		state := []string{"available", "running", "retryable", "completed"}[rng.IntN(4)]
		if state != "available" {
			finalized := "NULL"
			if state == "completed" {
				finalized = "now()"
			}
			if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`UPDATE river_job SET state = $1, attempt = 1, attempted_at = now(),
				finalized_at = %s WHERE id = $2`, finalized), state, id); err != nil {
				t.Fatal(err)
			}
		}
		if state != "completed" {
			s := series[i]
			s.state = state
			want[s]++
		}
	}
	if got := gauges(t, reg); !maps.Equal(got, want) {
		t.Fatalf("gauges %v, want %v", got, want)
	}

	if _, err := db.Pool.Exec(ctx, `DELETE FROM river_job`); err != nil {
		t.Fatal(err)
	}
	for s := range want {
		want[s] = 0
	}
	if got := gauges(t, reg); !maps.Equal(got, want) {
		t.Fatalf("after the jobs are gone: gauges %v, want %v", got, want)
	}
}
