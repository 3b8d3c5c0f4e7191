-- +goose Up

-- Personal-data requests (internal/privacy): an admin exports everything
-- Rallye holds about a person, or erases them. The person's row stays as a
-- pseudonym (their id, no name, email, CRM id or hire date: erased_at set)
-- so that points, challenge history and company totals stay whole; their
-- events are detached from them. privacy_requests is the audit trail: who
-- asked what about whom (by id only), when, and what changed.
ALTER TABLE users ADD COLUMN erased_at timestamptz;

CREATE TABLE privacy_requests (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('export', 'erasure')),
    subject_id   uuid NOT NULL,
    requested_by uuid,
    reason       text NOT NULL DEFAULT '',
    summary      jsonb NOT NULL DEFAULT '{}',
    requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX privacy_requests_recent ON privacy_requests (tenant_id, requested_at DESC, id);

ALTER TABLE privacy_requests ENABLE ROW LEVEL SECURITY;
ALTER TABLE privacy_requests FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON privacy_requests
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- The points ledger stays append-only, with one exception: the erasure of
-- a person (internal/privacy) rewrites the causes that carry their name (a
-- manual grant's or a kudos' "by"), announced by a transaction-local
-- setting; amounts, people and keys are never changed by it.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_setting('rallye.erasure', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'points_ledger is append-only: write a correcting entry instead';
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points_ledger is append-only: write a correcting entry instead';
END
$$;
-- +goose StatementEnd
DROP TABLE privacy_requests;
ALTER TABLE users DROP COLUMN erased_at;
