-- +goose Up
-- Stripe does not charge an invoice under its minimum charge (0.50 USD and
-- the like): it would mark it paid and move the amount to the customer's
-- balance, and fnmarket would pay vendors for money it never collected. Such
-- an invoice stays open here, marked sync_status 'carried_forward', and its
-- total becomes a 'carried_forward' line on the consumer's next invoice;
-- carried_to is that invoice, and the carried invoice is paid when it is.
-- (No REFERENCES here: SQLite cannot drop a column that has one, and the
-- Down section must.)
ALTER TABLE invoices ADD COLUMN carried_to TEXT;
CREATE INDEX invoices_carried_to_idx ON invoices (carried_to);

-- SQLite cannot change a CHECK constraint: invoice_lines is rebuilt with the
-- new kind and carried_invoice_id (the invoice a 'carried_forward' line
-- carries). No table refers to invoice_lines.
CREATE TABLE invoice_lines_new (
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
INSERT INTO invoice_lines_new (invoice_id, line_no, consumer_id, kind, usage_period_start, function_id, vendor_id, function_label, version,
    calls, free_calls, billable_calls, compute_ms, amount, amount_cents, stripe_item_id)
SELECT invoice_id, line_no, consumer_id, kind, usage_period_start, function_id, vendor_id, function_label, version,
    calls, free_calls, billable_calls, compute_ms, amount, amount_cents, stripe_item_id FROM invoice_lines;
DROP TABLE invoice_lines;
ALTER TABLE invoice_lines_new RENAME TO invoice_lines;
CREATE INDEX invoice_lines_usage_idx ON invoice_lines (usage_period_start, consumer_id);
CREATE INDEX invoice_lines_vendor_idx ON invoice_lines (vendor_id);

-- +goose Down
CREATE TABLE invoice_lines_old (
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
INSERT INTO invoice_lines_old SELECT invoice_id, line_no, consumer_id, kind, usage_period_start, function_id, vendor_id, function_label, version,
    calls, free_calls, billable_calls, compute_ms, amount, amount_cents, stripe_item_id FROM invoice_lines WHERE kind <> 'carried_forward';
DROP TABLE invoice_lines;
ALTER TABLE invoice_lines_old RENAME TO invoice_lines;
CREATE INDEX invoice_lines_usage_idx ON invoice_lines (usage_period_start, consumer_id);
CREATE INDEX invoice_lines_vendor_idx ON invoice_lines (vendor_id);
DROP INDEX invoices_carried_to_idx;
ALTER TABLE invoices DROP COLUMN carried_to;
