-- +goose Up

-- The first local day with roll-up data per storage scope (company, team
-- set, person). A count or sum over a period in which its scope existed is
-- 0 rather than no value: the scope exists from its creation or from this
-- day, whichever is earlier (a company's history is usually imported after
-- it was created in Rallye). The day only ever moves earlier: a retracted
-- first event does not make the scope's past disappear again.
CREATE TABLE kpi_scope_since (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    scope_kind smallint NOT NULL,
    scope_id   uuid NOT NULL,
    first_day  date NOT NULL,
    PRIMARY KEY (tenant_id, scope_kind, scope_id)
);

ALTER TABLE kpi_scope_since ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_scope_since FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_scope_since
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- Existing roll-ups: their first day per scope.
INSERT INTO kpi_scope_since (tenant_id, scope_kind, scope_id, first_day)
SELECT tenant_id, scope_kind, scope_id, min(day) FROM (
    SELECT tenant_id, scope_kind, scope_id, min(bucket) AS day FROM kpi_sums WHERE grain = 0
    GROUP BY tenant_id, scope_kind, scope_id
    UNION ALL
    SELECT tenant_id, scope_kind, scope_id, min(day) FROM kpi_values GROUP BY tenant_id, scope_kind, scope_id
    UNION ALL
    SELECT tenant_id, scope_kind, scope_id, min(day) FROM kpi_keys GROUP BY tenant_id, scope_kind, scope_id
) d
GROUP BY tenant_id, scope_kind, scope_id;

-- +goose Down
DROP TABLE kpi_scope_since;
