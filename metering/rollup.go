package metering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/database"
)

// moveScript atomically turns a shard's live counters into a batch and logs
// the batch in the shard's pending set; nothing happens when live is empty.
// KEYS: live, batch, pending. ARGV: batch id.
var moveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
`)

// Roll-up steps, named for the crash-injection seam.
const (
	stepMoved     = "moved"     // live renamed to a batch, logged as pending
	stepRead      = "read"      // batch read from Redis
	stepInTx      = "in-tx"     // rows written, transaction not yet committed
	stepCommitted = "committed" // transaction committed, batch still in Redis
)

// RollupConfig configures a Rollup.
type RollupConfig struct {
	// DB receives the usage.
	DB *database.DB
	// Redis holds the counters.
	Redis redis.UniversalClient
	// Prefix is put before every Redis key; the same as the Meter's.
	Prefix string
	// OnBatch, when set, runs inside each batch's transaction with its rows
	// (for example to bump api_keys.last_used_at); an error aborts the batch.
	OnBatch func(tx *gorm.DB, rows []UsageRow) error
	// Clock stamps usage_batches.applied_at; default fnmarket.SystemClock.
	Clock fnmarket.Clock
	// FlushRetention is how long usage_flushes keeps the flush ids of
	// rolled-up batches, so a Meter replaying its spool can tell a flush the
	// database already holds from one Redis lost. RunOnce prunes older ids
	// about once an hour. It must exceed how long a gateway's spool may stay
	// unreplayed; default 30 days; negative never prunes.
	FlushRetention time.Duration
	// Logger receives failures in Run; default slog.Default().
	Logger *slog.Logger
}

// Rollup moves counters out of Redis into usage_hourly and usage_latency,
// each batch exactly once, however many workers run it and wherever one
// stops.
type Rollup struct {
	cfg RollupConfig
	ks  keyspace

	pruneMu   sync.Mutex
	lastPrune time.Time
	// failAt is a test seam: a non-nil error for a step stops the roll-up
	// there, as a crash would.
	failAt func(step string) error
}

// RollupStats counts what one pass did.
type RollupStats struct {
	// Batches were written to the database by this pass.
	Batches int
	// Skipped batches had already been written (by another worker or an
	// earlier pass that stopped before cleaning up).
	Skipped int
	// Rows is the number of usage_hourly rows written.
	Rows int
	// Calls is the number of calls in the batches written.
	Calls int64
	// Flushes is the number of meter flush ids recorded with the batches.
	Flushes int
}

// NewRollup returns a Rollup.
func NewRollup(cfg RollupConfig) (*Rollup, error) {
	if cfg.DB == nil || cfg.Redis == nil {
		return nil, errors.New("new rollup: needs a database and a redis client")
	}
	if cfg.Clock == nil {
		cfg.Clock = fnmarket.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FlushRetention == 0 {
		cfg.FlushRetention = 30 * 24 * time.Hour
	}
	return &Rollup{cfg: cfg, ks: keyspace{prefix: cfg.Prefix}}, nil
}

// RunOnce rolls up every shard once: first the batches a previous pass left
// pending, then the live counters.
func (r *Rollup) RunOnce(ctx context.Context) (RollupStats, error) {
	var st RollupStats
	var errs []error
	for shard := range NumShards {
		if err := r.rollShard(ctx, shard, &st); err != nil {
			if ctx.Err() != nil {
				return st, fmt.Errorf("roll up usage: %w", ctx.Err())
			}
			errs = append(errs, fmt.Errorf("shard %d: %w", shard, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return st, fmt.Errorf("roll up usage: %w", err)
	}
	r.maybePrune(ctx)
	return st, nil
}

// pruneEvery is how often RunOnce prunes usage_flushes.
const pruneEvery = time.Hour

func (r *Rollup) maybePrune(ctx context.Context) {
	if r.cfg.FlushRetention < 0 {
		return
	}
	now := r.cfg.Clock.Now()
	r.pruneMu.Lock()
	if !r.lastPrune.IsZero() && now.Sub(r.lastPrune) < pruneEvery {
		r.pruneMu.Unlock()
		return
	}
	r.lastPrune = now
	r.pruneMu.Unlock()
	if _, err := r.PruneFlushes(ctx, now.Add(-r.cfg.FlushRetention)); err != nil {
		r.cfg.Logger.Warn("metering: prune usage_flushes failed; will retry", "err", err)
		r.pruneMu.Lock()
		r.lastPrune = time.Time{}
		r.pruneMu.Unlock()
	}
}

// PruneFlushes deletes the flush ids of batches applied before olderThan, in
// chunks, and reports how many went. A Meter whose spool still held such a
// flush unconfirmed would resend it (a no-op while Redis keeps its applied
// marker, AppliedTTL), so keep them longer than any spool may stay
// unreplayed.
func (r *Rollup) PruneFlushes(ctx context.Context, olderThan time.Time) (int64, error) {
	const chunk = 10000
	var total int64
	for {
		res := r.cfg.DB.WithContext(ctx).Exec(
			`DELETE FROM usage_flushes WHERE id IN (SELECT id FROM usage_flushes WHERE applied_at < ? LIMIT ?)`,
			olderThan.UTC(), chunk)
		if res.Error != nil {
			return total, fmt.Errorf("prune usage_flushes: %w", res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < chunk {
			return total, nil
		}
	}
}

func (r *Rollup) fail(step string) error {
	if r.failAt == nil {
		return nil
	}
	return r.failAt(step)
}

func (r *Rollup) rollShard(ctx context.Context, shard int, st *RollupStats) error {
	ids, err := r.cfg.Redis.SMembers(ctx, r.ks.pending(shard)).Result()
	if err != nil {
		return fmt.Errorf("list pending batches: %w", err)
	}
	for _, id := range ids {
		if err := r.applyBatch(ctx, shard, id, st); err != nil {
			return err
		}
	}
	id := uuid.NewString()
	moved, err := moveScript.Run(ctx, r.cfg.Redis,
		[]string{r.ks.live(shard), r.ks.batch(shard, id), r.ks.pending(shard)}, id).Int()
	if err != nil {
		return fmt.Errorf("move live counters to batch %s: %w", id, err)
	}
	if moved == 0 {
		return nil
	}
	if err := r.fail(stepMoved); err != nil {
		return err
	}
	return r.applyBatch(ctx, shard, id, st)
}

// applyBatch writes one batch to the database in one transaction keyed by
// its id, then, only after the commit, drops it from Redis.
func (r *Rollup) applyBatch(ctx context.Context, shard int, id string, st *RollupStats) error {
	h, err := r.cfg.Redis.HGetAll(ctx, r.ks.batch(shard, id)).Result()
	if err != nil {
		return fmt.Errorf("read usage batch %s: %w", id, err)
	}
	if len(h) > 0 {
		if err := r.fail(stepRead); err != nil {
			return err
		}
		hc, err := parseHash(h, nil)
		if err != nil {
			return fmt.Errorf("roll up usage batch %s: %w", id, err)
		}
		flushIDs, twice := hc.flushIDs()
		if len(twice) > 0 {
			r.cfg.Logger.Warn("metering: flushes applied more than once to redis (it lost applied markers but kept counts: evicted or expired?); each is counted once",
				"batch", id, "flush_ids", twice)
		}
		res, err := r.writeBatch(ctx, shard, id, hc, flushIDs)
		if err != nil {
			return fmt.Errorf("roll up usage batch %s: %w", id, err)
		}
		if len(res.already) > 0 && len(hc.merged) > 0 {
			r.cfg.Logger.Error("metering: a batch holds flushes already rolled up next to counts without a flush id (from a meter without Confirmed or an older gateway); those counts cannot be told apart and may be counted twice",
				"batch", id, "flush_ids", res.already)
		} else if len(res.already) > 0 {
			r.cfg.Logger.Warn("metering: flushes already rolled up by an earlier batch are in this one too (redis kept counts a roll-up had committed, as after a failover to a lagging replica); not counted again",
				"batch", id, "flush_ids", res.already)
		}
		if res.applied {
			st.Batches++
			st.Rows += len(res.rows)
			st.Flushes += len(flushIDs) - len(res.already)
			for _, row := range res.rows {
				st.Calls += row.Calls
			}
		} else {
			st.Skipped++
		}
		if err := r.fail(stepCommitted); err != nil {
			return err
		}
	}
	// An empty batch was already written and deleted by someone who stopped
	// before (or raced us to) removing it from pending.
	_, err = r.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, r.ks.batch(shard, id))
		p.SRem(ctx, r.ks.pending(shard), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop rolled-up batch %s: %w", id, err)
	}
	return nil
}

// usageBatchRow is a row of usage_batches.
type usageBatchRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	Shard     int       `gorm:"column:shard"`
	RowCount  int       `gorm:"column:row_count"`
	AppliedAt time.Time `gorm:"column:applied_at"`
}

func (usageBatchRow) TableName() string { return "usage_batches" }

// usageFlushRow is a row of usage_flushes: a meter flush whose counts are in
// the database, committed with the batch that carried them.
type usageFlushRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	BatchID   string    `gorm:"column:batch_id"`
	AppliedAt time.Time `gorm:"column:applied_at"`
}

func (usageFlushRow) TableName() string { return "usage_flushes" }

// inChunks calls fn on ids in chunks small enough for any engine's
// bound-parameter limit.
func inChunks(ids []string, fn func([]string) error) error {
	const size = 500
	for len(ids) > 0 {
		n := min(size, len(ids))
		if err := fn(ids[:n]); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// usageHourlyRow is a row of usage_hourly.
type usageHourlyRow struct {
	HourStart     int64  `gorm:"column:hour_start;primaryKey"`
	ConsumerID    string `gorm:"column:consumer_id;primaryKey"`
	KeyID         string `gorm:"column:key_id;primaryKey"`
	FunctionID    string `gorm:"column:function_id;primaryKey"`
	Version       int    `gorm:"column:version;primaryKey"`
	Calls         int64  `gorm:"column:calls"`
	BillableCalls int64  `gorm:"column:billable_calls"`
	ComputeMs     int64  `gorm:"column:compute_ms"`
	Errors        int64  `gorm:"column:errors"`
	FreeCalls     int64  `gorm:"column:free_calls"`
	// CostPico is nil for calls counted without the gateway's price (see
	// migration 00009); NULL + n stays NULL, so such a row stays unpriced.
	CostPico   *int64 `gorm:"column:cost_pico"`
	CreditPico int64  `gorm:"column:credit_pico"`
}

func (usageHourlyRow) TableName() string { return "usage_hourly" }

// usageLatencyRow is a row of usage_latency.
type usageLatencyRow struct {
	FunctionID string `gorm:"column:function_id;primaryKey"`
	HourStart  int64  `gorm:"column:hour_start;primaryKey"`
	Version    int    `gorm:"column:version;primaryKey"`
	Bucket     int    `gorm:"column:bucket;primaryKey"`
	Calls      int64  `gorm:"column:calls"`
}

func (usageLatencyRow) TableName() string { return "usage_latency" }

func addColumns(table string, cols ...string) clause.Set {
	m := make(map[string]any, len(cols))
	for _, c := range cols {
		m[c] = gorm.Expr(table + "." + c + " + excluded." + c)
	}
	return clause.Assignments(m)
}

// batchResult is what writeBatch did.
type batchResult struct {
	applied bool       // false: the batch id was already in the database
	rows    []UsageRow // usage rows written
	already []string   // flush ids left out: an earlier batch had committed them
}

// writeBatch writes a batch under its id in one transaction: the batch row,
// then its flush ids into usage_flushes, then the counts without a flush id
// and those of the flushes this transaction inserted. A flush id some other
// batch committed (Redis kept or got back counts a roll-up had already
// committed: a failover to a lagging replica, an AOF that lost its last
// second) is left out with its counts, so the database decides, per flush,
// that it is counted exactly once, and a flush's counts are in the database
// iff its id is. It reports applied=false when the batch was already there.
func (r *Rollup) writeBatch(ctx context.Context, shard int, id string, hc *hashCounts, flushIDs []string) (batchResult, error) {
	var res batchResult
	errAlready := errors.New("batch already applied")
	err := r.cfg.DB.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res = batchResult{}
		var n int64
		if err := tx.Model(&usageBatchRow{}).Where("id = ?", id).Count(&n).Error; err != nil {
			return fmt.Errorf("look up batch: %w", err)
		}
		if n > 0 {
			return errAlready
		}
		// The batch row goes first: a second worker on the same batch waits
		// here on the primary key, then fails, before touching any counter.
		now := r.cfg.Clock.Now().UTC()
		if err := tx.Create(&usageBatchRow{ID: id, Shard: shard, RowCount: 0, AppliedAt: now}).Error; err != nil {
			return fmt.Errorf("insert batch: %w", err)
		}
		fresh, err := insertFlushes(tx, id, flushIDs, now)
		if err != nil {
			return err
		}
		for _, f := range flushIDs {
			if !fresh[f] {
				res.already = append(res.already, f)
			}
		}
		rows, err := hc.rows(func(f string) bool { return fresh[f] })
		if err != nil {
			return err
		}
		res.rows = rows
		if len(rows) > 0 {
			if err := tx.Model(&usageBatchRow{}).Where("id = ?", id).Update("row_count", len(rows)).Error; err != nil {
				return fmt.Errorf("count batch rows: %w", err)
			}
		}
		if err := upsertUsage(tx, rows); err != nil {
			return err
		}
		if r.cfg.OnBatch != nil {
			if err := r.cfg.OnBatch(tx, rows); err != nil {
				return fmt.Errorf("on-batch hook: %w", err)
			}
		}
		return r.fail(stepInTx)
	})
	switch {
	case err == nil:
		res.applied = true
		return res, nil
	case errors.Is(err, errAlready):
		return batchResult{}, nil
	}
	// A duplicate key means another worker committed the same batch first
	// (on PostgreSQL our insert waited for it, then failed); a failed commit
	// may still have committed. Either way the batch row tells the truth.
	var n int64
	if cerr := r.cfg.DB.WithContext(ctx).Model(&usageBatchRow{}).Where("id = ?", id).Count(&n).Error; cerr == nil && n > 0 {
		return batchResult{}, nil
	}
	return batchResult{}, err
}

// insertFlushes records flush ids as committed by batch and returns those
// this transaction inserted; an id already present (committed by another
// batch, or being committed by a concurrent one, which PostgreSQL waits for)
// is not returned. INSERT ... ON CONFLICT DO NOTHING RETURNING works on
// PostgreSQL and SQLite (3.35+) alike. ids must be sorted, so concurrent
// workers lock them in the same order.
func insertFlushes(tx *gorm.DB, batch string, ids []string, now time.Time) (map[string]bool, error) {
	fresh := make(map[string]bool, len(ids))
	err := inChunks(ids, func(c []string) error {
		var q strings.Builder
		q.WriteString("INSERT INTO usage_flushes (id, batch_id, applied_at) VALUES ")
		args := make([]any, 0, 3*len(c))
		for i, f := range c {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?)")
			args = append(args, f, batch, now)
		}
		q.WriteString(" ON CONFLICT (id) DO NOTHING RETURNING id")
		rows, err := tx.Raw(q.String(), args...).Rows()
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var f string
			if err := rows.Scan(&f); err != nil {
				return err
			}
			fresh[f] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("insert usage_flushes: %w", err)
	}
	return fresh, nil
}

// upsertUsage adds rows to usage_hourly and their histograms to usage_latency.
func upsertUsage(tx *gorm.DB, rows []UsageRow) error {
	hourly := make([]usageHourlyRow, 0, len(rows))
	type latKey struct {
		fn          string
		hour        int64
		version, bk int
	}
	lat := map[latKey]int64{}
	for _, u := range rows {
		hour := u.HourStart.Unix()
		row := usageHourlyRow{
			HourStart: hour, ConsumerID: u.ConsumerID, KeyID: u.KeyID, FunctionID: u.FunctionID, Version: u.Version,
			Calls: u.Calls, BillableCalls: u.BillableCalls, ComputeMs: u.ComputeMs, Errors: u.Errors,
			FreeCalls: u.FreeCalls, CreditPico: u.CreditPico,
		}
		if u.Priced || u.BillableCalls == 0 {
			row.CostPico = &u.CostPico
		}
		hourly = append(hourly, row)
		for b, n := range u.Histogram {
			if n != 0 {
				lat[latKey{u.FunctionID, hour, u.Version, b}] += n
			}
		}
	}
	latency := make([]usageLatencyRow, 0, len(lat))
	for k, n := range lat {
		latency = append(latency, usageLatencyRow{FunctionID: k.fn, HourStart: k.hour, Version: k.version, Bucket: k.bk, Calls: n})
	}
	// A stable order makes concurrent workers lock rows in the same order.
	sort.Slice(hourly, func(i, j int) bool { return lessHourly(hourly[i], hourly[j]) })
	sort.Slice(latency, func(i, j int) bool {
		a, b := latency[i], latency[j]
		if a.FunctionID != b.FunctionID {
			return a.FunctionID < b.FunctionID
		}
		if a.HourStart != b.HourStart {
			return a.HourStart < b.HourStart
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Bucket < b.Bucket
	})
	if len(hourly) > 0 {
		err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "hour_start"}, {Name: "consumer_id"}, {Name: "key_id"}, {Name: "function_id"}, {Name: "version"}},
			DoUpdates: addColumns("usage_hourly", "calls", "billable_calls", "compute_ms", "errors", "free_calls", "cost_pico", "credit_pico"),
		}).CreateInBatches(&hourly, 500).Error
		if err != nil {
			return fmt.Errorf("upsert usage_hourly: %w", err)
		}
	}
	if len(latency) > 0 {
		err := tx.Clauses(clause.OnConflict{
			Columns:   []clause.Column{{Name: "function_id"}, {Name: "hour_start"}, {Name: "version"}, {Name: "bucket"}},
			DoUpdates: addColumns("usage_latency", "calls"),
		}).CreateInBatches(&latency, 1000).Error
		if err != nil {
			return fmt.Errorf("upsert usage_latency: %w", err)
		}
	}
	return nil
}

func lessHourly(a, b usageHourlyRow) bool {
	if a.HourStart != b.HourStart {
		return a.HourStart < b.HourStart
	}
	if a.ConsumerID != b.ConsumerID {
		return a.ConsumerID < b.ConsumerID
	}
	if a.KeyID != b.KeyID {
		return a.KeyID < b.KeyID
	}
	if a.FunctionID != b.FunctionID {
		return a.FunctionID < b.FunctionID
	}
	return a.Version < b.Version
}
