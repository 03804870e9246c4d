package metering

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// confirmedConfig is a meter config whose flushes are confirmed against db;
// flushing and confirming happen only when the test asks.
func confirmedConfig(rdb redis.UniversalClient, prefix, dir string, db *database.DB) MeterConfig {
	return MeterConfig{
		Redis: rdb, Prefix: prefix, SpoolDir: dir,
		FlushInterval: time.Hour, ConfirmInterval: time.Hour,
		MaxBackoff: 50 * time.Millisecond, SendTimeout: 2 * time.Second,
		Confirmed: NewStore(StoreConfig{DB: db}).FlushesCommitted,
		Logger:    quietLogger(),
	}
}

// loseRedis makes Redis lose everything the test wrote, as a restart without
// persistence does: the embedded server is replaced by a new empty one (the
// embedded default dies with a kill -9 of its process), a real one has the
// test's keys deleted. It returns the client to use from now on.
func loseRedis(t *testing.T, conn *redisx.Conn, prefix string) redis.UniversalClient {
	t.Helper()
	if conn.Embedded != nil {
		fresh, err := redisx.OpenEmbedded()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = fresh.Close() })
		return fresh
	}
	dropKeys(t, conn, prefix)
	return conn
}

func dropKeys(t *testing.T, rdb redis.UniversalClient, prefix string) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := rdb.Del(ctx, k).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func countFlushRows(t *testing.T, db *database.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Model(&usageFlushRow{}).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConfirmedSurvivesRedisLoss records calls, lets Redis acknowledge their
// flushes (some rolled up, some moved out but not committed, some still
// live), abandons the meter as kill -9 would, optionally loses all of Redis,
// and checks a new meter on the same spool plus a roll-up put every call in
// the database exactly once.
func TestConfirmedSurvivesRedisLoss(t *testing.T) {
	errCrash := errors.New("simulated crash")
	tests := []struct {
		name       string
		loseRedis  bool
		rollFirst  bool // roll up the first flushes before the loss
		pending    bool // leave a batch moved out but not committed
		confirmNow bool // let the meter confirm what was rolled up before the crash
	}{
		{name: "redis lost before any roll-up", loseRedis: true},
		{name: "redis lost after some roll-ups", loseRedis: true, rollFirst: true, pending: true},
		{name: "redis lost after some roll-ups were confirmed", loseRedis: true, rollFirst: true, pending: true, confirmNow: true},
		{name: "redis kept its data", rollFirst: true, pending: true},
		{name: "redis kept its data, nothing rolled up"},
	}
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				db := testenv.DB(t, b)
				conn, prefix := testenv.Redis(t, b)
				dir := t.TempDir()
				ctx := context.Background()
				m, err := NewMeter(confirmedConfig(conn, prefix, dir, db))
				if err != nil {
					t.Fatal(err)
				}
				var want totals
				record := func(from, to int, flush bool) {
					for i := from; i < to; i++ {
						m.Record(genCall(i))
						want.add(genCall(i))
					}
					if flush {
						if err := m.flushOnce(ctx); err != nil {
							t.Fatal(err)
						}
					}
				}
				record(0, 200, true)
				if tc.rollFirst {
					if _, err := newTestRollup(t, db, conn, prefix, nil).RunOnce(ctx); err != nil {
						t.Fatal(err)
					}
				}
				record(200, 260, true)
				if tc.pending {
					crashing := newTestRollup(t, db, conn, prefix, nil)
					crashing.failAt = func(s string) error {
						if s == stepMoved {
							return errCrash
						}
						return nil
					}
					if _, err := crashing.RunOnce(ctx); !errors.Is(err, errCrash) {
						t.Fatalf("crashing roll-up: %v", err)
					}
				}
				record(260, 300, true)
				record(300, 330, false) // in the spool, in no flush
				if got := m.Backlog(); got != 30 {
					t.Fatalf("backlog = %d, want 30", got)
				}
				if got := m.Unconfirmed(); got != 300 {
					t.Fatalf("unconfirmed = %d, want 300", got)
				}
				if tc.confirmNow {
					if err := m.conf.confirmOnce(ctx, true); err != nil {
						t.Fatal(err)
					}
					if got := m.Unconfirmed(); got != 100 {
						t.Fatalf("unconfirmed after confirming the rolled-up flushes = %d, want 100", got)
					}
				}
				m.abandon()

				rdb := redis.UniversalClient(conn)
				if tc.loseRedis {
					rdb = loseRedis(t, conn, prefix)
				}
				m2, err := NewMeter(confirmedConfig(rdb, prefix, dir, db))
				if err != nil {
					t.Fatal(err)
				}
				// A second crash right after replay must not change anything.
				m2.abandon()
				m3, err := NewMeter(confirmedConfig(rdb, prefix, dir, db))
				if err != nil {
					t.Fatal(err)
				}
				closeMeter(t, m3)
				if tc.loseRedis && !tc.rollFirst {
					// Everything was resent to the empty Redis, spend included.
					if got := redisTotals(t, rdb, prefix, true); !got.equal(want) {
						t.Fatalf("after the loss redis holds %v, want %v", got, want)
					}
				}
				if _, err := newTestRollup(t, db, rdb, prefix, nil).RunOnce(ctx); err != nil {
					t.Fatal(err)
				}
				if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
					t.Fatalf("database holds %v, want %v", got, withoutSpend(want))
				}
				assertRedisDrained(t, rdb, prefix)

				// The next run finds every flush in the database and resends nothing.
				m4, err := NewMeter(confirmedConfig(rdb, prefix, dir, db))
				if err != nil {
					t.Fatal(err)
				}
				if got := m4.Backlog(); got != 0 {
					t.Fatalf("after roll-up the spool still resends %d calls", got)
				}
				if err := m4.conf.confirmOnce(ctx, false); err != nil {
					t.Fatal(err)
				}
				if got := m4.Unconfirmed(); got != 0 {
					t.Fatalf("after roll-up %d calls are still unconfirmed", got)
				}
				closeMeter(t, m4)
				if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
					t.Fatalf("database holds %v after another restart, want %v", got, withoutSpend(want))
				}
			})
		}
	})
}

