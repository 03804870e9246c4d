-- +goose Up
-- Prepaid credit the month's usage consumed (usage_hourly.credit_pico) is
-- shown on the invoice as its own 'credit' line, a negative amount: the
-- invoice's total is its subtotal less the credit applied. A credit line
-- belongs to no function or vendor (function_id and vendor_id are empty).
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_kind_check CHECK (kind IN ('usage', 'adjustment', 'carried_forward', 'credit'));

-- +goose Down
-- The old constraint cannot hold credit lines: they go (the invoices'
-- totals still count them).
DELETE FROM invoice_lines WHERE kind = 'credit';
ALTER TABLE invoice_lines DROP CONSTRAINT invoice_lines_kind_check;
ALTER TABLE invoice_lines ADD CONSTRAINT invoice_lines_kind_check CHECK (kind IN ('usage', 'adjustment', 'carried_forward'));
