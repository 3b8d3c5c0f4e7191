-- +goose NO TRANSACTION
-- +goose Up

-- A person's events over a time range, for the baselines a challenge reads
-- when someone joins it (their average deal before the start) and for the
-- strength that pairs duels: without it each of those reads scans the
-- company's events. Built concurrently: ingestion by servers still running
-- the previous version goes on during an upgrade.
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_person_time ON events (tenant_id, user_id, occurred_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS events_person_time;
