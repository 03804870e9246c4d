-- +goose Up
-- The outbox of outbound webhooks (API.md, "Webhooks (outbound)"): an event
-- is written in the same transaction as what caused it (webhooks.Enqueue) and
-- delivered by the worker to the account's endpoints subscribed to its type.
-- id is the webhook-id every attempt carries; payload the exact body sent
-- ({"type","timestamp","data"}). dedupe_key, when set, makes an event happen
-- at most once per account (a threshold per scope, month and percent):
-- the unique index decides, whatever the replicas and restarts (NULLs never
-- collide, on PostgreSQL and SQLite alike).
CREATE TABLE webhook_events (
    id         TEXT NOT NULL PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    type       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    dedupe_key TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX webhook_events_dedupe_idx ON webhook_events (account_id, dedupe_key);
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);

-- +goose Down
DROP TABLE webhook_events;
