-- +goose Up
-- Prepaid credit the month's usage consumed (usage_hourly.credit_pico) is
-- shown on the invoice as its own 'credit' line, a negative amount: the
-- invoice's total is its subtotal less the credit applied. A credit line
-- belongs to no function or vendor (function_id and vendor_id are empty).
-- SQLite cannot change a CHECK constraint: invoice_lines is rebuilt with the
-- new kind. No table refers to invoice_lines.
CREATE TABLE invoice_lines_new (
    invoice_id         TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no            INTEGER NOT NULL,
    consumer_id        TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('usage', 'adjustment', 'carried_forward', 'credit')),
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
    carried_invoice_id TEXT,
    PRIMARY KEY (invoice_id, line_no)
);
INSERT INTO invoice_lines_new SELECT invoice_id, line_no, consumer_id, kind, usage_period_start, function_id, vendor_id, function_label, version,
    calls, free_calls, billable_calls, compute_ms, amount, amount_cents, stripe_item_id, carried_invoice_id FROM invoice_lines;
DROP TABLE invoice_lines;
ALTER TABLE invoice_lines_new RENAME TO invoice_lines;
CREATE INDEX invoice_lines_usage_idx ON invoice_lines (usage_period_start, consumer_id);
CREATE INDEX invoice_lines_vendor_idx ON invoice_lines (vendor_id);

-- +goose Down
-- The old constraint cannot hold credit lines: they go (the invoices'
-- totals still count them).
CREATE TABLE invoice_lines_old (
    invoice_id         TEXT NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line_no            INTEGER NOT NULL,
    consumer_id        TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('usage', 'adjustment', 'carried_forward')),
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
    carried_invoice_id TEXT,
    PRIMARY KEY (invoice_id, line_no)
);
INSERT INTO invoice_lines_old SELECT invoice_id, line_no, consumer_id, kind, usage_period_start, function_id, vendor_id, function_label, version,
    calls, free_calls, billable_calls, compute_ms, amount, amount_cents, stripe_item_id, carried_invoice_id FROM invoice_lines WHERE kind <> 'credit';
DROP TABLE invoice_lines;
ALTER TABLE invoice_lines_old RENAME TO invoice_lines;
CREATE INDEX invoice_lines_usage_idx ON invoice_lines (usage_period_start, consumer_id);
CREATE INDEX invoice_lines_vendor_idx ON invoice_lines (vendor_id);
