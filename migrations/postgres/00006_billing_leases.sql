-- +goose Up
-- A lease is a named claim on billing work that only one process may do at a
-- time: "bill" for a billing run (issuing invoices and pushing them to Stripe)
-- and "stripe-sync" for a Stripe sync pass. Without it two runs push the same
-- invoices at once and only Stripe's 24-hour idempotency memory stops a double
-- charge. A row works the same on SQLite and PostgreSQL. The holder renews
-- expires_at while it works and deletes the row when done; a holder that was
-- killed blocks no one past expires_at. Times are Unix milliseconds, UTC.
CREATE TABLE billing_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

-- +goose Down
DROP TABLE billing_leases;
