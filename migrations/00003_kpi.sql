-- +goose Up

-- KPI definitions. The key is the stable name formulas and missions refer
-- to; everything else lives in versions, so that changing a formula adds a
-- version instead of rewriting the past.
CREATE TABLE kpi_definitions (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    id         uuid NOT NULL,
    key        text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{1,62}$'),
    archived   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT kpi_definitions_key_key UNIQUE (tenant_id, key)
);

-- Each version applies to the periods that end after effective_from (up to
-- the next version's); a period is read with the version in force at its end.
CREATE TABLE kpi_versions (
    tenant_id      uuid NOT NULL,
    kpi_id         uuid NOT NULL,
    version        integer NOT NULL CHECK (version > 0),
    effective_from timestamptz NOT NULL,
    definition     jsonb NOT NULL,
    owner_id       uuid NOT NULL,
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kpi_id, version),
    FOREIGN KEY (tenant_id, kpi_id) REFERENCES kpi_definitions (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES users (tenant_id, id)
);

-- Base measures that KPI versions compile into, identified by a hash of
-- their definition so that KPIs share them and a changed formula gets a new
-- one. The roll-up consumer applies feed changes after applied_from; the
-- backfill job computes everything up to it from the stored feed, then sets
-- ready.
CREATE TABLE kpi_measures (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    id               uuid NOT NULL,
    spec             jsonb NOT NULL,
    applied_from_seq bigint,
    ready            boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    ready_at         timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- Team attribution sets: an event counts for the set of teams its rep was in
-- (event.Event.TeamIDs). Rolling up per set rather than per team counts an
-- event once for a parent team even when its rep sits in two sub-teams.
CREATE TABLE kpi_team_sets (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id        uuid NOT NULL,
    team_ids  uuid[] NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- Additive roll-ups: count and sum per measure, scope, breakdown value and
-- local day (grain 0) or local month (grain 1, company and team sets only).
-- scope_kind: 0 company (scope_id nil uuid), 1 team set, 2 person.
CREATE TABLE kpi_sums (
    tenant_id  uuid NOT NULL,
    scope_kind smallint NOT NULL,
    scope_id   uuid NOT NULL,
    grain      smallint NOT NULL,
    measure_id uuid NOT NULL,
    bucket     date NOT NULL,
    dim        text NOT NULL,
    n          bigint NOT NULL,
    total      double precision NOT NULL,
    PRIMARY KEY (tenant_id, scope_kind, scope_id, grain, measure_id, bucket, dim)
);

-- Value distributions (medians, percentiles): how many events gave each
-- value, per local day.
CREATE TABLE kpi_values (
    tenant_id  uuid NOT NULL,
    scope_kind smallint NOT NULL,
    scope_id   uuid NOT NULL,
    measure_id uuid NOT NULL,
    day        date NOT NULL,
    dim        text NOT NULL,
    value      double precision NOT NULL,
    n          integer NOT NULL,
    PRIMARY KEY (tenant_id, scope_kind, scope_id, measure_id, day, dim, value)
);

-- Distinct keys (reps, accounts...) per local day, for distinct counts.
CREATE TABLE kpi_keys (
    tenant_id  uuid NOT NULL,
    scope_kind smallint NOT NULL,
    scope_id   uuid NOT NULL,
    measure_id uuid NOT NULL,
    day        date NOT NULL,
    dim        text NOT NULL,
    key        text NOT NULL,
    n          integer NOT NULL,
    PRIMARY KEY (tenant_id, scope_kind, scope_id, measure_id, day, dim, key)
);

-- The counted events of each opportunity, from which the roll-up consumer
-- derives when it enters and leaves the pipeline and when it is at risk.
CREATE TABLE kpi_opportunities (
    tenant_id      uuid NOT NULL,
    source         text NOT NULL,
    opportunity_id text NOT NULL,
    events         jsonb NOT NULL,
    PRIMARY KEY (tenant_id, source, opportunity_id)
);

ALTER TABLE kpi_definitions ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_definitions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_definitions
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_versions
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_measures ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_measures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_measures
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_team_sets ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_team_sets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_team_sets
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_sums ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_sums FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_sums
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_values ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_values FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_values
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_keys
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_opportunities ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_opportunities FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_opportunities
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE kpi_opportunities, kpi_keys, kpi_values, kpi_sums, kpi_team_sets, kpi_measures, kpi_versions, kpi_definitions;
