-- +goose Up

-- Events whose rep_external_id no person carries yet: kept (counted
-- nowhere) until a person with that CRM id is created or imported, which
-- ingests them in its own transaction as if they had just arrived; dropped
-- after expires_at (event.ParkedRetention after parking). One row per
-- source event revision, so a re-delivery parks nothing new.
CREATE TABLE parked_events (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL,
    source          text NOT NULL,
    external_id     text NOT NULL,
    revision        bigint NOT NULL,
    rep_external_id text NOT NULL,
    -- The event as the transport decoded it (event.Event in JSON).
    event           jsonb NOT NULL,
    has_amount      boolean NOT NULL,
    parked_at       timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, source, external_id, revision)
);
CREATE INDEX parked_events_rep ON parked_events (tenant_id, rep_external_id);
CREATE INDEX parked_events_expiry ON parked_events (tenant_id, expires_at);

ALTER TABLE parked_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE parked_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON parked_events
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE parked_events;
