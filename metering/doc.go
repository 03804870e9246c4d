// Package metering counts calls and turns them into usage rows, exactly once.
//
// # Path of a call
//
// The gateway asks a Limiter to Admit each call: one Lua script, one Redis
// round trip in the consumer's slot, which gives the call its position in the
// consumer's month of the function (positions decide free calls and tiers:
// catalog.Pricing.CallCost), checks a GCRA rate limit whose state lives in
// Redis, and holds the call's worst case (price at its position + timeout x
// per-ms price) against the key's and the account's month spend and caps and
// the account's prepaid credit, so caps and credit are exact across any
// number of replicas and any concurrency. The gateway runs the call, answers
// with X-Cost (its exact cost), asks the Limiter to Settle it (the real cost
// replaces the hold; a call that never reached the function costs nothing and
// gives its position back to the next call), and hands the finished Call,
// priced, to a Meter. The Meter appends the call
// to a local spool, sums it in memory, and every FlushInterval sends each
// shard's sums to Redis with a flush script that is idempotent by flush id.
// A Rollup (the billing worker) atomically renames each shard's live hash to
// a batch, writes the batch to the database in one transaction keyed by the
// batch id, and only after the commit deletes the batch. With
// MeterConfig.Confirmed set (Store.FlushesCommitted), each flush also writes
// its id into the live hash and keeps its counts in fields of its own
// (prefixed with its id), the Rollup commits those ids to usage_flushes with
// the batch's rows, counting only the flushes whose ids it inserted, and the
// Meter keeps every flush in its spool until the database has its id. A Store reads usage back, from the database and,
// for previews, from Redis.
//
// # Leases
//
// By default the gateway admits through a Leaser rather than the Limiter:
// the same rules, decided in memory. Per API key, each replica leases a
// slice of the key's rate (GCRA tokens taken ahead), a block of positions
// per function (only in the schedule's last step, where every position costs
// the same; earlier positions are taken one per call) and, for a key that a
// cap, credit or standing limits, a hold on the caps' headroom and on the
// credit, recorded like a call's hold under the lease's id with "|L" at the
// end. One leaseScript round trip renews whatever runs short; settlement is
// in memory; the lease goes back to Redis when the key has been idle for a
// second, when its month has ended, or when the gateway stops. A lease's
// hold that expires (its replica stopped renewing it) is kept as spent, not
// released, so a cap or a balance is never exceeded. The bounds are on
// Leaser.
//
// # Redis keys
//
// Everything one consumer's call touches hashes to one cluster slot: shard =
// FNV-1a-32(consumer id) % NumShards, hash tag {m<shard>}, so each script
// touches one slot and roll-up iterates shards rather than SCANning:
//
//	<prefix>{m7}:live                          hash: hour|consumer|key|function|version|metric -> count;
//	                                           with Confirmed, <flush id>|hour|...|metric -> count
//	                                           and flush|<flush id> -> times applied (1), per flush
//	<prefix>{m7}:batch:<uuid>                  a live hash moved out for roll-up
//	<prefix>{m7}:pending                       set of batch ids moved out, not yet committed
//	<prefix>{m7}:applied:<flush id>            flush dedupe marker, TTL 7 days
//	<prefix>{m7}:rl:<key id>                   GCRA theoretical arrival time, µs
//	<prefix>{m7}:spend:<key id>:<YYYYMM>       key's month spend, settled and held, in pico-units (1e-12 of the currency)
//	<prefix>{m7}:aspend:<consumer>:<YYYYMM>    account's month spend, settled and held
//	<prefix>{m7}:credit:<consumer>             prepaid credit neither held nor spent
//	<prefix>{m7}:creditg:<consumer>            the grant total credit: was last topped up to
//	<prefix>{m7}:pos:<consumer>:<function>:<YYYYMM>     positions handed out this month
//	<prefix>{m7}:posret:<consumer>:<function>:<YYYYMM>  positions given back (calls that never ran), sorted set
//	<prefix>{m7}:holds:<consumer>              invocation id -> "hold|credit hold|spend key|account spend key";
//	                                           lease id (L:<replica>:<key>:<YYYYMM>[:c]) -> the same, then "|L"
//	<prefix>{m7}:holdexp:<consumer>            invocation id by when its hold is released if never settled (ms)
//
// Metrics are calls, billable, compute_ms (billable calls only), errors,
// h<i> (the HistogramBounds bucket of each billable call's compute-ms), and
// what the gateway charged: free (calls that took a free call), cost and
// credit (pico-units). The roll-up writes the last three to usage_hourly
// (free_calls, cost_pico, credit_pico), so invoices sum the calls' X-Cost.
// Amounts travel to Redis as integer strings and are only changed with
// INCRBY and compared as digit strings, so no total ever passes through
// floating point; one call's worst case (at most 1000 in the currency) is the
// only amount the scripts add as a Lua number, exact below 2^53. int64
// pico-units hold up to about 9.2 million currency units per key and month.
//
// # Holds
//
// A hold lives from admission to settlement. Settlement runs before the
// answer ends, so a caller's next call sees the real cost, and sequential
// calls stop exactly where the next worst case no longer fits. When Redis
// cannot be told at the end of a call, the call is spooled as unsettled and
// its flush adds its real cost and credit use to the counters; its hold is
// released when it expires. A gateway killed mid-call never settles: its
// holds expire LimiterConfig.HoldGrace (2 minutes) after the call's timeout,
// and the next admission of the same consumer releases them (its position
// is not given back: the call may have reached the function). If a reply is
// lost after Redis settled a call, the flush adds its cost once more: the
// cap counts the call twice (never less), invoices are unaffected. A call
// that a cap, credit or standing limits is refused as unavailable when Redis
// cannot answer within LimiterConfig.LimitedTimeout (2s); other calls are
// then admitted by a local token bucket and priced at the position Redis last
// gave plus the calls this replica let through, so two replicas may give
// one position twice (the consumer then gets a free call or a cheaper tier
// slot twice; each call still costs exactly its X-Cost).
//
// The speed work (leases) builds on the same records: a replica can take a
// slice of a cap or of credit as one hold with an expiry, admit calls against
// it in memory, and settle the slice when it is used up or expires, so what
// any replica holds is always reserved in Redis and comes back when unused.
//
// # Loss model
//
// A call's line is in the spool before Record returns, and the spool keeps a
// flush until it is settled: with Confirmed set, until the database holds its
// id (usage_flushes, committed in the same transaction as the counts, so a
// flush's counts are in the database iff its id is); without it, until Redis
// acknowledges it. Every resend carries the flush's original id; Redis's
// applied marker turns a resend of a flush it still holds into a no-op.
//
//   - kill -9 of a gateway loses nothing it recorded: Record returns only
//     after the call's line is written to the spool with write(2), which the
//     kernel keeps whatever happens to the process. The next Meter on the
//     same directory resends the flushes not settled and flushes the rest.
//     With Confirmed, it first asks the database: a flush the database holds
//     is dropped, never resent; every other one is resent. Where Redis still
//     has its marker (its counts are live or in a pending batch) that is a
//     no-op; where Redis lost it (the embedded Redis dies with the process; a
//     real Redis restarted without persistence) the counts were lost with it
//     and are applied again. If the database cannot answer at start, those
//     flushes wait for the confirm loop below.
//   - Redis losing its data while the gateway runs (restart without AOF):
//     with Confirmed, a flush still not in the database RedisLossGrace (30s)
//     after its ack has its applied marker looked up; if Redis lost it and
//     the database, asked RedisLossGrace later still, does not hold the flush
//     either, the flush is sent again. Marker missing means its counts are
//     nowhere in Redis (a restart keeps a consistent prefix of writes, and
//     the flush script is atomic); the grace lets a roll-up that had read the
//     batch before the loss commit first. A roll-up transaction running
//     longer than RedisLossGrace across the loss (or, at start, one running
//     while the gateway restarts just after Redis lost its data) can have a
//     flush resent that it then commits; the resent copy's id is already in
//     usage_flushes when it is rolled up, so it is left out (logged by name).
//     The spend, credit and position counters the limiter keeps are lost
//     with it: a spend cap may let through more until the month ends,
//     credit left is seeded again from the grants minus the credit usage
//     rows in the database record (calls not yet rolled up can then spend
//     their credit twice), and positions restart at zero (free calls may be
//     given again). Billing counts from the database, never from these
//     counters, and charges each call its X-Cost.
//   - Without Confirmed (the old behaviour) a Redis restart without
//     persistence loses counters not yet rolled up (with AOF appendfsync
//     everysec, about 1s of flushes), and a flush applied, rolled up and
//     committed, whose ack the gateway had not yet written, is applied again
//     if Redis then lost its marker.
//   - An OS crash or power loss may lose the spool writes not yet fsynced.
//     Calls are not fsynced one by one (that would cost a disk flush per
//     call); the spool is fsynced before every flush goes to Redis, every
//     FlushInterval (200ms by default). So at most about one FlushInterval of
//     calls, none of which had reached Redis, is lost; a flush Redis applied
//     is always known to the spool by id. Acks and confirmations are not
//     fsynced either: losing one only means a resend, which the marker or
//     the database turns into a no-op.
//   - Redis unreachable: calls keep being recorded to the spool and memory;
//     flushes are retried with backoff (up to MaxBackoff) and delivered once,
//     whenever Redis is back. Admission falls back to a per-process token
//     bucket (a key can then get up to N times its rate across N replicas);
//     calls limited by a cap, credit or standing are refused (503) until
//     Redis answers again (see Holds).
//   - Database unreachable (with Confirmed): flushes Redis acknowledged pile
//     up in the spool as unconfirmed (Unconfirmed counts their calls), up to
//     RotateBytes/2 (32 MiB) of intents; past that the oldest are forgotten,
//     logged as an error: they are then protected only as without Confirmed
//     (counted once unless Redis loses its data before they are rolled up).
//     While running, a flush unconfirmed for longer than AppliedTTL is never
//     taken for lost (its marker expires by itself), so its counts are never
//     doubled.
//   - Markers must outlive the flushes that rely on them: AppliedTTL (7 days)
//     and usage_flushes' retention (RollupConfig.FlushRetention, 30 days)
//     must both exceed how long a spool may stay unreplayed. A spool
//     replayed later than both could double a flush that was rolled up.
//     Redis must not evict keys (maxmemory-policy noeviction): evicted
//     counters are lost, and without Confirmed an evicted marker whose
//     counts are still live makes a resend count twice (with Confirmed the
//     flush|<id> count or usage_flushes turns it back into once).
//   - Roll-up is exactly once at every step: a batch is written in one
//     transaction together with its usage_batches row and its flush ids, so
//     a retry (or a second worker) finds the row and skips; the batch leaves
//     Redis only after the commit. Deploy workers that know flush|<id> and
//     <flush id>|... fields before gateways that write them: an older worker
//     fails on them (the batch stays pending, nothing is lost) until upgraded.
//   - Redis failing over to a replica that lagged (or an AOF everysec
//     restart losing its last second) can bring back counts a roll-up had
//     already moved and committed, under the same flush ids. With Confirmed
//     the database is the arbiter per flush: the roll-up inserts a batch's
//     flush ids with INSERT ... ON CONFLICT DO NOTHING RETURNING and adds
//     only the counts of the flushes it inserted, so a flush is counted once
//     whatever Redis still holds (logged as a warning naming the ids); a
//     flush Redis applied twice (marker lost, counts kept) has flush|<id> =
//     2 and is divided back to once. Counts written without a flush id
//     (Meters without Confirmed) have no such protection.
//
// # Spool
//
// The spool is a directory with one live segment file of JSON lines: a
// snapshot (flushes not yet settled and calls not yet in any flush), then
// call, flush-intent, ack and confirm records. A flush intent holds exactly
// what it adds to Redis and covers every call of its shard logged before it.
// In a segment whose header is marked tracked (written with Confirmed set) an
// ack leaves the flush unconfirmed until a confirm record; otherwise the ack
// settles it. When everything is acknowledged, few flushes await
// confirmation and the segment is past CompactBytes (or it grows past
// RotateBytes regardless), a new segment is written with the current
// snapshot, synced, and the old one removed; a crash mid-rotation leaves the
// old segment as the truth.
//
// # Inside the Meter
//
// A Meter composes a spool (spool.go: the locked directory, segment sequence
// numbers, group commit of call lines, rotation and replay), a flushSender
// (flush.go: the flush script and applied-marker lookups) and a confirmer
// (confirm.go: acknowledged flushes awaiting the database, loss detection).
// They share the Meter's lock, so a call's line and its sums change together,
// as does a lost flush's move back among the unacknowledged ones; lock order
// is flushMu, wmu, mu. MeterConfig.Clock (default fnmarket.SystemClock)
// stamps acks and decides RedisLossGrace and the retry backoff; the loops
// wake on real tickers, and tests step one pass (flushTick, confirmer.tick)
// with a TestClock instead of sleeping.
package metering
