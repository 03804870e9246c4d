-- +goose Up
-- The audit log (API.md, "API keys, extended"): who did what to which
-- account, from where. actor_account_id is the account whose log the entry
-- belongs to (NULL for a failed login with an email no account has);
-- target names what was acted on (a key, a function, ...), ip the client
-- address the API saw (api.Deps.TrustedProxies), detail a short note.
-- Append-only: triggers refuse every UPDATE and DELETE, whoever asks.
CREATE TABLE audit_log (
    id               TEXT NOT NULL PRIMARY KEY,
    at               DATETIME NOT NULL,
    actor_account_id TEXT,
    action           TEXT NOT NULL,
    target           TEXT NOT NULL DEFAULT '',
    ip               TEXT NOT NULL DEFAULT '',
    detail           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_account_id, at, id);
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
-- +goose StatementEnd

-- Spend alerts (usage.threshold_reached): the percents of a cap that raise
-- an event, as JSON text such as '[50,80,100]'; NULL means the default
-- [80,100]. On a key for its monthly_spend_cap, on account_billing for the
-- account's.
ALTER TABLE api_keys ADD COLUMN alert_thresholds TEXT;
ALTER TABLE account_billing ADD COLUMN alert_thresholds TEXT;

-- A vendor's error-rate alert on one function (function.error_rate_high):
-- when errors / calls over the last window_minutes (rolled-up usage_hourly,
-- whole hours) reach percent, one event per function and window.
CREATE TABLE function_error_alerts (
    function_id    TEXT NOT NULL PRIMARY KEY REFERENCES functions (id),
    percent        INTEGER NOT NULL,
    window_minutes INTEGER NOT NULL,
    updated_at     DATETIME NOT NULL
);

-- +goose Down
DROP TABLE function_error_alerts;
ALTER TABLE account_billing DROP COLUMN alert_thresholds;
ALTER TABLE api_keys DROP COLUMN alert_thresholds;
DROP TABLE audit_log;