// TestConfirmedDetectsRedisLossWhileRunning loses Redis's data under a running
// meter: flushes it acknowledged but that never reached the database are
// found missing and sent again, those rolled up are not. The test steps the
// flush and confirm loops itself and moves a test clock across the grace.
func TestConfirmedDetectsRedisLossWhileRunning(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		db := testenv.DB(t, b)
		conn, prefix := testenv.Redis(t, b)
		ctx := context.Background()
		clock := fnmarket.NewTestClock(testStart)
		const grace = 30 * time.Second
		cfg := confirmedConfig(conn, prefix, t.TempDir(), db)
		cfg.RedisLossGrace, cfg.Clock = grace, clock
		m := newSteppedMeter(t, cfg)
		defer closeMeter(t, m)
		rollup := newTestRollup(t, db, conn, prefix, nil)
		flushed := func(what string) {
			t.Helper()
			m.flushTick()
			if got := m.Backlog(); got != 0 {
				t.Fatalf("%s: backlog %d after a flush pass", what, got)
			}
		}
		confirmPass := func() { m.conf.tick(cfg.SendTimeout) }
		var want totals
		for i := range 200 {
			m.Record(genCall(i))
			want.add(genCall(i))
		}
		flushed("first flushes")
		if _, err := rollup.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		for i := 200; i < 500; i++ {
			m.Record(genCall(i))
			want.add(genCall(i))
		}
		flushed("second flushes")
		if got := m.Unconfirmed(); got != 500 {
			t.Fatalf("unconfirmed = %d, want 500", got)
		}

		// Redis restarts without persistence: markers and counters are gone.
		if conn.Embedded != nil {
			conn.Embedded.FlushAll()
		} else {
			dropKeys(t, conn, prefix)
		}
		confirmPass() // the rolled-up flushes are in the database
		if got := m.Unconfirmed(); got != 300 {
			t.Fatalf("unconfirmed after the roll-up was confirmed = %d, want 300", got)
		}
		clock.Advance(grace) // markers looked up, found missing
		confirmPass()
		clock.Advance(grace - time.Second)
		confirmPass()
		if got := m.Backlog(); got != 0 {
			t.Fatalf("%d calls resent before the database had a grace to commit them", got)
		}
		clock.Advance(time.Second)
		confirmPass()
		if got := m.Backlog(); got != 300 {
			t.Fatalf("backlog after the loss was detected = %d, want the 300 lost calls", got)
		}
		flushed("resent flushes")
		if _, err := rollup.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		confirmPass()
		if got := m.Unconfirmed(); got != 0 {
			t.Fatalf("unconfirmed after the resent flushes were rolled up = %d", got)
		}
		if got := dbTotals(t, db); !got.equal(withoutSpend(want)) {
			t.Fatalf("database holds %v, want %v", got, withoutSpend(want))
		}
	})
}

