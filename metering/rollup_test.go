package metering

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// dbTotals sums usage_hourly and checks usage_latency agrees with it.
func dbTotals(t *testing.T, db *database.DB) totals {
	t.Helper()
	var got struct{ Calls, Billable, ComputeMs, Errors, Latency int64 }
	err := db.Raw(`SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS calls, CAST(COALESCE(SUM(billable_calls), 0) AS BIGINT) AS billable,
		CAST(COALESCE(SUM(compute_ms), 0) AS BIGINT) AS compute_ms, CAST(COALESCE(SUM(errors), 0) AS BIGINT) AS errors,
		(SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM usage_latency) AS latency FROM usage_hourly`).Scan(&got).Error
	if err != nil {
		t.Fatal(err)
	}
	if got.Latency != got.Billable {
		t.Errorf("usage_latency counts %d calls, usage_hourly %d billable", got.Latency, got.Billable)
	}
	return totals{Calls: got.Calls, Billable: got.Billable, ComputeMs: got.ComputeMs, Errors: got.Errors, Spend: decimal.Zero}
}

func newTestRollup(t *testing.T, db *database.DB, rdb redis.UniversalClient, prefix string, onBatch func(*gorm.DB, []UsageRow) error) *Rollup {
	t.Helper()
	r, err := NewRollup(RollupConfig{DB: db, Redis: rdb, Prefix: prefix, OnBatch: onBatch, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func withoutSpend(a totals) totals { a.Spend = decimal.Zero; return a }

// assertRedisDrained checks no live counters or batches are left.
func assertRedisDrained(t *testing.T, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	ks := keyspace{prefix: prefix}
	for shard := range NumShards {
		n, err := rdb.Exists(context.Background(), ks.live(shard), ks.pending(shard)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("shard %d still has live counters or pending batches", shard)
		}
	}
}

func TestRollupExactlyOnceConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		db := testenv.DB(t, b)
		rdb, prefix := testenv.Redis(t, b)
		m := newTestMeter(t, rdb, prefix, t.TempDir(), 5*time.Millisecond)
		var hookRows atomic.Int64
		onBatch := func(tx *gorm.DB, rows []UsageRow) error {
			hookRows.Add(int64(len(rows)))
			return nil
		}
		workers := []*Rollup{newTestRollup(t, db, rdb, prefix, onBatch), newTestRollup(t, db, rdb, prefix, onBatch)}

		const producers, each = 6, 250
		var want totals
		for i := range producers * each {
			want.add(genCall(i))
		}
		var produced sync.WaitGroup
		for p := range producers {
			produced.Go(func() {
				for i := range each {
					m.Record(genCall(p*each + i))
				}
			})
		}
		stop := make(chan struct{})
		var rolled sync.WaitGroup
		var applied, skipped atomic.Int64
		for _, w := range workers {
			rolled.Go(func() {
				for {
					st, err := w.RunOnce(context.Background())
					if err != nil {
						t.Errorf("roll-up: %v", err)
						return
					}
					applied.Add(int64(st.Batches))
					skipped.Add(int64(st.Skipped))
					select {
					case <-stop:
						return
					default:
					}
				}
			})
		}
		produced.Wait()
		closeMeter(t, m)
		close(stop)
		rolled.Wait()
		for _, w := range workers {
			if _, err := w.RunOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
			t.Fatalf("database holds %v, want %v", got, withoutSpend(want))
		}
		assertRedisDrained(t, rdb, prefix)
		if applied.Load() == 0 || hookRows.Load() == 0 {
			t.Fatalf("no batch went through the workers (applied %d, hook rows %d)", applied.Load(), hookRows.Load())
		}
		var batches int64
		if err := db.Model(&usageBatchRow{}).Count(&batches).Error; err != nil {
			t.Fatal(err)
		}
		if batches < applied.Load() {
			t.Fatalf("%d usage_batches rows for %d applied batches", batches, applied.Load())
		}
	})
}

func TestRollupCrashAtEachStep(t *testing.T) {
	errCrash := errors.New("simulated crash")
	steps := []string{stepMoved, stepRead, stepInTx, stepCommitted, "hook"}
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		for _, step := range steps {
			t.Run(step, func(t *testing.T) {
				db := testenv.DB(t, b)
				rdb, prefix := testenv.Redis(t, b)
				ctx := context.Background()
				m := newTestMeter(t, rdb, prefix, t.TempDir(), time.Hour)
				defer closeMeter(t, m)
				var want totals
				record := func(from, to int) {
					for i := from; i < to; i++ {
						m.Record(genCall(i))
						want.add(genCall(i))
					}
					if err := m.flushOnce(ctx); err != nil {
						t.Fatal(err)
					}
				}
				record(0, 200)

				crashing := newTestRollup(t, db, rdb, prefix, func(*gorm.DB, []UsageRow) error {
					if step == "hook" {
						return errCrash
					}
					return nil
				})
				crashing.failAt = func(s string) error {
					if s == step {
						return errCrash
					}
					return nil
				}
				if _, err := crashing.RunOnce(ctx); !errors.Is(err, errCrash) {
					t.Fatalf("crashing roll-up returned %v, want the simulated crash", err)
				}
				// More calls arrive before the workers come back.
				record(200, 260)

				// Two healthy workers recover at once.
				var wg sync.WaitGroup
				for range 2 {
					w := newTestRollup(t, db, rdb, prefix, nil)
					wg.Go(func() {
						if _, err := w.RunOnce(ctx); err != nil {
							t.Errorf("recovering roll-up: %v", err)
						}
					})
				}
				wg.Wait()
				if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
					t.Fatalf("after a crash at %q the database holds %v, want %v", step, got, withoutSpend(want))
				}
				assertRedisDrained(t, rdb, prefix)
			})
		}
	})
}

