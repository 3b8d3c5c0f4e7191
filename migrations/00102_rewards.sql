-- +goose Up

-- The rewards area (internal/reward): company rules, levels announced,
-- badges, streaks, kudos, the team feed, the catalogue and redemptions.
-- Points themselves live in points_ledger (see 00101_wallet.sql).

-- A company's rules; a company without a row has the defaults
-- (reward.DefaultSettings).
CREATE TABLE reward_settings (
    tenant_id         uuid PRIMARY KEY REFERENCES tenants (id),
    -- Levels: [{"min": 0, "name": {"fr": "...", "en": "..."}}, ...] by min.
    levels            jsonb NOT NULL,
    -- Points worth one unit of the company's currency: the money value of a
    -- redemption whose item has none.
    points_per_unit   integer NOT NULL CHECK (points_per_unit > 0),
    -- The most points a manager grants at once.
    max_manual_grant  bigint NOT NULL CHECK (max_manual_grant > 0),
    -- Points each person may give with kudos per calendar month.
    kudos_allowance   bigint NOT NULL CHECK (kudos_allowance >= 0),
    -- Non-working weekdays (ISO: 1 Monday .. 7 Sunday).
    weekend           smallint[] NOT NULL,
    -- Local hour after which a streak still unmet today is "at risk".
    streak_risk_hour  smallint NOT NULL CHECK (streak_risk_hour BETWEEN 0 AND 23),
    updated_by        uuid,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The company's holidays: non-working days for streaks.
CREATE TABLE reward_holidays (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    day       date NOT NULL,
    name      text NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- Levels announced to each person, once per level.
CREATE TABLE reward_levels (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    user_id    uuid NOT NULL,
    level      integer NOT NULL,
    reached_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id, level)
);

-- Badge definitions: the criterion is data (reward.Criterion).
CREATE TABLE badges (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    id             uuid NOT NULL,
    key            text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name_fr        text NOT NULL,
    name_en        text NOT NULL,
    description_fr text NOT NULL DEFAULT '',
    description_en text NOT NULL DEFAULT '',
    icon_url       text NOT NULL DEFAULT '',
    criterion      jsonb NOT NULL,
    active         boolean NOT NULL DEFAULT true,
    builtin        boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key)
);

-- Badges earned: once per person, kept once earned.
CREATE TABLE badge_awards (
    tenant_id  uuid NOT NULL,
    badge_id   uuid NOT NULL,
    user_id    uuid NOT NULL,
    awarded_at timestamptz NOT NULL,
    -- What earned it: "criterion", or the grant key of a challenge reward.
    source     text NOT NULL,
    PRIMARY KEY (tenant_id, badge_id, user_id),
    FOREIGN KEY (tenant_id, badge_id) REFERENCES badges (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX badge_awards_user ON badge_awards (tenant_id, user_id, awarded_at DESC);

-- Running totals behind counting criteria: per person, counter (a badge's
-- activity measure, missions completed, kudos received) and period start
-- (the person's local day, week, month or quarter; 0001-01-01 for all time).
CREATE TABLE reward_counters (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    user_id      uuid NOT NULL,
    counter      text NOT NULL,
    period_start date NOT NULL,
    value        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, user_id, counter, period_start)
);
-- Missions completed before counters existed.
INSERT INTO reward_counters (tenant_id, user_id, counter, period_start, value)
SELECT tenant_id, user_id, 'missions', DATE '0001-01-01', count(*) FROM challenge_awards
WHERE revoked_at IS NULL GROUP BY tenant_id, user_id;

-- Streak rules: an activity goal per working day or week.
CREATE TABLE streak_rules (
    tenant_id          uuid NOT NULL REFERENCES tenants (id),
    id                 uuid NOT NULL,
    key                text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name_fr            text NOT NULL,
    name_en            text NOT NULL,
    event_types        text[] NOT NULL,
    min_count          integer NOT NULL CHECK (min_count > 0),
    period             text NOT NULL CHECK (period IN ('day', 'week')),
    -- A freeze may be used once per this many weeks (0: no freeze).
    freeze_every_weeks integer NOT NULL DEFAULT 0 CHECK (freeze_every_weeks >= 0),
    active             boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key)
);

-- Activity per person, rule and local day (or week start), from the change
-- feed: retractions take it back.
CREATE TABLE streak_activity (
    tenant_id uuid NOT NULL,
    rule_id   uuid NOT NULL,
    user_id   uuid NOT NULL,
    day       date NOT NULL,
    count     integer NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, user_id, day),
    FOREIGN KEY (tenant_id, rule_id) REFERENCES streak_rules (tenant_id, id)
);

CREATE TABLE streak_freezes (
    tenant_id uuid NOT NULL,
    rule_id   uuid NOT NULL,
    user_id   uuid NOT NULL,
    day       date NOT NULL,
    used_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, user_id, day),
    FOREIGN KEY (tenant_id, rule_id) REFERENCES streak_rules (tenant_id, id)
);

-- "Streak at risk" announced, once per person, rule and day.
CREATE TABLE streak_risk_notices (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    rule_id   uuid NOT NULL,
    user_id   uuid NOT NULL,
    day       date NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, user_id, day)
);