// TestConfirmedSpoolBounded: with the database unreachable the flushes kept
// for confirmation stay under RotateBytes/2, the oldest forgotten.
func TestConfirmedSpoolBounded(t *testing.T) {
	t.Parallel()
	b := testenv.Backends()[0]
	rdb, prefix := testenv.Redis(t, b)
	dir := t.TempDir()
	cfg := MeterConfig{
		Redis: rdb, Prefix: prefix, SpoolDir: dir, FlushInterval: time.Hour, ConfirmInterval: time.Hour,
		RotateBytes: 8 << 10, Logger: quietLogger(),
		Confirmed: func(context.Context, []string) (map[string]bool, error) {
			return nil, errors.New("database unreachable")
		},
	}
	m, err := NewMeter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		m.Record(genCall(i))
		if i%20 == 19 {
			if err := m.flushOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.mu.Lock()
	bytes, n, forgotten := m.conf.bytes, m.conf.calls, m.conf.forgotten
	m.mu.Unlock()
	if bytes > cfg.RotateBytes/2 || n == 0 || n >= 2000 || forgotten == 0 {
		t.Fatalf("unconfirmed: %d bytes, %d calls, %d flushes forgotten; want under %d bytes, some kept, some forgotten", bytes, n, forgotten, cfg.RotateBytes/2)
	}
	m.abandon()
	m2, err := NewMeter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeMeter(t, m2)
	if got := m2.Unconfirmed(); got != n {
		t.Fatalf("replay keeps %d unconfirmed calls, want %d", got, n)
	}
	if got := m2.Backlog(); got != 0 {
		t.Fatalf("replay resends %d calls while the database cannot answer", got)
	}
}

func TestPruneFlushes(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		db := testenv.DB(t, b)
		rdb, prefix := testenv.Redis(t, b)
		ctx := context.Background()
		m, err := NewMeter(confirmedConfig(rdb, prefix, t.TempDir(), db))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			m.Record(genCall(i))
		}
		closeMeter(t, m)
		r := newTestRollup(t, db, rdb, prefix, nil)
		st, err := r.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := countFlushRows(t, db)
		if n == 0 || int64(st.Flushes) != n {
			t.Fatalf("roll-up recorded %d flushes, usage_flushes has %d rows", st.Flushes, n)
		}
		if got, err := r.PruneFlushes(ctx, time.Now().Add(-time.Hour)); err != nil || got != 0 {
			t.Fatalf("pruning older than an hour ago removed %d, %v; want 0", got, err)
		}
		if got, err := r.PruneFlushes(ctx, time.Now().Add(time.Hour)); err != nil || got != n {
			t.Fatalf("pruning everything removed %d, %v; want %d", got, err, n)
		}
		if got := countFlushRows(t, db); got != 0 {
			t.Fatalf("%d usage_flushes rows left", got)
		}
	})
}
