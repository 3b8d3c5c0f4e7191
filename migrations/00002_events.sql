-- +goose Up

-- Money KPIs are computed in one currency per company.
ALTER TABLE tenants ADD COLUMN currency text NOT NULL DEFAULT 'EUR' CHECK (currency ~ '^[A-Z]{3}$');

-- Every version of every event, immutable: a correction adds a version, so
-- consumers can take back exactly what the previous version contributed.
CREATE TABLE event_versions (
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    id                     uuid NOT NULL,
    source                 text NOT NULL,
    external_id            text NOT NULL,
    revision               bigint NOT NULL,
    type                   text NOT NULL,
    occurred_at            timestamptz NOT NULL,
    retracted              boolean NOT NULL DEFAULT false,
    user_id                uuid,
    rep_external_id        text,
    team_ids               uuid[] NOT NULL DEFAULT '{}',
    account_id             text,
    opportunity_id         text,
    lead_id                text,
    amount                 bigint,
    gross_margin           bigint,
    segment                text,
    product                text,
    deal_kind              text,
    opportunity_created_at timestamptz,
    stage                  text,
    from_stage             text,
    stage_entered_at       timestamptz,
    lead_created_at        timestamptz,
    ticket_opened_at       timestamptz,
    score                  integer,
    discovery_completed    boolean NOT NULL DEFAULT false,
    content_id             text,
    channel                text,
    attributes             jsonb,
    received_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- The current version of each source event, and whether it counts (not
-- retracted, not withdrawn by a deal.reopened). The columns after version_id
-- repeat what the deal rules need, to decide without reading versions.
CREATE TABLE events (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    source         text NOT NULL,
    external_id    text NOT NULL,
    version_id     uuid NOT NULL,
    revision       bigint NOT NULL,
    type           text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    opportunity_id text,
    user_id        uuid,
    retracted      boolean NOT NULL,
    counted        boolean NOT NULL,
    PRIMARY KEY (tenant_id, source, external_id)
);
CREATE INDEX events_deal ON events (tenant_id, source, opportunity_id) WHERE opportunity_id IS NOT NULL;
CREATE INDEX events_received ON events (tenant_id, version_id);

-- The change feed: +1 when a version starts counting, -1 when it stops.
-- Consumers (KPI roll-ups, mission progress...) read it in seq order with
-- their own cursor. Ingestion appends a company's changes last, under a
-- transaction lock per company, so that they commit in seq order and a
-- consumer never passes a seq whose transaction has yet to commit.
CREATE TABLE event_changes (
    tenant_id  uuid NOT NULL,
    seq        bigint GENERATED ALWAYS AS IDENTITY,
    version_id uuid NOT NULL,
    sign       smallint NOT NULL CHECK (sign IN (-1, 1)),
    PRIMARY KEY (tenant_id, seq)
);

-- Per source: how far its data goes (newest occurred_at delivered), when it
-- last sent something, and how many events it sent.
CREATE TABLE event_sources (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    source           text NOT NULL,
    newest_event_at  timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL,
    events           bigint NOT NULL,
    PRIMARY KEY (tenant_id, source)
);

-- Each consumer's position in the feed of each company.
CREATE TABLE feed_cursors (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    consumer   text NOT NULL,
    seq        bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consumer)
);

ALTER TABLE event_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_versions
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE event_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_changes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_changes
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE event_sources ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_sources FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_sources
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE feed_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE feed_cursors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON feed_cursors
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE feed_cursors, event_sources, event_changes, events, event_versions;
ALTER TABLE tenants DROP COLUMN currency;
