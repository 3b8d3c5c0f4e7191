-- +goose Up

-- Row-level security is a second wall behind the tenant_id conditions every
-- query carries: a transaction sees one company's rows only after
-- postgres.DB.InTenant set rallye.tenant_id, or all of them when
-- postgres.DB.AcrossTenants explicitly set rallye.all_tenants (operator
-- commands, schedulers, credential look-up). Without either it sees nothing.
CREATE FUNCTION rallye_tenant() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('rallye.tenant_id', true), '')::uuid $$;

CREATE FUNCTION rallye_all_tenants() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('rallye.all_tenants', true), '') = 'on' $$;

CREATE TABLE tenants (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    slug           text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    time_zone      text NOT NULL,
    default_locale text NOT NULL CHECK (default_locale IN ('fr', 'en')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    name        text NOT NULL,
    parent_id   uuid,
    external_id text,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT teams_parent_fkey FOREIGN KEY (tenant_id, parent_id) REFERENCES teams (tenant_id, id),
    CONSTRAINT teams_external_id_key UNIQUE (tenant_id, external_id),
    CHECK (parent_id IS NULL OR parent_id <> id)
);

CREATE TABLE users (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    display_name text NOT NULL,
    email        text NOT NULL,
    locale       text NOT NULL CHECK (locale IN ('fr', 'en')),
    time_zone    text NOT NULL DEFAULT '',
    external_id  text,
    roles        text[] NOT NULL CHECK (roles <@ ARRAY['rep', 'manager', 'hr', 'admin'] AND cardinality(roles) > 0),
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT users_external_id_key UNIQUE (tenant_id, external_id)
);
CREATE UNIQUE INDEX users_email_key ON users (tenant_id, lower(email));

CREATE TABLE team_members (
    tenant_id uuid NOT NULL,
    team_id   uuid NOT NULL,
    user_id   uuid NOT NULL,
    added_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, team_id, user_id),
    FOREIGN KEY (tenant_id, team_id) REFERENCES teams (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX team_members_user ON team_members (tenant_id, user_id);

CREATE TABLE api_keys (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    name         text NOT NULL,
    prefix       text NOT NULL,
    secret_hash  bytea NOT NULL UNIQUE,
    roles        text[] NOT NULL CHECK (roles <@ ARRAY['admin', 'integration'] AND cardinality(roles) > 0),
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, id)
);

-- Client-chosen idempotency keys of create operations: the key commits in the
-- same transaction as the object it created, so a retry finds one or the other
-- never half of it.
CREATE TABLE request_ids (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    operation    text NOT NULL,
    request_id   text NOT NULL,
    request_hash bytea NOT NULL,
    resource_id  uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, operation, request_id)
);

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE teams FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON teams
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE team_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE team_members FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON team_members
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE request_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE request_ids FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON request_ids
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE request_ids, api_keys, team_members, users, teams, tenants;
DROP FUNCTION rallye_all_tenants();
DROP FUNCTION rallye_tenant();
