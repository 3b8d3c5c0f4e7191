-- +goose Up

-- When a change was appended, for the feed's lag in seconds. Existing rows
-- get the migration's time (a constant default: no table rewrite).
ALTER TABLE event_changes ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

-- The change a consumer of a company fails to apply, while the feed retries
-- it with backoff: at most one per consumer and company, since the consumer
-- does not pass it (its company's later changes wait, in order).
CREATE TABLE feed_failures (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    consumer        text NOT NULL,
    seq             bigint NOT NULL,
    attempts        integer NOT NULL,
    error           text NOT NULL,
    first_failed_at timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, consumer)
);

-- Changes a consumer skipped: those that kept failing (follows = 0), and the
-- later changes of the same event version, parked behind them so that a
-- version's changes are always applied in order (follows = the seq of the
-- change they wait behind). An operator retries or discards them; a retry
-- applies the change and marks it retried in one transaction.
CREATE TABLE feed_dead_letters (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL,
    consumer        text NOT NULL,
    seq             bigint NOT NULL,
    version_id      uuid NOT NULL,
    sign            smallint NOT NULL CHECK (sign IN (-1, 1)),
    state           text NOT NULL CHECK (state IN ('dead', 'retrying', 'retried', 'discarded')),
    follows         bigint NOT NULL DEFAULT 0,
    attempts        integer NOT NULL,
    error           text NOT NULL,
    first_failed_at timestamptz NOT NULL,
    dead_at         timestamptz NOT NULL,
    resolved_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, consumer, seq)
);
CREATE INDEX feed_dead_letters_open ON feed_dead_letters (tenant_id, consumer, version_id)
    WHERE state IN ('dead', 'retrying');

ALTER TABLE feed_failures ENABLE ROW LEVEL SECURITY;
ALTER TABLE feed_failures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feed_failures
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE feed_dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE feed_dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feed_dead_letters
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE feed_dead_letters, feed_failures;
ALTER TABLE event_changes DROP COLUMN created_at;
