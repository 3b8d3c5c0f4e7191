package reward

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rallyehq/rallye/internal/outbox"
)

// work is one transaction of the rewards area: what it learns about people
// and the company is cached, and the messages it queues are appended to the
// outbox at the end (flush), as the outbox asks.
type work struct {
	s      *Service
	ctx    context.Context
	tx     pgx.Tx
	tenant uuid.UUID
	msgs   []outbox.Message
	st     *Settings
	folks  map[uuid.UUID]person
}

func (s *Service) newWork(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) *work {
	return &work{s: s, ctx: ctx, tx: tx, tenant: tenantID, folks: map[uuid.UUID]person{}}
}

// announce queues a message.
func (w *work) announce(m outbox.Message) {
	m.TenantID = w.tenant
	w.msgs = append(w.msgs, m)
}

// flush appends the queued messages: the transaction's last statement.
func (w *work) flush() error {
	msgs := w.msgs
	w.msgs = nil
	return outbox.Append(w.ctx, w.tx, msgs...)
}

func (w *work) settings() (Settings, error) {
	if w.st == nil {
		st, err := settings(w.ctx, w.tx, w.tenant)
		if err != nil {
			return Settings{}, err
		}
		w.st = &st
	}
	return *w.st, nil
}

// people returns people of the company (those missing are not in it).
func (w *work) people(ids []uuid.UUID) (map[uuid.UUID]person, error) {
	var missing []uuid.UUID
	for _, id := range ids {
		if _, ok := w.folks[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		ps, err := people(w.ctx, w.tx, w.tenant, missing)
		if err != nil {
			return nil, err
		}
		for id, p := range ps {
			w.folks[id] = p
		}
	}
	out := make(map[uuid.UUID]person, len(ids))
	for _, id := range ids {
		if p, ok := w.folks[id]; ok {
			out[id] = p
		}
	}
	return out, nil
}

// person returns someone of the company; ok is false when they are not.
func (w *work) person(id uuid.UUID) (person, bool, error) {
	ps, err := w.people([]uuid.UUID{id})
	if err != nil {
		return person{}, false, err
	}
	p, ok := ps[id]
	return p, ok, nil
}
