-- +goose Up

-- Holdout groups (internal/holdout): a share of the eligible people of each
-- team kept out of a challenge and told nothing, drawn at creation with a
-- recorded seed so that the draw can be reproduced; the challenge's impact
-- is measured against them. holdout_user_ids is sorted (binary search).
ALTER TABLE challenges
    ADD COLUMN holdout_share double precision NOT NULL DEFAULT 0 CHECK (holdout_share >= 0 AND holdout_share <= 0.5),
    ADD COLUMN holdout_seed bigint,
    ADD COLUMN holdout_user_ids uuid[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE challenges DROP COLUMN holdout_user_ids, DROP COLUMN holdout_seed, DROP COLUMN holdout_share;