// snapshotLive copies every shard's live hash, as a replica that had not yet
// seen the roll-up's move would still hold it.
func snapshotLive(t *testing.T, rdb redis.UniversalClient, prefix string) map[int]map[string]string {
	t.Helper()
	ks := keyspace{prefix: prefix}
	snap := map[int]map[string]string{}
	for shard := range NumShards {
		h, err := rdb.HGetAll(context.Background(), ks.live(shard)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(h) > 0 {
			snap[shard] = h
		}
	}
	return snap
}

// TestRollupCountsCommittedFlushesOnce replays, after a roll-up committed
// them, the same flushes (same flush ids, same counts) into Redis, as a
// replica promoted while it lagged behind the roll-up's move still holds
// them, next to new flushes; the next roll-up moves them under a new batch
// id. The database must count every call once.
func TestRollupCountsCommittedFlushesOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		db := testenv.DB(t, b)
		rdb, prefix := testenv.Redis(t, b)
		ctx := context.Background()
		m, err := NewMeter(confirmedConfig(rdb, prefix, t.TempDir(), db))
		if err != nil {
			t.Fatal(err)
		}
		defer closeMeter(t, m)
		var want totals
		record := func(from, to int) {
			for i := from; i < to; i++ {
				m.Record(genCall(i))
				want.add(genCall(i))
			}
			if err := m.flushOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
		record(0, 300)
		snap := snapshotLive(t, rdb, prefix)
		if len(snap) == 0 {
			t.Fatal("no live counters to snapshot")
		}
		r := newTestRollup(t, db, rdb, prefix, nil)
		if _, err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
			t.Fatalf("after the first roll-up the database holds %v, want %v", got, withoutSpend(want))
		}

		// Failover: the promoted replica still has the live hashes the
		// roll-up moved and committed; new flushes land next to them.
		ks := keyspace{prefix: prefix}
		for shard, h := range snap {
			args := make([]any, 0, 2*len(h))
			for f, v := range h {
				args = append(args, f, v)
			}
			if err := rdb.HSet(ctx, ks.live(shard), args...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		record(300, 420)
		if got, err := NewStore(StoreConfig{DB: db, Redis: rdb, Prefix: prefix}).LiveUsage(ctx, "con_1"); err != nil {
			t.Fatal(err)
		} else {
			var calls, wantCalls int64
			for _, u := range got {
				calls += u.Calls
			}
			for i := 300; i < 420; i++ {
				if genCall(i).ConsumerID == "con_1" {
					wantCalls++
				}
			}
			if calls != wantCalls {
				t.Errorf("live usage preview shows %d calls of con_1, want %d (the replayed flushes are committed)", calls, wantCalls)
			}
		}
		st, err := r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
			t.Fatalf("after the replayed roll-up the database holds %v, want %v", got, withoutSpend(want))
		}
		if st.Calls != 120 {
			t.Errorf("second roll-up reports %d calls, want the 120 new ones", st.Calls)
		}
		assertRedisDrained(t, rdb, prefix)
	})
}

// TestHashCountsFlushAppliedTwice checks a flush Redis applied twice (its
// marker lost, its counts kept) is counted once.
func TestHashCountsFlushAppliedTwice(t *testing.T) {
	rk := rowKey{HourStart: testStart.Unix(), ConsumerID: "con|1", KeyID: "key_1", FunctionID: "fn_1", Version: 2}
	h := map[string]string{
		flushField("f1"): "2",
		flushRowField("f1", rk.field(metricCalls)):    "6",
		flushRowField("f1", rk.field(metricBillable)): "4",
		flushField("f2"): "1",
		flushRowField("f2", rk.field(metricCalls)): "1",
		rk.field(metricCalls):                      "5", // merged, no flush id
	}
	hc, err := parseHash(h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids, twice := hc.flushIDs()
	if len(ids) != 2 || len(twice) != 1 || twice[0] != "f1" {
		t.Fatalf("flush ids %v, twice %v", ids, twice)
	}
	rows, err := hc.rows(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Calls != 3+1+5 || rows[0].BillableCalls != 2 || rows[0].ConsumerID != "con|1" {
		t.Fatalf("rows %+v, want 9 calls, 2 billable of con|1", rows)
	}
	rows, err = hc.rows(func(f string) bool { return f != "f1" })
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Calls != 6 {
		t.Fatalf("rows without f1 %+v, want 6 calls", rows)
	}
}
