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
-- engine). Counters only ever grow by roll-up batches.
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
    PRIMARY KEY (hour_start, consumer_id, key_id, function_id, version)
);
CREATE INDEX usage_hourly_consumer_idx ON usage_hourly (consumer_id, hour_start);
CREATE INDEX usage_hourly_function_idx ON usage_hourly (function_id, hour_start);

-- The coarse compute-ms histogram per function version and hour, summed over
-- consumers: calls per bucket, bucket i being (HistogramBounds[i-1],
-- HistogramBounds[i]] in metering. The portal charts p50/p99 from it.
CREATE TABLE usage_latency (
    hour_start  BIGINT NOT NULL,
    function_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    bucket      INTEGER NOT NULL,
    calls       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (function_id, hour_start, version, bucket)
);

-- +goose Down
DROP TABLE usage_latency;
DROP TABLE usage_hourly;
DROP TABLE usage_batches;
