-- +goose Up

-- The wallet. points_ledger stays the one source of truth for points: every
-- change of a person's points, append-only, with what it is for (kind) and a
-- link to what caused it (cause, JSON whose shape the producer documents:
-- challenge.Cause for challenge points, reward's causes for the others). The
-- leaderboard writes it (Scores.Record); the rewards area reads it.
--
-- Balances derive from it:
--   lifetime  = entries of every kind but redemption and refund (spending
--               does not lower it; levels use it);
--   pending   = entries of challenges whose results are not final yet
--               (corrections from the CRM may still take them back);
--   spendable = every entry but pending ones (what the catalogue costs).
-- wallet_balances caches them per person, kept equal to the ledger by the
-- triggers below in the statement that writes the ledger, and its CHECK
-- makes "never below zero" the database's guarantee under concurrent
-- spending: a second spender waits for the first one's row and fails the
-- check.
ALTER TABLE points_ledger
    ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
    ADD COLUMN kind text NOT NULL DEFAULT 'scoring'
        CHECK (kind IN ('scoring', 'mission', 'correction', 'rank_reward', 'threshold_reward', 'manual', 'kudos',
                        'redemption', 'refund', 'adjustment')),
    ADD COLUMN cause jsonb;

UPDATE points_ledger SET kind = CASE
    WHEN reason LIKE 'mission:%' THEN 'mission'
    WHEN reason IN ('correction', 'cancelled') THEN 'correction'
    ELSE 'scoring' END;
-- Names for the history lines of the entries written before causes existed.
UPDATE points_ledger l SET cause = jsonb_strip_nulls(jsonb_build_object(
        'challenge_id', c.id,
        'challenge', c.definition->'name',
        'undo', CASE WHEN l.kind = 'correction' THEN
            CASE WHEN l.key LIKE '%:revoke:%' OR l.key LIKE '%:cancel:mission:%' THEN 'mission' ELSE 'event' END END,
        'cancelled', CASE WHEN l.key LIKE 'challenge:%:cancel:%' THEN true END))
    FROM challenges c
    WHERE c.tenant_id = l.tenant_id AND c.id = l.challenge_id;
UPDATE points_ledger l SET cause = l.cause || jsonb_build_object('mission_id', m.id, 'mission', m.definition->'name')
    FROM challenge_missions m
    WHERE l.challenge_id IS NOT NULL AND l.key ~ '^challenge:[^:]+:(cancel:)?mission:'
      AND m.tenant_id = l.tenant_id AND m.challenge_id = l.challenge_id
      AND m.id::text = split_part(l.key, ':', CASE WHEN l.key LIKE 'challenge:%:cancel:mission:%' THEN 5 ELSE 4 END);

CREATE INDEX points_ledger_history ON points_ledger (tenant_id, user_id, seq DESC);
CREATE INDEX points_ledger_challenge ON points_ledger (tenant_id, challenge_id, user_id) WHERE challenge_id IS NOT NULL;

-- Challenges whose points became spendable: written by the rewards area when
-- it receives the challenge's final results.
CREATE TABLE wallet_settlements (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    challenge_id uuid NOT NULL,
    settled_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, challenge_id)
);

CREATE TABLE wallet_balances (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    user_id    uuid NOT NULL,
    spendable  bigint NOT NULL DEFAULT 0 CONSTRAINT wallet_balances_spendable_check CHECK (spendable >= 0),
    lifetime   bigint NOT NULL DEFAULT 0,
    pending    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);

