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
    created_at DATETIME NOT NULL,
    -- set once the fan-out has turned the event into its deliveries
    fanned_out_at DATETIME
);
CREATE UNIQUE INDEX webhook_events_dedupe_idx ON webhook_events (account_id, dedupe_key);
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);
CREATE INDEX webhook_events_fanout_idx ON webhook_events (fanned_out_at, created_at);

-- An account's endpoints (webhooks.Store). events is a JSON array of event
-- types or ["*"]. secret is the whsec_ signing secret: the deliverer needs
-- it in full to sign, so it is kept as it is, answered only by the create
-- route and readable only by whoever reads the database (README, Webhooks).
-- A deleted endpoint keeps its row (deleted_at) for its delivery log; a
-- disabled one (failing for days) says why in disabled_reason.
-- failing_since is the first failed attempt since the last success.
CREATE TABLE webhook_endpoints (
    id              TEXT NOT NULL PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,
    secret          TEXT NOT NULL,
    created_at      DATETIME NOT NULL,
    deleted_at      DATETIME,
    disabled_at     DATETIME,
    disabled_reason TEXT,
    failing_since   DATETIME
);
CREATE INDEX webhook_endpoints_account_idx ON webhook_endpoints (account_id);

-- One delivery per event and subscribed endpoint: every attempt of it sends
-- the event's id as webhook-id and its payload as the body. status is
-- pending (next_attempt_at says when), delivered or failed. claim is the
-- token of the worker that holds it until next_attempt_at (a lease pushed
-- past the send's timeout), so a crashed worker's delivery is sent again.
CREATE TABLE webhook_deliveries (
    id               TEXT NOT NULL PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_id         TEXT NOT NULL REFERENCES webhook_events (id),
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error       TEXT,
    next_attempt_at  DATETIME,
    claim            TEXT,
    created_at       DATETIME NOT NULL,
    delivered_at     DATETIME
);
CREATE UNIQUE INDEX webhook_deliveries_event_endpoint_idx ON webhook_deliveries (event_id, endpoint_id);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at, id);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
DROP TABLE webhook_events;
