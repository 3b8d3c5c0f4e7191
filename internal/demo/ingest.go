package demo

import (
	"context"
	"errors"
	"time"

	"github.com/rallyehq/rallye/internal/event"
	"github.com/rallyehq/rallye/internal/rallye"
)

// ingest stores the demo's events, waiting out backpressure as the README
// asks of every client: the demo's history is thousands of events sent at
// once, and a server (serve --demo) refuses a company's events while its
// feed consumers are more than RALLYE_INGEST_MAX_LAG behind, which a busy
// machine reaches while the demo seeds.
func ingest(ctx context.Context, store *event.Store, p rallye.Principal, rows []event.Row) (event.Result, error) {
	for {
		out, err := store.Ingest(ctx, p, rows)
		var re *rallye.Error
		if err == nil || !errors.As(err, &re) || re.Reason != event.ReasonBackpressure {
			return out, err
		}
		wait := re.RetryAfter
		if wait <= 0 {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(wait):
		}
	}
}
