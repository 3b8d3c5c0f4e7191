-- +goose Up

-- HR analytics (internal/analytics). A person's hire date feeds tenure bands
-- and the onboarding ramp; NULL when the company never said it.
ALTER TABLE users ADD COLUMN hire_date date
    CHECK (hire_date IS NULL OR hire_date BETWEEN DATE '1950-01-01' AND DATE '2099-12-31');

-- A company's analytics rules; a company without a row has the defaults
-- (analytics.DefaultSettings). min_group_size: no aggregate over fewer people
-- is shown, so that nobody's numbers can be read out of a small group.
CREATE TABLE analytics_settings (
    tenant_id      uuid PRIMARY KEY REFERENCES tenants (id),
    min_group_size integer NOT NULL CHECK (min_group_size BETWEEN 2 AND 1000),
    updated_by     uuid,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE analytics_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON analytics_settings
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- Participation reads a challenge's awards and submissions per person.
CREATE INDEX challenge_awards_user ON challenge_awards (tenant_id, challenge_id, user_id);
CREATE INDEX mission_submissions_user ON mission_submissions (tenant_id, challenge_id, user_id);

-- +goose Down
DROP INDEX mission_submissions_user;
DROP INDEX challenge_awards_user;
DROP TABLE analytics_settings;
ALTER TABLE users DROP COLUMN hire_date;
