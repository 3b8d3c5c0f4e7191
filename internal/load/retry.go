package load

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// Client retries, as the README tells integrations to: a call answered
// unavailable (PostgreSQL or Redis momentarily out of reach, or too much
// contention) or resource_exhausted (backpressure: the company's KPIs and
// ranks are behind) is sent again after the server's RetryInfo delay, doubling
// (jittered) up to retryMaxWait, for at most retryBudget. Sending an event
// batch again is safe: events are stored once, a retried batch reports
// what the first attempt stored as duplicates.
const (
	retryFirstWait = 250 * time.Millisecond
	retryMaxWait   = 10 * time.Second
	retryBudget    = 5 * time.Minute
)

// retryUnavailable calls fn until it succeeds, fails with another code than
// unavailable or resource_exhausted, or the budget is spent; retries counts
// the retries.
func retryUnavailable[T any](ctx context.Context, retries func(), fn func() (T, error)) (T, error) {
	wait := retryFirstWait
	deadline := time.Now().Add(retryBudget)
	for {
		out, err := fn()
		if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeResourceExhausted || time.Now().After(deadline) {
			return out, err
		}
		d := max(wait, serverDelay(err))
		d = d/2 + rand.N(d/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return out, err
		case <-t.C:
		}
		if retries != nil {
			retries()
		}
		wait = min(2*wait, retryMaxWait)
	}
}

// serverDelay is the server's google.rpc.RetryInfo delay, if it gave one.
func serverDelay(err error) time.Duration {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return 0
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				return ri.GetRetryDelay().AsDuration()
			}
		}
	}
	return 0
}
