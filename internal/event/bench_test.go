package event_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkIngest measures the ingestion transaction alone (no RPC, no
// feed consumers), in batches of 1,000 generated events.
func BenchmarkIngest(b *testing.B) {
	bb := setup(b, 100)
	deliveries, _ := bb.dataset(b, 3, 40)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for i := 0; i < b.N; i++ {
		lo := (i * 1000) % (len(deliveries) - 1000)
		if _, err := bb.store.Ingest(ctx, bb.op, rowsOf(deliveries[lo:lo+1000])); err != nil {
			b.Fatal(err)
		}
		n += 1000
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
}
