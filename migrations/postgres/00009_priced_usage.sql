-- +goose Up
-- Every call is priced as it is admitted (catalog.Pricing.CallCost at its
-- position): usage rows keep what the gateway charged, so invoices, usage
-- views and statements sum the calls' X-Cost instead of re-deriving it.
-- free_calls are the billable calls that took a free call, cost_pico their
-- exact cost in 1e-12 of the currency (NULL for rows counted before this
-- migration: views price those with catalog.PriceMonth), credit_pico the part
-- paid from prepaid credit.
ALTER TABLE usage_hourly ADD COLUMN free_calls BIGINT NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN cost_pico BIGINT;
ALTER TABLE usage_hourly ADD COLUMN credit_pico BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_hourly DROP COLUMN credit_pico;
ALTER TABLE usage_hourly DROP COLUMN cost_pico;
ALTER TABLE usage_hourly DROP COLUMN free_calls;