-- Existing data: no challenge is settled yet (the rewards area settles the
-- final ones as it receives their results, below); a person whose settled
-- points are negative (a company's own scoring outside challenges) gets the
-- adjustment that brings them to zero, as the settlement does.
INSERT INTO points_ledger (tenant_id, key, user_id, points, earned_at, reason, kind, cause)
SELECT tenant_id, 'wallet:opening:' || user_id, user_id, -sum(points), now(), 'adjustment', 'adjustment',
       '{"note": "opening"}'::jsonb
FROM points_ledger WHERE challenge_id IS NULL
GROUP BY tenant_id, user_id HAVING sum(points) < 0;

INSERT INTO wallet_balances (tenant_id, user_id, spendable, lifetime, pending)
SELECT tenant_id, user_id,
       coalesce(sum(points) FILTER (WHERE challenge_id IS NULL), 0),
       coalesce(sum(points) FILTER (WHERE kind NOT IN ('redemption', 'refund')), 0),
       coalesce(sum(points) FILTER (WHERE challenge_id IS NOT NULL), 0)
FROM points_ledger GROUP BY tenant_id, user_id;

-- +goose StatementBegin
CREATE FUNCTION wallet_apply_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The rows exist, then are locked in key order (concurrent writers lock
    -- balances in the same order), then move. An upsert would check the
    -- CHECK on the proposed row (a negative amount) before finding the
    -- existing one.
    INSERT INTO wallet_balances (tenant_id, user_id)
    SELECT DISTINCT tenant_id, user_id FROM new_entries ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM wallet_balances b
    WHERE (b.tenant_id, b.user_id) IN (SELECT tenant_id, user_id FROM new_entries)
    ORDER BY b.tenant_id, b.user_id FOR UPDATE;
    UPDATE wallet_balances b SET
        spendable = b.spendable + x.spendable,
        lifetime = b.lifetime + x.lifetime,
        pending = b.pending + x.pending,
        updated_at = now()
    FROM (SELECT n.tenant_id, n.user_id,
                 coalesce(sum(n.points) FILTER (WHERE NOT n.pend), 0) AS spendable,
                 coalesce(sum(n.points) FILTER (WHERE n.kind NOT IN ('redemption', 'refund')), 0) AS lifetime,
                 coalesce(sum(n.points) FILTER (WHERE n.pend), 0) AS pending
          FROM (SELECT e.tenant_id, e.user_id, e.points, e.kind,
                       e.challenge_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM wallet_settlements s
                           WHERE s.tenant_id = e.tenant_id AND s.challenge_id = e.challenge_id) AS pend
                FROM new_entries e) n
          GROUP BY n.tenant_id, n.user_id) x
    WHERE b.tenant_id = x.tenant_id AND b.user_id = x.user_id;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER wallet_apply_ledger AFTER INSERT ON points_ledger
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION wallet_apply_ledger();

-- +goose StatementBegin
CREATE FUNCTION wallet_apply_settlement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM wallet_balances b
    WHERE b.tenant_id = NEW.tenant_id AND b.user_id IN (SELECT user_id FROM points_ledger
        WHERE tenant_id = NEW.tenant_id AND challenge_id = NEW.challenge_id)
    ORDER BY b.user_id FOR UPDATE;
    UPDATE wallet_balances b SET spendable = b.spendable + x.p, pending = b.pending - x.p, updated_at = now()
    FROM (SELECT user_id, sum(points) AS p FROM points_ledger
          WHERE tenant_id = NEW.tenant_id AND challenge_id = NEW.challenge_id
          GROUP BY user_id) x
    WHERE b.tenant_id = NEW.tenant_id AND b.user_id = x.user_id;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER wallet_apply_settlement AFTER INSERT ON wallet_settlements
    FOR EACH ROW EXECUTE FUNCTION wallet_apply_settlement();

-- The ledger is append-only.
-- +goose StatementBegin
CREATE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points_ledger is append-only: write a correcting entry instead';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER points_ledger_append_only BEFORE UPDATE OR DELETE ON points_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION points_ledger_append_only();

ALTER TABLE wallet_settlements ENABLE ROW LEVEL SECURITY;
ALTER TABLE wallet_settlements FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON wallet_settlements
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE wallet_balances ENABLE ROW LEVEL SECURITY;
ALTER TABLE wallet_balances FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON wallet_balances
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- Rank and threshold rewards carry bonus points and a badge. Rewards written
-- before they did name a badge by their ref ("upsell-trophy"): that is what
-- they were.
ALTER TABLE challenge_reward_grants
    ADD COLUMN kind text NOT NULL DEFAULT 'rank' CHECK (kind IN ('rank', 'threshold')),
    ADD COLUMN bonus_points bigint NOT NULL DEFAULT 0 CHECK (bonus_points >= 0),
    ADD COLUMN badge text NOT NULL DEFAULT '';
UPDATE challenge_reward_grants SET kind = CASE WHEN rank IS NULL THEN 'threshold' ELSE 'rank' END, badge = reward_ref;

UPDATE challenges SET definition = jsonb_set(definition, '{rewards}', (
        SELECT coalesce(jsonb_agg(CASE WHEN r ? 'badge' THEN r ELSE r || jsonb_build_object('badge', r->>'ref') END ORDER BY o), '[]'::jsonb)
        FROM jsonb_array_elements(definition->'rewards') WITH ORDINALITY AS x(r, o)))
    WHERE jsonb_typeof(definition->'rewards') = 'array' AND jsonb_array_length(definition->'rewards') > 0;
