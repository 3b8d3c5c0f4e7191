-- +goose Up

-- Generations per local day too (grain 0; grain 1 is the month): readers
-- also keep the days of the current period before today, which today's
-- events must not invalidate.
ALTER TABLE kpi_generations RENAME COLUMN month TO bucket;
ALTER TABLE kpi_generations ADD COLUMN grain smallint NOT NULL DEFAULT 1;
ALTER TABLE kpi_generations ALTER COLUMN grain DROP DEFAULT;
ALTER TABLE kpi_generations DROP CONSTRAINT kpi_generations_pkey;
ALTER TABLE kpi_generations ADD PRIMARY KEY (tenant_id, measure_id, grain, bucket);

-- +goose Down
DELETE FROM kpi_generations WHERE grain = 0;
ALTER TABLE kpi_generations DROP CONSTRAINT kpi_generations_pkey;
ALTER TABLE kpi_generations DROP COLUMN grain;
ALTER TABLE kpi_generations RENAME COLUMN bucket TO month;
ALTER TABLE kpi_generations ADD PRIMARY KEY (tenant_id, measure_id, month);
