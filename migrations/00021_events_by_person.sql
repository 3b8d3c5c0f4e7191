-- +goose Up

-- A person's events over a time range, for the baselines a challenge reads
-- when someone joins it (their average deal before the start) and for the
-- strength that pairs duels: without it each of those reads scans the
-- company's events.
CREATE INDEX events_person_time ON events (tenant_id, user_id, occurred_at);

-- +goose Down
DROP INDEX events_person_time;
