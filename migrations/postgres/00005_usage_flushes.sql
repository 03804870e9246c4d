-- +goose Up
-- One row per meter flush whose counts a roll-up batch committed, written in
-- the batch's transaction: a flush's counts are in the database iff its id is
-- here. A gateway replaying its spool after Redis lost data resends exactly
-- the flushes missing here. Rows older than the roll-up's retention (30 days
-- by default) are pruned by applied_at.
CREATE TABLE usage_flushes (
    id         TEXT PRIMARY KEY,
    batch_id   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX usage_flushes_applied_idx ON usage_flushes (applied_at);

-- +goose Down
DROP TABLE usage_flushes;
