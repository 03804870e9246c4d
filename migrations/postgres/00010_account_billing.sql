-- +goose Up
-- What a consumer account pays with (API.md, "Spend caps, balance and
-- payment"). One row per account, written the first time any of it is set:
-- monthly_spend_cap is the account's cap over all its keys, an exact decimal
-- kept as text (NULL: none); the card on file is its Stripe payment method id
-- with the brand and last four digits the portal shows (NULL: none).
-- billing_updated_at moves whenever anything that decides admission changes
-- (cap, card, credit, an invoice paid, voided or failing), so gateways drop
-- the account's cached keys (accounts.Store.KeysChangedSince).
CREATE TABLE account_billing (
    account_id               TEXT NOT NULL PRIMARY KEY REFERENCES accounts (id),
    monthly_spend_cap        TEXT,
    stripe_payment_method_id TEXT,
    card_brand               TEXT,
    card_last4               TEXT,
    billing_updated_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX account_billing_updated_at_idx ON account_billing (billing_updated_at);

-- Prepaid credit bought, append-only: the balance is the sum of the grants
-- minus the credit usage took (usage_hourly.credit_pico). source names what
-- paid for a grant (the Stripe Checkout session id) and is unique, so one
-- payment is credited once however often, and by however many replicas at
-- once, Stripe reports it. amount is an exact decimal in currency.
CREATE TABLE credit_grants (
    id         TEXT NOT NULL PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    amount     TEXT NOT NULL,
    currency   TEXT NOT NULL,
    source     TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX credit_grants_account_idx ON credit_grants (account_id);

-- Standing reads an account's open invoices, and every gateway's poll looks
-- for open invoices that just became past due: both want open ones only.
CREATE INDEX invoices_status_idx ON invoices (status, consumer_id);

-- +goose Down
DROP INDEX invoices_status_idx;
DROP TABLE credit_grants;
DROP TABLE account_billing;
