-- +goose Up
-- Accounts sign in to the portal. Every account can consume; some are vendors.
-- password_hash is bcrypt: passwords are never stored in clear.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    DATETIME NOT NULL
);
-- Emails are compared case-insensitively; the application lower-cases them.
CREATE UNIQUE INDEX accounts_email_key ON accounts (email);

-- A vendor is an account that publishes functions, under a unique slug.
CREATE TABLE vendors (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL UNIQUE REFERENCES accounts (id),
    slug              TEXT NOT NULL UNIQUE,
    display_name      TEXT NOT NULL,
    stripe_account_id TEXT,
    created_at        DATETIME NOT NULL
);

-- A function is a vendor's named endpoint; what it runs and costs lives in
-- its immutable versions. updated_at drives cache invalidation on gateways.
CREATE TABLE functions (
    id                TEXT PRIMARY KEY,
    vendor_id         TEXT NOT NULL REFERENCES vendors (id),
    name              TEXT NOT NULL,
    description       TEXT NOT NULL DEFAULT '',
    published_version INTEGER,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    UNIQUE (vendor_id, name)
);
CREATE INDEX functions_updated_at_idx ON functions (updated_at);

-- Versions are immutable once written: backend and pricing are JSON documents
-- so new backend kinds (wasm) need no schema change. ever_published lets
-- callers pin "name@version" for any version that was once published.
CREATE TABLE function_versions (
    function_id    TEXT NOT NULL REFERENCES functions (id),
    version        INTEGER NOT NULL,
    backend        TEXT NOT NULL,
    pricing        TEXT NOT NULL,
    timeout_ms     INTEGER NOT NULL,
    rate_limit_per_second INTEGER NOT NULL DEFAULT 0,
    ever_published BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     DATETIME NOT NULL,
    PRIMARY KEY (function_id, version)
);

-- API keys are stored only as a SHA-256 hash of the full key (the key has
-- 192 random bits, so a slow hash adds nothing) plus a visible prefix.
-- monthly_spend_cap is an exact decimal kept as text.
CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts (id),
    name              TEXT NOT NULL,
    prefix            TEXT NOT NULL,
    key_hash          TEXT NOT NULL UNIQUE,
    monthly_spend_cap TEXT,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    last_used_at      DATETIME,
    revoked_at        DATETIME
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id, created_at);
CREATE INDEX api_keys_updated_at_idx ON api_keys (updated_at);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE function_versions;
DROP TABLE functions;
DROP TABLE vendors;
DROP TABLE accounts;
