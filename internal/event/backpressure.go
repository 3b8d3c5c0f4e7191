package event

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/rallye"
)

// Backpressure.
//
// Ingestion can run faster than the change feed's consumers apply what it
// stores: then KPIs, mission progress, points and live ranks fall behind
// without bound, and the events accepted are not shown. A company whose
// consumers are behind by more than MaxLag (the age of the oldest change
// one of them has not applied) is therefore refused new events, with
// resource_exhausted and a hint of when to retry, until they catch up. The
// refusal is per company: another company's ingestion and its consumers go
// on. A change that a consumer fails to apply and retries with backoff
// holds the company's later changes back too, so it also counts.

// ReasonBackpressure is the google.rpc.ErrorInfo reason of a call refused
// because the company's consumers are behind.
const ReasonBackpressure = "INGESTION_BACKPRESSURE"

// DefaultLagCheck is how often a server reads a company's lag at most.
const DefaultLagCheck = 100 * time.Millisecond

// Backpressure refuses a company's events while its consumers are behind.
type Backpressure struct {
	// MaxLag is the lag past which a company's events are refused (0: never).
	MaxLag time.Duration
	// Consumers names the consumers whose lag counts (Feed.Consumers).
	Consumers func() []string
	// Check bounds how often a company's lag is read (DefaultLagCheck
	// unless set): calls in between use the last reading.
	Check time.Duration

	mu       sync.Mutex
	readings map[uuid.UUID]*lagReading
}

type lagReading struct {
	at      time.Time
	lag     time.Duration
	reading bool
}

// admit refuses the call when the company's consumers are behind.
func (s *Store) admit(ctx context.Context, tenantID uuid.UUID) error {
	b := s.Backpressure
	if b == nil || b.MaxLag <= 0 || b.Consumers == nil {
		return nil
	}
	lag, err := b.lag(ctx, s, tenantID)
	if err != nil || lag <= b.MaxLag {
		return err
	}
	wait := min(max(lag-b.MaxLag, time.Second), 30*time.Second).Round(time.Second)
	return &rallye.Error{Code: rallye.CodeResourceExhausted, Reason: ReasonBackpressure, RetryAfter: wait,
		Message: fmt.Sprintf("the company's earlier events are not applied yet (KPIs and ranks are %.1f s behind, more than %s): retry in %s",
			lag.Seconds(), b.MaxLag, wait)}
}

// lag is the company's last reading, read again when older than Check (by
// one caller; the others use the last one meanwhile).
func (b *Backpressure) lag(ctx context.Context, s *Store, tenantID uuid.UUID) (time.Duration, error) {
	every := b.Check
	if every <= 0 {
		every = DefaultLagCheck
	}
	now := s.Now()
	b.mu.Lock()
	if b.readings == nil {
		b.readings = map[uuid.UUID]*lagReading{}
	}
	r := b.readings[tenantID]
	if r == nil {
		r = &lagReading{}
		b.readings[tenantID] = r
	}
	if r.reading || now.Sub(r.at) < every {
		lag := r.lag
		b.mu.Unlock()
		return lag, nil
	}
	r.reading = true
	b.mu.Unlock()
	lag, err := s.readLag(ctx, tenantID, b.Consumers())
	b.mu.Lock()
	r.reading = false
	if err == nil {
		r.at, r.lag = now, lag
	}
	b.mu.Unlock()
	return lag, err
}

// readLag is the age of the oldest change of the company that one of the
// consumers has not applied (0 when they are all caught up).
func (s *Store) readLag(ctx context.Context, tenantID uuid.UUID, consumers []string) (time.Duration, error) {
	var seconds float64
	err := s.db.ReadTenant(ctx, tenantID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM now() - (
				SELECT e.created_at FROM event_changes e
				WHERE e.tenant_id = $1 AND e.seq > (
					SELECT coalesce(min(coalesce(f.seq, 0)), 0) FROM unnest($2::text[]) AS c(consumer)
					LEFT JOIN feed_cursors f ON f.tenant_id = $1 AND f.consumer = c.consumer)
				ORDER BY e.seq LIMIT 1)), 0)::float8`, tenantID, consumers).Scan(&seconds)
	})
	if err != nil {
		return 0, fmt.Errorf("read the feed's lag: %w", err)
	}
	return time.Duration(max(seconds, 0) * float64(time.Second)), nil
}
