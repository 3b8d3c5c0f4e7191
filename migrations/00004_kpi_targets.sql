-- +goose Up

-- Targets per KPI, period kind and scope (scope_kind 0 company with the nil
-- uuid, 1 team, 2 person), with the thresholds that decide the status.
CREATE TABLE kpi_targets (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    kpi_id      uuid NOT NULL,
    period_kind text NOT NULL CHECK (period_kind IN ('day', 'week', 'month', 'quarter', 'year')),
    scope_kind  smallint NOT NULL CHECK (scope_kind IN (0, 1, 2)),
    scope_id    uuid NOT NULL,
    target      double precision NOT NULL,
    at_risk     double precision NOT NULL,
    off_track   double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT kpi_targets_scope_key UNIQUE (tenant_id, kpi_id, period_kind, scope_kind, scope_id),
    FOREIGN KEY (tenant_id, kpi_id) REFERENCES kpi_definitions (tenant_id, id)
);

-- The last status seen for a target in a period: alerts are raised on a
-- change of status, not on every event.
CREATE TABLE kpi_alert_states (
    tenant_id  uuid NOT NULL,
    target_id  uuid NOT NULL,
    period_key text NOT NULL,
    status     smallint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, target_id, period_key),
    FOREIGN KEY (tenant_id, target_id) REFERENCES kpi_targets (tenant_id, id) ON DELETE CASCADE
);

-- Alerts: one per target, period and level (2 at risk, 3 off track), raised
-- the first time the status crosses into that level.
CREATE TABLE kpi_alerts (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    target_id       uuid NOT NULL,
    kpi_id          uuid NOT NULL,
    period_kind     text NOT NULL,
    period_key      text NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    scope_kind      smallint NOT NULL,
    scope_id        uuid NOT NULL,
    level           smallint NOT NULL CHECK (level IN (2, 3)),
    value           double precision,
    projection      double precision,
    target          double precision NOT NULL,
    owner_id        uuid NOT NULL,
    raised_at       timestamptz NOT NULL,
    acknowledged_at timestamptz,
    acknowledged_by uuid,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT kpi_alerts_once UNIQUE (tenant_id, target_id, period_key, level),
    FOREIGN KEY (tenant_id, kpi_id) REFERENCES kpi_definitions (tenant_id, id)
);
CREATE INDEX kpi_alerts_recent ON kpi_alerts (tenant_id, raised_at DESC);

-- Action plans (the seed article's six-step method): a decision question, a
-- KPI, an action with an owner and a deadline, and a success criterion
-- evaluated from the KPI at the deadline.
CREATE TABLE kpi_action_plans (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    kpi_id         uuid NOT NULL,
    question       text NOT NULL,
    action         text NOT NULL,
    hypotheses     text NOT NULL DEFAULT '',
    owner_id       uuid NOT NULL,
    deadline       timestamptz NOT NULL,
    criterion      jsonb NOT NULL,
    alert_id       uuid,
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'succeeded', 'failed', 'no_data')),
    measured_value double precision,
    evaluated_at   timestamptz,
    learnings      text NOT NULL DEFAULT '',
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, kpi_id) REFERENCES kpi_definitions (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX kpi_action_plans_deadline ON kpi_action_plans (tenant_id, deadline);

ALTER TABLE kpi_targets ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_targets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_targets
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_alert_states ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_alert_states FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_alert_states
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_alerts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_alerts
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE kpi_action_plans ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_action_plans FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_action_plans
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE kpi_action_plans, kpi_alerts, kpi_alert_states, kpi_targets;
