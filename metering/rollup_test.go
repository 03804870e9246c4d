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
