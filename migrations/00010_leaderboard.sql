-- +goose Up

-- Leaderboards. PostgreSQL holds the truth (the points ledger and each board's
-- totals); Redis holds the live rankings, rebuilt from these tables whenever
-- it loses them. See internal/leaderboard.

-- points_ledger is every change of a person's points, once per idempotency
-- key: recording the same key again changes nothing.
CREATE TABLE points_ledger (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    key          text NOT NULL,
    user_id      uuid NOT NULL,
    team_id      uuid,
    challenge_id uuid,
    points       bigint NOT NULL,
    earned_at    timestamptz NOT NULL,
    reason       text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- boards are the rankings: those of a challenge (individual, and per team in
-- team mode) and the company's period boards (week, month, quarter, all
-- time), one row per period so that past periods stay queryable.
CREATE TABLE boards (
    tenant_id         uuid NOT NULL REFERENCES tenants (id),
    id                uuid NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('individual', 'team_total', 'team_average')),
    challenge_id      uuid,
    period            text CHECK (period IN ('week', 'month', 'quarter', 'all_time')),
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz,
    shared_ranks      boolean NOT NULL DEFAULT false,
    -- Resolution of the tie-break (seconds since starts_at), see encode.go.
    tick_seconds      integer NOT NULL CHECK (tick_seconds > 0),
    frozen_at         timestamptz,
    participant_count integer,
    -- Repair watermark: every row written by a transaction with an id below
    -- it has been copied to Redis by a repair job.
    synced_xid        bigint NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK ((challenge_id IS NULL) <> (period IS NULL)),
    CHECK (period IS NULL OR kind = 'individual')
);
CREATE UNIQUE INDEX boards_challenge_kind ON boards (tenant_id, challenge_id, kind) WHERE challenge_id IS NOT NULL;
CREATE UNIQUE INDEX boards_period_start ON boards (tenant_id, period, starts_at) WHERE period IS NOT NULL;

-- challenge_participants are the people enrolled in a challenge and the team
-- they play for.
CREATE TABLE challenge_participants (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    challenge_id uuid NOT NULL,
    user_id      uuid NOT NULL,
    team_id      uuid,
    enrolled_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, challenge_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX challenge_participants_user ON challenge_participants (tenant_id, user_id);

-- board_scores are each board's totals: one row per person (or per team on
-- team boards). version grows with every change so that Redis keeps the
-- newest value whatever order writes arrive in; xact is the id of the
-- transaction that last wrote the row, for the repair jobs.
CREATE TABLE board_scores (
    tenant_id      uuid NOT NULL,
    board_id       uuid NOT NULL,
    member_id      uuid NOT NULL,
    points         bigint NOT NULL DEFAULT 0,
    -- Latest earned_at among the entries making up points; NULL for a
    -- participant enrolled who never scored.
    reached_at     timestamptz,
    -- Enrolled members, on team boards.
    members        integer NOT NULL DEFAULT 1 CHECK (members >= 0),
    version        bigint NOT NULL DEFAULT 1,
    xact           bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    -- The final ranking, written when the board is frozen.
    final_position integer,
    final_rank     integer,
    PRIMARY KEY (tenant_id, board_id, member_id),
    FOREIGN KEY (tenant_id, board_id) REFERENCES boards (tenant_id, id)
);
CREATE INDEX board_scores_xact ON board_scores (tenant_id, board_id, xact);
CREATE INDEX board_scores_final ON board_scores (tenant_id, board_id, final_position) WHERE final_position IS NOT NULL;

-- board_dirty marks boards changed since their last repair job started; the
-- transaction that inserts the mark also enqueues the job, so a busy board
-- has one pending job rather than one per change.
CREATE TABLE board_dirty (
    tenant_id uuid NOT NULL,
    board_id  uuid NOT NULL,
    marked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, board_id)
);

ALTER TABLE points_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE points_ledger FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON points_ledger
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE boards ENABLE ROW LEVEL SECURITY;
ALTER TABLE boards FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON boards
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE challenge_participants ENABLE ROW LEVEL SECURITY;
ALTER TABLE challenge_participants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON challenge_participants
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE board_scores ENABLE ROW LEVEL SECURITY;
ALTER TABLE board_scores FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON board_scores
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

ALTER TABLE board_dirty ENABLE ROW LEVEL SECURITY;
ALTER TABLE board_dirty FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON board_dirty
    USING (tenant_id = rallye_tenant() OR rallye_all_tenants());

-- +goose Down
DROP TABLE board_dirty, board_scores, challenge_participants, boards, points_ledger;