CREATE TABLE kudos (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    sender_id    uuid NOT NULL,
    recipient_id uuid NOT NULL,
    message      text NOT NULL,
    points       bigint NOT NULL DEFAULT 0 CHECK (points >= 0),
    -- A win (team feed entry) a manager attached it to.
    win_id       uuid,
    sent_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sender_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, recipient_id) REFERENCES users (tenant_id, id),
    CHECK (sender_id <> recipient_id)
);

-- Points given with kudos per sender and month, checked against the
-- allowance in the statement that spends it.
CREATE TABLE kudos_allowance (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    user_id   uuid NOT NULL,
    month     date NOT NULL,
    used      bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (tenant_id, user_id, month)
);

-- The team feed: recent wins, badges, levels, challenge results and kudos,
-- each about a person and visible to their teams.
CREATE TABLE reward_feed (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('win', 'badge', 'level', 'challenge_result', 'kudos')),
    user_id     uuid NOT NULL,
    -- The person's teams when it happened.
    team_ids    uuid[] NOT NULL DEFAULT '{}',
    data        jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    key         text NOT NULL,
    -- A win whose deal was reopened or retracted.
    hidden_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, key)
);
CREATE INDEX reward_feed_teams ON reward_feed USING gin (team_ids);
CREATE INDEX reward_feed_user ON reward_feed (tenant_id, user_id, id DESC);

CREATE TABLE reward_items (
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    id                uuid NOT NULL,
    name_fr           text NOT NULL,
    name_en           text NOT NULL,
    description_fr    text NOT NULL DEFAULT '',
    description_en    text NOT NULL DEFAULT '',
    image_url         text NOT NULL DEFAULT '',
    cost              bigint NOT NULL CHECK (cost > 0),
    -- NULL: unlimited.
    stock             integer CHECK (stock >= 0),
    -- 0: no limit.
    per_person_limit  integer NOT NULL DEFAULT 0 CHECK (per_person_limit >= 0),
    approval_required boolean NOT NULL DEFAULT false,
    active_from       timestamptz,
    active_until      timestamptz,
    -- Empty: every team.
    team_ids          uuid[] NOT NULL DEFAULT '{}',
    -- In minor units of the company's currency; NULL: cost / points_per_unit.
    money_value       bigint CHECK (money_value >= 0),
    archived_at       timestamptz,
    created_by        uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK (active_until IS NULL OR active_from IS NULL OR active_until > active_from)
);

CREATE TABLE redemptions (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    item_id      uuid NOT NULL,
    user_id      uuid NOT NULL,
    state        text NOT NULL CHECK (state IN ('pending', 'approved', 'fulfilled', 'rejected', 'cancelled')),
    cost         bigint NOT NULL,
    -- Minor units of currency, fixed when requested.
    money_value  bigint NOT NULL,
    currency     text NOT NULL,
    item_name_fr text NOT NULL,
    item_name_en text NOT NULL,
    requested_at timestamptz NOT NULL,
    decided_by   uuid,
    decided_at   timestamptz,
    note         text NOT NULL DEFAULT '',
    fulfilled_by uuid,
    fulfilled_at timestamptz,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, item_id) REFERENCES reward_items (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX redemptions_user ON redemptions (tenant_id, user_id, id DESC);
CREATE INDEX redemptions_item_user ON redemptions (tenant_id, item_id, user_id) WHERE state IN ('pending', 'approved', 'fulfilled');
CREATE INDEX redemptions_state ON redemptions (tenant_id, state, id DESC);
CREATE INDEX redemptions_fulfilled ON redemptions (tenant_id, fulfilled_at, id) WHERE state = 'fulfilled';

ALTER TABLE reward_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE reward_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reward_settings USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE reward_holidays ENABLE ROW LEVEL SECURITY;
ALTER TABLE reward_holidays FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reward_holidays USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE reward_levels ENABLE ROW LEVEL SECURITY;
ALTER TABLE reward_levels FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reward_levels USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE badges ENABLE ROW LEVEL SECURITY;
ALTER TABLE badges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON badges USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE badge_awards ENABLE ROW LEVEL SECURITY;
ALTER TABLE badge_awards FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON badge_awards USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE reward_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE reward_counters FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reward_counters USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE streak_rules ENABLE ROW LEVEL SECURITY;
ALTER TABLE streak_rules FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON streak_rules USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE streak_activity ENABLE ROW LEVEL SECURITY;
ALTER TABLE streak_activity FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON streak_activity USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE streak_freezes ENABLE ROW LEVEL SECURITY;
ALTER TABLE streak_freezes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON streak_freezes USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE streak_risk_notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE streak_risk_notices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON streak_risk_notices USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE kudos ENABLE ROW LEVEL SECURITY;
ALTER TABLE kudos FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kudos USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE kudos_allowance ENABLE ROW LEVEL SECURITY;
ALTER TABLE kudos_allowance FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kudos_allowance USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE reward_feed ENABLE ROW LEVEL SECURITY;
ALTER TABLE reward_feed FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reward_feed USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE reward_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE reward_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON reward_items USING (tenant_id = rallye_tenant() OR rallye_all_tenants());
ALTER TABLE redemptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE redemptions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON redemptions USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE redemptions, reward_items, reward_feed, kudos_allowance, kudos, streak_risk_notices, streak_freezes,
    streak_activity, streak_rules, reward_counters, badge_awards, badges, reward_levels, reward_holidays, reward_settings;
