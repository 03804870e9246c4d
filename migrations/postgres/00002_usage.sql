-- +goose Up
-- One row per roll-up batch moved out of Redis. The primary key makes a retried
-- batch a no-op: the batch's rows and this row commit in one transaction, so a
-- batch is either wholly applied or not at all, and never twice.
CREATE TABLE usage_batches (
    id         TEXT PRIMARY KEY,
    shard      INTEGER NOT NULL,
    row_count  INTEGER NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL
);

-- Usage per consumer, key, function version and hour (hour_start is Unix
-- seconds, UTC, a multiple of 3600: integers compare the same on every
-- engine). Counters only ever grow by roll-up batches. hist holds the coarse
-- compute-ms histogram as comma-separated counts (see metering.HistogramBounds).
CREATE TABLE usage_hourly (
    hour_start     BIGINT NOT NULL,
    consumer_id    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    function_id    TEXT NOT NULL,
    version        INTEGER NOT NULL,
    calls          BIGINT NOT NULL DEFAULT 0,
    billable_calls BIGINT NOT NULL DEFAULT 0,
    compute_ms     BIGINT NOT NULL DEFAULT 0,
    errors         BIGINT NOT NULL DEFAULT 0,
    hist           TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (hour_start, consumer_id, key_id, function_id, version)
);
CREATE INDEX usage_hourly_consumer_idx ON usage_hourly (consumer_id, hour_start);
CREATE INDEX usage_hourly_function_idx ON usage_hourly (function_id, hour_start);

-- +goose Down
DROP TABLE usage_hourly;
DROP TABLE usage_batches;
