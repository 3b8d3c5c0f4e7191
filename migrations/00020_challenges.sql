-- +goose Up

-- Challenge templates are data: Rallye's built-in definitions (onboarding,
-- upsell, prospecting) are copied into each company on first use, and a
-- company may override them or add its own.
CREATE TABLE challenge_templates (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    key        text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    definition jsonb NOT NULL,
    -- builtin: the key is one of Rallye's; overridden: the company changed it.
    builtin    boolean NOT NULL,
    overridden boolean NOT NULL DEFAULT false,
    updated_by uuid,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- A challenge: its definition (names, format, scoring rules, rewards) as
-- JSON, its window, its participants' scope and its lifecycle. version bumps
-- whenever the window moves, so that start and end jobs scheduled for an
-- older window recognise they are stale.
CREATE TABLE challenges (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    template_key text,
    kind         text NOT NULL CHECK (kind IN ('onboarding', 'upsell', 'prospecting', 'custom')),
    definition   jsonb NOT NULL,
    state        text NOT NULL CHECK (state IN ('draft', 'scheduled', 'active', 'ended', 'cancelled')),
    team_ids     uuid[] NOT NULL DEFAULT '{}',
    user_ids     uuid[] NOT NULL DEFAULT '{}',
    -- NULL in a draft: "when published" and "start plus the default duration".
    starts_at    timestamptz,
    ends_at      timestamptz,
    -- The company's time zone when the challenge was created: expressions
    -- (hour, weekday) are evaluated in it, so a correction takes back exactly
    -- what the original gave even if the company moves.
    time_zone    text NOT NULL,
    -- Event types read by the missions and scoring rules: the progress
    -- consumer's index.
    event_types  text[] NOT NULL DEFAULT '{}',
    version      bigint NOT NULL DEFAULT 1,
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    started_at   timestamptz,
    ended_at     timestamptz,
    finalized_at timestamptz,
    cancelled_at timestamptz,
    -- When the leaderboard's boards were created and filled.
    boards_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK (ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at),
    CHECK (state = 'draft' OR (starts_at IS NOT NULL AND ends_at IS NOT NULL))
);
CREATE INDEX challenges_live ON challenges USING gin (event_types)
    WHERE state IN ('scheduled', 'active', 'ended') AND finalized_at IS NULL;
CREATE INDEX challenges_teams ON challenges USING gin (team_ids);
CREATE INDEX challenges_window ON challenges (tenant_id, ends_at);

CREATE TABLE challenge_missions (
    tenant_id    uuid NOT NULL,
    challenge_id uuid NOT NULL,
    id           uuid NOT NULL,
    position     integer NOT NULL,
    key          text NOT NULL,
    definition   jsonb NOT NULL,
    PRIMARY KEY (tenant_id, challenge_id, id),
    UNIQUE (tenant_id, challenge_id, key),
    FOREIGN KEY (tenant_id, challenge_id) REFERENCES challenges (tenant_id, id) ON DELETE CASCADE
);

-- Who takes part, for which team, since when their events count, their
-- points (the format rankings are computed from them) and, once final,
-- their rank.
CREATE TABLE challenge_enrollments (
    tenant_id    uuid NOT NULL,
    challenge_id uuid NOT NULL,
    user_id      uuid NOT NULL,
    -- The team the person plays for (the challenge's team that contains them).
    team_id      uuid,
    via          text NOT NULL CHECK (via IN ('auto', 'opt_in', 'late')),
    enrolled_at  timestamptz NOT NULL,
    counts_from  timestamptz NOT NULL,
    -- League: the person's own target in points.
    target       bigint,
    points       bigint NOT NULL DEFAULT 0,
    -- Duels: the opponent paired by the system; bye when none.
    opponent_id  uuid,
    bye          boolean NOT NULL DEFAULT false,
    final_rank   integer,
    final_points bigint,
    PRIMARY KEY (tenant_id, challenge_id, user_id),
    FOREIGN KEY (tenant_id, challenge_id) REFERENCES challenges (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX challenge_enrollments_user ON challenge_enrollments (tenant_id, user_id);

-- Per mission and subject (a person, or a team for team missions): the
-- accumulators a change updates incrementally. total is in 1/10,000 units so
-- that adding and taking back is exact; samples (sorted) serve medians,
-- minimums and maximums.
CREATE TABLE challenge_progress (
    tenant_id    uuid NOT NULL,
    challenge_id uuid NOT NULL,
    mission_id   uuid NOT NULL,
    subject_id   uuid NOT NULL,
    volume       bigint NOT NULL DEFAULT 0,
    hits         bigint NOT NULL DEFAULT 0,
    total        bigint NOT NULL DEFAULT 0,
    samples      double precision[] NOT NULL DEFAULT '{}',
    -- A per-subject target (average uplift over the subject's own baseline).
    target       double precision,
    -- met: the condition holds (manual: approved); completed: met and
    -- unlocked, with its points awarded.
    met          boolean NOT NULL DEFAULT false,
    completed    boolean NOT NULL DEFAULT false,
    completed_at timestamptz,
    completions  integer NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, challenge_id, mission_id, subject_id),
    FOREIGN KEY (tenant_id, challenge_id, mission_id) REFERENCES challenge_missions (tenant_id, challenge_id, id)
);

-- Arrival order of contributions and awards, for ties by arrival.
CREATE SEQUENCE challenge_arrival;

-- What each counted event version gave to a challenge, so that its -1 takes
-- back exactly that (and nothing when it gave nothing).
CREATE TABLE challenge_contributions (
    tenant_id    uuid NOT NULL,
    challenge_id uuid NOT NULL,
    version_id   uuid NOT NULL,
    user_id      uuid NOT NULL,
    team_id      uuid,
    occurred_at  timestamptz NOT NULL,
    arrival      bigint NOT NULL DEFAULT nextval('challenge_arrival'),
    points       bigint NOT NULL,
    missions     jsonb NOT NULL,
    PRIMARY KEY (tenant_id, challenge_id, version_id),
    FOREIGN KEY (tenant_id, challenge_id) REFERENCES challenges (tenant_id, id)
);
CREATE INDEX challenge_contributions_user ON challenge_contributions (tenant_id, challenge_id, user_id);

-- Mission completions and the points they gave each person. ordinal counts
-- the subject's completions: a mission un-completed by a correction and
-- completed again gets a new one, hence new idempotency keys.
CREATE TABLE challenge_awards (
    tenant_id    uuid NOT NULL,
    challenge_id uuid NOT NULL,
    mission_id   uuid NOT NULL,
    user_id      uuid NOT NULL,
    ordinal      integer NOT NULL,
    subject_id   uuid NOT NULL,
    points       bigint NOT NULL,
    awarded_at   timestamptz NOT NULL,
    arrival      bigint NOT NULL DEFAULT nextval('challenge_arrival'),
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, challenge_id, mission_id, user_id, ordinal),
    FOREIGN KEY (tenant_id, challenge_id) REFERENCES challenges (tenant_id, id)
);
CREATE INDEX challenge_awards_subject ON challenge_awards (tenant_id, challenge_id, mission_id, subject_id, ordinal);

-- Manual missions: what a rep submitted and what a manager decided.
CREATE TABLE mission_submissions (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    challenge_id  uuid NOT NULL,
    mission_id    uuid NOT NULL,
    user_id       uuid NOT NULL,
    state         text NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    evidence_url  text NOT NULL DEFAULT '',
    answer        text NOT NULL DEFAULT '',
    submitted_at  timestamptz NOT NULL,
    reviewed_by   uuid,
    reviewed_at   timestamptz,
    review_note   text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, challenge_id, mission_id) REFERENCES challenge_missions (tenant_id, challenge_id, id)
);
-- At most one submission waiting or approved per person and mission.
CREATE UNIQUE INDEX mission_submissions_open ON mission_submissions (tenant_id, challenge_id, mission_id, user_id)
    WHERE state IN ('pending', 'approved');
CREATE INDEX mission_submissions_challenge ON mission_submissions (tenant_id, challenge_id, state);

-- Rewards granted when a challenge becomes final, keyed so that each is
-- granted exactly once. The rewards area consumes them (consumed_at).
CREATE TABLE challenge_reward_grants (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    key          text NOT NULL,
    challenge_id uuid NOT NULL,
    user_id      uuid NOT NULL,
    team_id      uuid,
    reward_ref   text NOT NULL,
    rank         integer,
    points       bigint NOT NULL,
    label_fr     text NOT NULL DEFAULT '',
    label_en     text NOT NULL DEFAULT '',
    granted_at   timestamptz NOT NULL,
    consumed_at  timestamptz,
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX challenge_reward_grants_pending ON challenge_reward_grants (tenant_id, granted_at) WHERE consumed_at IS NULL;

ALTER TABLE challenge_templates ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_templates FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_templates
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenges ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenges
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_missions ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_missions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_missions
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_enrollments ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_enrollments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_enrollments
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_progress ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_progress FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_progress
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_contributions ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_contributions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_contributions
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_awards ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_awards FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_awards
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE mission_submissions ENABLE ROW LEVEL SECURITY;
ALTER TABLE mission_submissions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON mission_submissions
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_reward_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_reward_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_reward_grants
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE challenge_reward_grants, mission_submissions, challenge_awards, challenge_contributions,
    challenge_progress, challenge_enrollments, challenge_missions, challenges, challenge_templates;
DROP SEQUENCE challenge_arrival;
