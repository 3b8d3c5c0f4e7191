// Package outbox is Rallye's transactional outbox: domain events ("a
// challenge became final", "a badge was earned") appended by their producer
// in the transaction of the change that causes them, and delivered to named
// consumers exactly once, in each company's order.
//
// Producers never know their consumers: a producer appends a typed message
// (its kinds and payload types live in the producer's package, listed in the
// README's "Domain events" table); a consumer registers on a Runner by name
// and receives every message appended after its cursor. The cursor advances
// in the transaction of the consumer's effects, so a message is applied once
// even when two servers run the same consumer (they take turns under an
// advisory lock) or a server stops half-way.
//
// Shared ground: this package imports no domain.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Kind names a message type, such as "challenge.final". Kinds are
// lowercase, dot-separated, and never change meaning: a new payload shape is
// a new kind.
type Kind string

// Message is a domain event to append.
type Message struct {
	TenantID uuid.UUID
	Kind     Kind
	// Key, when set, makes the append idempotent: a message appended again
	// under the same key (per company) is stored once.
	Key string
	// Subjects are the ids the message is about (people, challenges,
	// items), so that a consumer can filter without decoding the payload.
	Subjects []uuid.UUID
	// Payload is marshalled to JSON.
	Payload    any
	OccurredAt time.Time
}

// Delivery is a stored message handed to a consumer.
type Delivery struct {
	TenantID   uuid.UUID
	Seq        int64
	ID         uuid.UUID
	Kind       Kind
	Key        string
	Subjects   []uuid.UUID
	Payload    json.RawMessage
	OccurredAt time.Time
}

// Decode unmarshals the payload into v.
func (d Delivery) Decode(v any) error {
	if err := json.Unmarshal(d.Payload, v); err != nil {
		return fmt.Errorf("decode %s message %d: %w", d.Kind, d.Seq, err)
	}
	return nil
}

// Channel is the PostgreSQL notification channel of appends; the payload is
// the company's id.
const Channel = "rallye_outbox"

var kindPattern = regexp.MustCompile(`^[a-z][a-z0-9_.]{0,62}$`)

// Limits of a message.
const (
	MaxPayloadBytes = 256 << 10
	maxKeyLen       = 200
	MaxSubjects     = 1000
)

// Append appends messages in tx. They become visible to consumers when tx
// commits, and vanish with it if it rolls back.
//
// Call it as the last statement of the transaction: it takes the company's
// outbox lock until commit, so that the company's messages commit in the
// order of their sequence numbers (a consumer's cursor never passes a message
// still to commit). Holding that lock while waiting for other locks could
// deadlock with another producer.
func Append(ctx context.Context, tx pgx.Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	tenant := msgs[0].TenantID
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, appendLock(tenant))
	for i, m := range msgs {
		switch {
		case m.TenantID == uuid.Nil || m.TenantID != tenant:
			return fmt.Errorf("outbox: message %d: every message of an append belongs to one company", i)
		case !kindPattern.MatchString(string(m.Kind)):
			return fmt.Errorf("outbox: message %d: bad kind %q", i, m.Kind)
		case len(m.Key) > maxKeyLen:
			return fmt.Errorf("outbox: message %d: key longer than %d bytes", i, maxKeyLen)
		case len(m.Subjects) > MaxSubjects:
			return fmt.Errorf("outbox: message %d: more than %d subjects", i, MaxSubjects)
		case m.OccurredAt.IsZero():
			return fmt.Errorf("outbox: message %d: no occurred_at", i)
		}
		payload, err := json.Marshal(m.Payload)
		if err != nil {
			return fmt.Errorf("outbox: marshal %s: %w", m.Kind, err)
		}
		if len(payload) > MaxPayloadBytes {
			return fmt.Errorf("outbox: %s payload of %d bytes exceeds %d", m.Kind, len(payload), MaxPayloadBytes)
		}
		subjects := m.Subjects
		if subjects == nil {
			subjects = []uuid.UUID{}
		}
		var key *string
		if m.Key != "" {
			key = &m.Key
		}
		// One statement per message: each takes the next sequence number
		// in order.
		b.Queue(`INSERT INTO outbox_messages (tenant_id, seq, id, kind, key, subject_ids, payload, occurred_at)
			VALUES ($1, nextval('outbox_seq'), $2, $3, $4, $5, $6, $7)
			ON CONFLICT (tenant_id, key) WHERE key IS NOT NULL DO NOTHING`,
			tenant, uuid.Must(uuid.NewV7()), string(m.Kind), key, subjects, payload, m.OccurredAt)
	}
	b.Queue(`SELECT pg_notify($1, $2)`, Channel, tenant.String())
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("append to outbox: %w", err)
	}
	return nil
}

// appendLock is the transaction advisory lock serialising a company's
// appends.
func appendLock(tenantID uuid.UUID) int64 { return lockKey(tenantID, "\x00append") }

func lockKey(tenantID uuid.UUID, name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("outbox"))
	h.Write(tenantID[:])
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// Pending reports whether a consumer has messages of the company left to
// handle, inside the caller's transaction.
func Pending(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, consumer string) (bool, error) {
	var pending bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox_messages m
		WHERE m.tenant_id = $1 AND m.seq > coalesce(
			(SELECT c.seq FROM outbox_cursors c WHERE c.tenant_id = $1 AND c.consumer = $2), 0))`,
		tenantID, consumer).Scan(&pending)
	if err != nil {
		return false, fmt.Errorf("outbox pending: %w", err)
	}
	return pending, nil
}

// DeadLetter is a message a consumer gave up on.
type DeadLetter struct {
	TenantID uuid.UUID
	Consumer string
	Seq      int64
	Kind     Kind
	Attempts int
	Error    string
	FailedAt time.Time
}

// DeadLetters lists a company's dead letters, newest first, inside the
// caller's transaction.
func DeadLetters(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, limit int) ([]DeadLetter, error) {
	rows, err := tx.Query(ctx, `SELECT tenant_id, consumer, seq, kind, attempts, error, failed_at
		FROM outbox_dead_letters WHERE tenant_id = $1 ORDER BY failed_at DESC, seq DESC LIMIT $2`, tenantID, limit)
	if err != nil {
		return nil, fmt.Errorf("read dead letters: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeadLetter, error) {
		var d DeadLetter
		err := r.Scan(&d.TenantID, &d.Consumer, &d.Seq, &d.Kind, &d.Attempts, &d.Error, &d.FailedAt)
		return d, err
	})
}
