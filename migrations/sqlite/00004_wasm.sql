-- +goose Up
-- WebAssembly modules that vendors upload, stored once by the lower-case hex
-- SHA-256 of their bytes. The table is content-addressed and append-only:
-- versions are immutable and refer to a module by its hash (module_sha256 in
-- the version's backend JSON), two uploads of the same bytes share one row,
-- and no row is ever updated. Every gateway replica reads a module from here
-- the first time it runs it, then keeps the compiled form in memory and in
-- its on-disk compilation cache, so calls never read this table.
-- size is kept beside the code so listing and limits need not read the blob.
CREATE TABLE wasm_modules (
    sha256     TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    code       BLOB NOT NULL,
    size       BIGINT NOT NULL CHECK (size > 0),
    created_at DATETIME NOT NULL
);

-- +goose Down
DROP TABLE wasm_modules;
