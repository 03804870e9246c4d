package metering

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/database"
)

// liveScript reads a shard's live counters and every pending batch in one
// atomic step, so a batch being moved or rolled up is seen exactly once.
// KEYS: live, pending. ARGV: the batch key prefix. It answers
// {live fields, id1, batch1 fields, id2, batch2 fields, ...}; batch keys are
// built inside, all in the shard's slot.
var liveScript = redis.NewScript(`
local res = {redis.call('HGETALL', KEYS[1])}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  res[#res + 1] = id
  res[#res + 1] = redis.call('HGETALL', ARGV[1] .. id)
end
return res
`)

// LatencyHour is the compute-ms histogram of one function version in one
// hour: calls per HistogramBounds bucket, plus the overflow bucket.
type LatencyHour struct {
	HourStart time.Time
	Version   int
	Histogram []int64
}

// StoreConfig configures a Store.
type StoreConfig struct {
	DB     *database.DB
	Redis  redis.UniversalClient
	Prefix string // the Meter's Redis key prefix
}

// Store reads usage: rolled up from the database, not yet rolled up from Redis.
type Store struct {
	cfg StoreConfig
	ks  keyspace
}

// NewStore returns a Store.
func NewStore(cfg StoreConfig) *Store { return &Store{cfg: cfg, ks: keyspace{prefix: cfg.Prefix}} }

// LiveUsage returns a consumer's usage still in Redis (live counters and
// batches moved out but not yet committed), one row per hour, key and function
// version. Batches already committed to the database are left out; a batch
// committing while this runs may still be missed or seen twice, so it is for
// previews, never for invoices.
func (s *Store) LiveUsage(ctx context.Context, consumerID string) ([]UsageRow, error) {
	if consumerID == "" {
		return nil, fnmarket.Errorf(fnmarket.EINVALID, "live usage needs a consumer")
	}
	shard := shardOf(consumerID)
	res, err := liveScript.Run(ctx, s.cfg.Redis, []string{s.ks.live(shard), s.ks.pending(shard)}, s.ks.batch(shard, "")).Slice()
	if err != nil {
		return nil, fmt.Errorf("read live usage: %w", err)
	}
	if len(res) == 0 || len(res)%2 != 1 {
		return nil, fmt.Errorf("read live usage: unexpected answer of %d values", len(res))
	}
	hashes := []any{res[0]}
	var ids []string
	idHash := map[string]any{}
	for i := 1; i+1 < len(res); i += 2 {
		id, _ := res[i].(string)
		ids = append(ids, id)
		idHash[id] = res[i+1]
	}
	if len(ids) > 0 {
		var done []string
		if err := s.cfg.DB.WithContext(ctx).Model(&usageBatchRow{}).Where("id IN ?", ids).Pluck("id", &done).Error; err != nil {
			return nil, fmt.Errorf("read live usage: look up committed batches: %w", err)
		}
		for _, id := range done {
			delete(idHash, id)
		}
		for _, id := range ids {
			if h, ok := idHash[id]; ok {
				hashes = append(hashes, h)
			}
		}
	}
	var parsed []*hashCounts
	var flushIDs []string
	for _, h := range hashes {
		flat, ok := h.([]any)
		if !ok || len(flat)%2 != 0 {
			return nil, fmt.Errorf("read live usage: unexpected hash %T", h)
		}
		m := make(map[string]string, len(flat)/2)
		for i := 0; i < len(flat); i += 2 {
			k, _ := flat[i].(string)
			v, _ := flat[i+1].(string)
			m[k] = v
		}
		hc, err := parseHash(m, func(k rowKey) bool { return k.ConsumerID == consumerID })
		if err != nil {
			return nil, fmt.Errorf("read live usage: %w", err)
		}
		parsed = append(parsed, hc)
		ids, _ := hc.flushIDs()
		flushIDs = append(flushIDs, ids...)
	}
	// Flushes the database already holds (Redis kept counts a roll-up had
	// committed, as after a failover) are left out, as the roll-up will.
	committed, err := FlushesCommitted(ctx, s.cfg.DB, flushIDs)
	if err != nil {
		return nil, fmt.Errorf("read live usage: %w", err)
	}
	sum := map[rowKey]*UsageRow{}
	for _, hc := range parsed {
		rows, err := hc.rows(func(f string) bool { return !committed[f] })
		if err != nil {
			return nil, fmt.Errorf("read live usage: %w", err)
		}
		for _, r := range rows {
			k := rowKey{HourStart: r.HourStart.Unix(), ConsumerID: r.ConsumerID, KeyID: r.KeyID, FunctionID: r.FunctionID, Version: r.Version}
			if t, ok := sum[k]; ok {
				t.Calls += r.Calls
				t.BillableCalls += r.BillableCalls
				t.ComputeMs += r.ComputeMs
				t.Errors += r.Errors
				t.FreeCalls += r.FreeCalls
				t.CostPico += r.CostPico
				t.CreditPico += r.CreditPico
				t.Priced = t.Priced && r.Priced
				for i := range t.Histogram {
					t.Histogram[i] += r.Histogram[i]
				}
				continue
			}
			sum[k] = &r
		}
	}
	out := make([]UsageRow, 0, len(sum))
	for _, r := range sum {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return lessHourly(
			usageHourlyRow{HourStart: a.HourStart.Unix(), ConsumerID: a.ConsumerID, KeyID: a.KeyID, FunctionID: a.FunctionID, Version: a.Version},
			usageHourlyRow{HourStart: b.HourStart.Unix(), ConsumerID: b.ConsumerID, KeyID: b.KeyID, FunctionID: b.FunctionID, Version: b.Version})
	})
	return out, nil
}

// FlushesCommitted reports which of a Meter's flush ids the database holds:
// their counts were rolled up and committed (see usage_flushes). Ids it does
// not hold are absent from the map. It is what MeterConfig.Confirmed wants.
func (s *Store) FlushesCommitted(ctx context.Context, ids []string) (map[string]bool, error) {
	return FlushesCommitted(ctx, s.cfg.DB, ids)
}

// FlushesCommitted is Store.FlushesCommitted over a bare database.
func FlushesCommitted(ctx context.Context, db *database.DB, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	err := inChunks(ids, func(c []string) error {
		var found []string
		if err := db.WithContext(ctx).Model(&usageFlushRow{}).Where("id IN ?", c).Pluck("id", &found).Error; err != nil {
			return err
		}
		for _, id := range found {
			out[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up committed flushes: %w", err)
	}
	return out, nil
}

// Latency returns the compute-ms histogram of a function per hour and
// version for hours from <= hour < to, oldest first.
func (s *Store) Latency(ctx context.Context, functionID string, from, to time.Time) ([]LatencyHour, error) {
	var rows []usageLatencyRow
	err := s.cfg.DB.WithContext(ctx).
		Where("function_id = ? AND hour_start >= ? AND hour_start < ?", functionID, from.Unix(), to.Unix()).
		Order("hour_start, version, bucket").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read latency of %s: %w", functionID, err)
	}
	var out []LatencyHour
	for _, r := range rows {
		if r.Bucket < 0 || r.Bucket > len(HistogramBounds) {
			continue
		}
		n := len(out)
		if n == 0 || out[n-1].HourStart.Unix() != r.HourStart || out[n-1].Version != r.Version {
			out = append(out, LatencyHour{HourStart: time.Unix(r.HourStart, 0).UTC(), Version: r.Version, Histogram: make([]int64, len(HistogramBounds)+1)})
			n++
		}
		out[n-1].Histogram[r.Bucket] += r.Calls
	}
	return out, nil
}
