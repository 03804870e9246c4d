-- +goose Up
-- invoices.carried_to refers to an invoice, as it does on PostgreSQL since
-- 00007. 00007 left the REFERENCES clause out here, believing SQLite could not
-- then drop the column in its Down section; it can (only a column used by an
-- index, a key or another table's constraint cannot be dropped), so the
-- foreign key is added now. SQLite cannot add a constraint to an existing
-- column: the column is recreated with it and its values copied over.
ALTER TABLE invoices ADD COLUMN carried_to_new TEXT REFERENCES invoices (id);
UPDATE invoices SET carried_to_new = carried_to;
DROP INDEX invoices_carried_to_idx;
ALTER TABLE invoices DROP COLUMN carried_to;
ALTER TABLE invoices RENAME COLUMN carried_to_new TO carried_to;
CREATE INDEX invoices_carried_to_idx ON invoices (carried_to);

-- +goose Down
ALTER TABLE invoices ADD COLUMN carried_to_old TEXT;
UPDATE invoices SET carried_to_old = carried_to;
DROP INDEX invoices_carried_to_idx;
ALTER TABLE invoices DROP COLUMN carried_to;
ALTER TABLE invoices RENAME COLUMN carried_to_old TO carried_to;
CREATE INDEX invoices_carried_to_idx ON invoices (carried_to);
