-- +goose Up

-- Before occurred_at was bounded, an event dated far in the future (9999)
-- moved its source's watermark there, and the source counted as having
-- reached the end of every challenge. Bring such watermarks back to the
-- newest event that is not beyond the default tolerance (24 hours ahead);
-- ingestion keeps them there from now on.
SELECT set_config('rallye.all_tenants', 'on', true);

UPDATE event_sources s SET newest_event_at = coalesce(
        (SELECT max(e.occurred_at) FROM events e
         WHERE e.tenant_id = s.tenant_id AND e.source = s.source
           AND e.occurred_at <= now() + interval '24 hours'),
        least(s.last_received_at, now()))
    WHERE s.newest_event_at > now() + interval '24 hours';

-- +goose Down
SELECT 1;
