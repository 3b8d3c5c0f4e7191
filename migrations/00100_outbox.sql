-- +goose Up

-- The transactional outbox (internal/outbox): domain events appended in the
-- transaction of the change that causes them, read by named consumers that
-- each keep their own cursor. A company's messages commit in seq order
-- (appends take a per-company transaction lock), so a cursor never passes a
-- message still to commit.
CREATE SEQUENCE outbox_seq;

CREATE TABLE outbox_messages (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    seq         bigint NOT NULL,
    id          uuid NOT NULL,
    kind        text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,62}$'),
    -- A producer's key: a message appended again under the same key is
    -- stored once.
    key         text,
    -- The people, challenges, items... the message is about.
    subject_ids uuid[] NOT NULL DEFAULT '{}',
    payload     jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX outbox_messages_key ON outbox_messages (tenant_id, key) WHERE key IS NOT NULL;

-- Each consumer's position per company, advanced in the transaction of its
-- effects; failures and retry_at carry the backoff of a failing message.
CREATE TABLE outbox_cursors (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    consumer   text NOT NULL,
    seq        bigint NOT NULL DEFAULT 0,
    failures   integer NOT NULL DEFAULT 0,
    retry_at   timestamptz,
    last_error text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consumer)
);

-- Messages a consumer gave up on after its maximum attempts: the cursor
-- moved past them so that the company's later messages flow again.
CREATE TABLE outbox_dead_letters (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    consumer  text NOT NULL,
    seq       bigint NOT NULL,
    kind      text NOT NULL,
    attempts  integer NOT NULL,
    error     text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consumer, seq)
);

ALTER TABLE outbox_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox_messages
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE outbox_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox_cursors
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE outbox_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox_dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox_dead_letters
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE outbox_dead_letters, outbox_cursors, outbox_messages;
DROP SEQUENCE outbox_seq;
