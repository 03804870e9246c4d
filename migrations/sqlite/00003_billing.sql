-- +goose Up
-- A month is closed once every consumer's invoice for it has been issued.
-- Only closed months are looked back at for late usage, so a month whose
-- billing stopped half way is finished by re-running it, never billed twice
-- (once in full and once as adjustments). period_start is Unix seconds, UTC,
-- like usage_hourly.hour_start, so months compare as integers on every engine.
CREATE TABLE billing_periods (
    period_start BIGINT PRIMARY KEY,
    closed_at    DATETIME NOT NULL
);

-- One invoice per consumer, month and currency: the unique key is what makes
-- re-running billing (or two runs at once) create nothing twice. Money is kept
-- as exact decimal text (never a float), plus whole cents for Stripe.
-- consumer_id is copied, not a foreign key: an invoice outlives its account.
CREATE TABLE invoices (
    id                TEXT PRIMARY KEY,
    consumer_id       TEXT NOT NULL,
    period_start      BIGINT NOT NULL,
    period_end        BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('draft', 'open', 'paid', 'void')),
    subtotal          TEXT NOT NULL,
    total             TEXT NOT NULL,
    total_cents       BIGINT NOT NULL,
    -- When a draft's usage was read (the period end once issued).
    usage_through     BIGINT NOT NULL,
    stripe_invoice_id TEXT UNIQUE,
    -- Stripe sync never blocks issuing: none, pending, synced or failed, with
    -- the last error for operators and the attempt count for backing off.
    sync_status       TEXT NOT NULL DEFAULT 'none',
    sync_error        TEXT NOT NULL DEFAULT '',
    sync_attempts     INTEGER NOT NULL DEFAULT 0,
    created_at        DATETIME NOT NULL,
    updated_at        DATETIME NOT NULL,
    UNIQUE (consumer_id, period_start, currency)
);
CREATE INDEX invoices_period_idx ON invoices (period_start);
CREATE INDEX invoices_sync_idx ON invoices (sync_status);

-- One line per function version (and, for late usage, per earlier month).
-- usage_period_start is the month the usage belongs to; consumer_id is copied
-- so "what was already billed for that month" is one indexed query.
-- function_label is kept as billed, so renames never rewrite old invoices.
-- stripe_item_id is stored per line as soon as Stripe has the item, so a sync
-- retried after Stripe's idempotency window never adds an item twice.
CREATE TABLE invoice_lines (
    invoice_id         TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no            INTEGER NOT NULL,
    consumer_id        TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('usage', 'adjustment')),
    usage_period_start BIGINT NOT NULL,
    function_id        TEXT NOT NULL,
    vendor_id          TEXT NOT NULL,
    function_label     TEXT NOT NULL,
    version            INTEGER NOT NULL,
    calls              BIGINT NOT NULL,
    free_calls         BIGINT NOT NULL,
    billable_calls     BIGINT NOT NULL,
    compute_ms         BIGINT NOT NULL,
    amount             TEXT NOT NULL,
    amount_cents       BIGINT NOT NULL,
    stripe_item_id     TEXT,
    PRIMARY KEY (invoice_id, line_no)
);
CREATE INDEX invoice_lines_usage_idx ON invoice_lines (usage_period_start, consumer_id);
CREATE INDEX invoice_lines_vendor_idx ON invoice_lines (vendor_id);

-- Every lifecycle step with its time and what drove it, append-only: the
-- audit trail for "why is this invoice paid/void".
-- seq numbers an invoice's events in order, since several can share a time.
CREATE TABLE invoice_events (
    invoice_id  TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status   TEXT NOT NULL,
    source      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    at          DATETIME NOT NULL,
    PRIMARY KEY (invoice_id, seq)
);

-- Each vendor's share of an issued invoice, fixed when it is issued (the fee
-- rate in force then is kept, so changing the rate never rewrites history).
-- Statements sum these, and the payout of each share is keyed by
-- (invoice, vendor), which is also the Stripe transfer's idempotency key.
CREATE TABLE vendor_shares (
    invoice_id         TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    vendor_id          TEXT NOT NULL,
    period_start       BIGINT NOT NULL,
    currency           TEXT NOT NULL,
    gross              TEXT NOT NULL,
    fee_rate           TEXT NOT NULL,
    platform_fee       TEXT NOT NULL,
    net                TEXT NOT NULL,
    net_cents          BIGINT NOT NULL,
    payout_status      TEXT NOT NULL,
    stripe_transfer_id TEXT,
    updated_at         DATETIME NOT NULL,
    PRIMARY KEY (invoice_id, vendor_id)
);
CREATE INDEX vendor_shares_vendor_idx ON vendor_shares (vendor_id, period_start);
CREATE INDEX vendor_shares_payout_idx ON vendor_shares (payout_status);

-- The Stripe customer of each consumer, created on the first invoice.
CREATE TABLE stripe_customers (
    consumer_id        TEXT PRIMARY KEY,
    stripe_customer_id TEXT NOT NULL,
    created_at         DATETIME NOT NULL
);

-- Webhook events already handled. The id is written in the same transaction
-- as the change the event causes, so a redelivery is a no-op and an event
-- whose handling failed is not wrongly marked done.
CREATE TABLE stripe_events (
    id           TEXT PRIMARY KEY,
    type         TEXT NOT NULL,
    processed_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE stripe_events;
DROP TABLE stripe_customers;
DROP TABLE vendor_shares;
DROP TABLE invoice_events;
DROP TABLE invoice_lines;
DROP TABLE invoices;
DROP TABLE billing_periods;
