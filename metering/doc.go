// Package metering counts calls and turns them into usage rows, exactly once.
//
// # Path of a call
//
// The gateway asks a Limiter to Admit each call (one Lua script, one Redis
// round trip: the key's month spend against its cap, then a GCRA rate limit
// whose state lives in Redis, so it is exact across any number of replicas),
// runs it, and hands the finished Call to a Meter. The Meter appends the call
// to a local spool, sums it in memory, and every FlushInterval sends each
// shard's sums to Redis with a flush script that is idempotent by flush id.
// A Rollup (the billing worker) atomically renames each shard's live hash to
// a batch, writes the batch to the database in one transaction keyed by the
// batch id, and only after the commit deletes the batch. A Store reads usage
// back, from the database and, for previews, from Redis.
//
// # Redis keys
//
// Everything one consumer's call touches hashes to one cluster slot: shard =
// FNV-1a-32(consumer id) % NumShards, hash tag {m<shard>}, so each script
// touches one slot and roll-up iterates shards rather than SCANning:
//
//	<prefix>{m7}:live                          hash: hour|consumer|key|function|version|metric -> count
//	<prefix>{m7}:batch:<uuid>                  a live hash moved out for roll-up
//	<prefix>{m7}:pending                       set of batch ids moved out, not yet committed
//	<prefix>{m7}:applied:<flush id>            flush dedupe marker, TTL 7 days
//	<prefix>{m7}:rl:<key id>                   GCRA theoretical arrival time, µs
//	<prefix>{m7}:spend:<key id>:<YYYYMM>       month spend in pico-units (1e-12 of the currency)
//	<prefix>{m7}:fc:<consumer>:<function>:<YYYYMM>  billable calls this month
//
// Metrics are calls, billable, compute_ms (billable calls only), errors and
// h<i>, the HistogramBounds bucket of each billable call's compute-ms.
// Spend is priced in Go with catalog.Pricing.CallCost and sent to Redis as an
// integer string, so no amount ever passes through floating point; int64
// pico-units hold up to about 9.2 million currency units per key and month.
//
// # Loss model
//
//   - kill -9 of a gateway loses nothing it recorded: Record returns only
//     after the call's line is written to the spool with write(2), which the
//     kernel keeps whatever happens to the process. The next Meter on the
//     same directory resends unacknowledged flushes with their original ids
//     (Redis drops the ones it had applied) and flushes the rest.
//   - An OS crash or power loss may lose the spool writes not yet fsynced.
//     Calls are not fsynced one by one (that would cost a disk flush per
//     call); the spool is fsynced before every flush goes to Redis, every
//     FlushInterval (200ms by default). So at most about one FlushInterval of
//     calls, none of which had reached Redis, is lost; a flush Redis applied
//     is always known to the spool by id.
//   - Redis unreachable: calls keep being recorded to the spool and memory;
//     flushes are retried with backoff (up to MaxBackoff) and delivered once,
//     whenever Redis is back. Admission falls back to a per-process token
//     bucket (a key can then get up to N times its rate across N replicas)
//     and a spend check against the last spend Redis reported plus this
//     process's unconfirmed spend.
//   - Redis restart without persistence of its last writes loses counters not
//     yet rolled up. docker-compose runs Redis with AOF appendfsync everysec,
//     so that is up to about 1s of flushes. There is also a narrow double-count
//     window: a flush applied, rolled up and committed, whose ack the gateway
//     had not yet written, when Redis then loses its applied marker; the
//     resend is then applied again. Both need a Redis crash and are bounded
//     by about one second of traffic. The month spend and call counters the
//     limiter reads lose the same writes, so a spend cap may then let through
//     about a second's more spend; billing counts from the database, never
//     from these counters.
//   - A spool left unreplayed for longer than AppliedTTL (7 days) could double
//     its unacknowledged flushes, whose markers Redis has dropped by then.
//   - Roll-up is exactly once at every step: a batch is written in one
//     transaction together with its usage_batches row, so a retry (or a
//     second worker) finds the row and skips; the batch leaves Redis only
//     after the commit.
//
// # Spool
//
// The spool is a directory with one live segment file of JSON lines: a
// snapshot (flushes not yet acknowledged and calls not yet in any flush), then
// call, flush-intent and ack records. A flush intent holds exactly what it
// adds to Redis and covers every call of its shard logged before it. When
// everything is acknowledged and the segment is past CompactBytes (or it
// grows past RotateBytes regardless), a new segment is written with the
// current snapshot, synced, and the old one removed; a crash mid-rotation
// leaves the old segment as the truth.
package metering
