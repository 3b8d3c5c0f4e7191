-- +goose Up

-- Request ids belong to their caller (the person or the API key), as
-- Stripe's idempotency keys belong to an account: another caller sending
-- the same id makes a request of its own, and never receives the first
-- caller's object. Existing rows keep working for the caller that created
-- their object when the object says who that was; the others (teams and
-- people, which do not record their creator, and objects an API key
-- created) get the nil caller, which no request uses: a retry of those
-- across this migration creates anew, and they expire with the retention.

-- The rows of every company (row-level security is forced on the table).
SELECT set_config('rallye.all_tenants', 'on', true);

ALTER TABLE request_ids ADD COLUMN caller_id uuid;

UPDATE request_ids r SET caller_id = c.created_by
FROM challenges c
WHERE r.operation IN ('CreateChallenge', 'CreateChallengeFromTemplate')
    AND c.tenant_id = r.tenant_id AND c.id = r.resource_id;

UPDATE request_ids r SET caller_id = s.user_id
FROM mission_submissions s
WHERE r.operation = 'SubmitMission' AND s.tenant_id = r.tenant_id AND s.id = r.resource_id;

UPDATE request_ids r SET caller_id = a.created_by
FROM kpi_action_plans a
WHERE r.operation = 'CreateActionPlan' AND a.tenant_id = r.tenant_id AND a.id = r.resource_id;

UPDATE request_ids r SET caller_id = v.created_by
FROM kpi_versions v
WHERE r.operation = 'CreateKpi' AND v.tenant_id = r.tenant_id AND v.kpi_id = r.resource_id AND v.version = 1;

UPDATE request_ids SET caller_id = '00000000-0000-0000-0000-000000000000' WHERE caller_id IS NULL;

ALTER TABLE request_ids
    ALTER COLUMN caller_id SET NOT NULL,
    DROP CONSTRAINT request_ids_pkey,
    ADD PRIMARY KEY (tenant_id, caller_id, operation, request_id);

-- +goose Down
SELECT set_config('rallye.all_tenants', 'on', true);

-- Back to one id per company and operation: of the callers who used the
-- same id, the first one keeps it.
DELETE FROM request_ids r
USING request_ids older
WHERE older.tenant_id = r.tenant_id AND older.operation = r.operation AND older.request_id = r.request_id
    AND (older.created_at, older.caller_id) < (r.created_at, r.caller_id);

ALTER TABLE request_ids
    DROP CONSTRAINT request_ids_pkey,
    DROP COLUMN caller_id,
    ADD PRIMARY KEY (tenant_id, operation, request_id);
