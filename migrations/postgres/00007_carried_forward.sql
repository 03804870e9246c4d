-- +goose Up
-- Stripe does not charge an invoice under its minimum charge (0.50 USD and
-- the like): it would mark it paid and move the amount to the customer's
-- balance, and fnmarket would pay vendors for money it never collected. Such
-- an invoice stays open here, marked sync_status 'carried_forward', and its
-- total becomes a 'carried_forward' line on the consumer's next invoice;
-- carried_to is that invoice, and the carried invoice is paid when it is.
ALTER TABLE invoices ADD COLUMN carried_to TEXT REFERENCES invoices (id);
CREATE INDEX invoices_carried_to_idx ON invoices (carried_to);

-- carried_invoice_id names the invoice a 'carried_forward' line carries.
ALTER TABLE invoice_lines ADD COLUMN carried_invoice_id TEXT;
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_kind_check CHECK (kind IN ('usage', 'adjustment', 'carried_forward'));

-- +goose Down
DELETE FROM invoice_lines WHERE kind = 'carried_forward';
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_kind_check CHECK (kind IN ('usage', 'adjustment'));
ALTER TABLE invoice_lines DROP COLUMN carried_invoice_id;
DROP INDEX invoices_carried_to_idx;
ALTER TABLE invoices DROP COLUMN carried_to;
