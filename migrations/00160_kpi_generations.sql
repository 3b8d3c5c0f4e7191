-- +goose Up

-- A generation per distribution or distinct-key measure and local month:
-- the roll-ups add one to it in the transaction that changes any of that
-- month's rows of kpi_values or kpi_keys (a new event, a correction, a late
-- event for a closed month, a backfill). Readers keep the medians,
-- percentiles and distinct counts of closed periods in memory with the sum
-- of the generations of the months a period covers, and use them only
-- while that sum is unchanged: a cached value is never staler than the
-- roll-ups a reader sees.
CREATE TABLE kpi_generations (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    measure_id uuid NOT NULL,
    month      date NOT NULL,
    gen        bigint NOT NULL,
    PRIMARY KEY (tenant_id, measure_id, month)
);

ALTER TABLE kpi_generations ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi_generations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kpi_generations
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE kpi_generations;