UPDATE challenge_templates SET definition = jsonb_set(definition, '{rewards}', (
        SELECT coalesce(jsonb_agg(CASE WHEN r ? 'badge' THEN r ELSE r || jsonb_build_object('badge', r->>'ref') END ORDER BY o), '[]'::jsonb)
        FROM jsonb_array_elements(definition->'rewards') WITH ORDINALITY AS x(r, o)))
    WHERE jsonb_typeof(definition->'rewards') = 'array' AND jsonb_array_length(definition->'rewards') > 0;

-- Challenges already final: their results, as the challenge area now
-- announces them (challenge.final, then a challenge.result per participant,
-- see internal/challenge/messages.go), so that the rewards area settles
-- their points and delivers their rewards like any other.
INSERT INTO outbox_messages (tenant_id, seq, id, kind, key, subject_ids, payload, occurred_at)
SELECT c.tenant_id, nextval('outbox_seq'), gen_random_uuid(), 'challenge.final', 'challenge:' || c.id || ':final',
       ARRAY[c.id],
       jsonb_build_object('challenge_id', c.id, 'challenge', c.definition->'name', 'kind', c.kind,
           'mode', coalesce(c.definition->>'mode', 'individual'), 'ended_at', c.ended_at, 'final_at', c.finalized_at,
           'participants', (SELECT count(*) FROM challenge_enrollments e WHERE e.tenant_id = c.tenant_id AND e.challenge_id = c.id)),
       c.finalized_at
FROM challenges c WHERE c.finalized_at IS NOT NULL
ORDER BY c.finalized_at, c.id;

INSERT INTO outbox_messages (tenant_id, seq, id, kind, key, subject_ids, payload, occurred_at)
SELECT c.tenant_id, nextval('outbox_seq'), gen_random_uuid(), 'challenge.result',
       'challenge:' || c.id || ':result:' || e.user_id, ARRAY[e.user_id, c.id],
       jsonb_strip_nulls(jsonb_build_object('challenge_id', c.id, 'challenge', c.definition->'name', 'kind', c.kind,
           'user_id', e.user_id, 'team_id', e.team_id, 'rank', coalesce(e.final_rank, 0),
           'points', coalesce(e.final_points, e.points),
           'participants', (SELECT count(*) FROM challenge_enrollments o WHERE o.tenant_id = c.tenant_id AND o.challenge_id = c.id),
           'missions_total', (SELECT count(*) FROM challenge_missions m WHERE m.tenant_id = c.tenant_id AND m.challenge_id = c.id),
           'missions_completed', (SELECT count(*) FROM challenge_progress p
                WHERE p.tenant_id = c.tenant_id AND p.challenge_id = c.id AND p.completed
                  AND (p.subject_id = e.user_id OR p.subject_id = e.team_id)),
           'final_at', c.finalized_at,
           'rewards', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('key', g.key, 'kind', g.kind, 'rank', g.rank,
                    'points', g.bonus_points, 'badge', nullif(g.badge, ''),
                    'label', jsonb_build_object('fr', g.label_fr, 'en', g.label_en))) ORDER BY g.key)
                FROM challenge_reward_grants g
                WHERE g.tenant_id = c.tenant_id AND g.challenge_id = c.id AND g.user_id = e.user_id))),
       c.finalized_at
FROM challenges c JOIN challenge_enrollments e ON e.tenant_id = c.tenant_id AND e.challenge_id = c.id
WHERE c.finalized_at IS NOT NULL
ORDER BY c.finalized_at, c.id, e.final_rank, e.user_id;

-- +goose Down
DELETE FROM outbox_messages WHERE kind IN ('challenge.final', 'challenge.result');
ALTER TABLE challenge_reward_grants DROP COLUMN kind, DROP COLUMN bonus_points, DROP COLUMN badge;
DROP TABLE wallet_balances, wallet_settlements;
DROP TRIGGER points_ledger_append_only ON points_ledger;
DROP TRIGGER wallet_apply_ledger ON points_ledger;
DROP FUNCTION points_ledger_append_only(), wallet_apply_settlement(), wallet_apply_ledger();
DELETE FROM points_ledger WHERE kind = 'adjustment';
ALTER TABLE points_ledger DROP COLUMN seq, DROP COLUMN kind, DROP COLUMN cause;
