-- +goose Up
-- API keys may expire (expires_at), be limited to some functions
-- (allowed_functions, a JSON array of "vendor/name"; [] is every function)
-- and to a rate below the platform default (rate_limit_per_second, 0 for
-- the default). Rotation keeps the key's id (its month's spend, cap and
-- limits carry over): the new secret's hash becomes key_hash, the old one
-- previous_key_hash, valid until previous_expires_at. retired_key_hash is
-- the previous hash a later rotation or the end of a grace replaced, so the
-- gateways can drop it from their caches (KeysChangedSince).
ALTER TABLE api_keys ADD COLUMN expires_at DATETIME;
ALTER TABLE api_keys ADD COLUMN allowed_functions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_keys ADD COLUMN rate_limit_per_second INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN previous_key_hash TEXT;
ALTER TABLE api_keys ADD COLUMN previous_expires_at DATETIME;
ALTER TABLE api_keys ADD COLUMN retired_key_hash TEXT;
CREATE UNIQUE INDEX api_keys_previous_hash_idx ON api_keys (previous_key_hash);
CREATE INDEX api_keys_expires_at_idx ON api_keys (expires_at);

-- +goose Down
DROP INDEX api_keys_expires_at_idx;
DROP INDEX api_keys_previous_hash_idx;
ALTER TABLE api_keys DROP COLUMN retired_key_hash;
ALTER TABLE api_keys DROP COLUMN previous_expires_at;
ALTER TABLE api_keys DROP COLUMN previous_key_hash;
ALTER TABLE api_keys DROP COLUMN rate_limit_per_second;
ALTER TABLE api_keys DROP COLUMN allowed_functions;
ALTER TABLE api_keys DROP COLUMN expires_at;
