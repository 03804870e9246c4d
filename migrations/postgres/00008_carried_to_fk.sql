-- +goose Up
-- Nothing to do: invoices.carried_to has referred to invoices (id) here since
-- 00007. SQLite's 00008 adds the same foreign key there; this file keeps the
-- two dialects' version numbers in step.
SELECT 1;

-- +goose Down
SELECT 1;
