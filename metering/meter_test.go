package metering

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

func TestMeterConcurrentRecordExact(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		m := newTestMeter(t, rdb, prefix, t.TempDir(), 5*time.Millisecond)
		const workers, each = 16, 150
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					m.Record(genCall(w*each + i))
				}
			})
		}
		wg.Wait()
		var want totals
		for i := range workers * each {
			want.add(genCall(i))
		}
		closeMeter(t, m)
		if got := m.Backlog(); got != 0 {
			t.Fatalf("backlog after close = %d, want 0", got)
		}
		if got := redisTotals(t, rdb, prefix, true); !got.equal(want) {
			t.Fatalf("redis holds %v, want %v", got, want)
		}
	})
}

func TestFlushIdempotentByID(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		m := newTestMeter(t, rdb, prefix, t.TempDir(), time.Hour)
		defer closeMeter(t, m)
		var want totals
		agg := newAggregate()
		for i := range 50 {
			c := genCall(i)
			c.ConsumerID, c.KeyID = "con_0", "key_0_0" // one shard
			agg.addSpooled(spooledOf(c))
			want.add(c)
		}
		f := &flush{id: "flush-fixed-id", shard: shardOf("con_0"), agg: agg}
		for range 3 {
			if err := m.sender.send(context.Background(), f); err != nil {
				t.Fatal(err)
			}
		}
		if got := redisTotals(t, rdb, prefix, true); !got.equal(want) {
			t.Fatalf("after sending the same flush 3 times redis holds %v, want once: %v", got, want)
		}
	})
}

func TestSpoolReplayAfterCrash(t *testing.T) {
	errCrash := errors.New("simulated crash")
	tests := []struct {
		name string
		// crashHooks makes the last flush before the crash stop at a step.
		hooks      meterHooks
		rotate     bool // a tiny RotateBytes, so segments rotate with flushes outstanding
		flushFirst bool // flush the first calls fully before recording more
	}{
		{name: "never flushed"},
		{name: "first part flushed and acknowledged", flushFirst: true},
		{name: "crash after intent, before send", flushFirst: true, hooks: meterHooks{beforeSend: func(*flush) error { return errCrash }}},
		{name: "crash after redis applied, before ack", flushFirst: true, hooks: meterHooks{afterSend: func(*flush) error { return errCrash }}},
		{name: "rotated with flushes outstanding", flushFirst: true, rotate: true, hooks: meterHooks{afterSend: func(*flush) error { return errCrash }}},
	}
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				rdb, prefix := testenv.Redis(t, b)
				dir := t.TempDir()
				ctx := context.Background()
				cfg := MeterConfig{Redis: rdb, Prefix: prefix, SpoolDir: dir, FlushInterval: time.Hour, Logger: quietLogger()}
				if tc.rotate {
					cfg.RotateBytes = 2048
				}
				m, err := NewMeter(cfg)
				if err != nil {
					t.Fatal(err)
				}
				var want totals
				for i := range 120 {
					m.Record(genCall(i))
					want.add(genCall(i))
				}
				if tc.flushFirst {
					if err := m.flushOnce(ctx); err != nil {
						t.Fatal(err)
					}
				}
				for i := 120; i < 300; i++ {
					m.Record(genCall(i))
					want.add(genCall(i))
				}
				m.hooks = tc.hooks
				if err := m.flushOnce(ctx); err != nil && !errors.Is(err, errCrash) {
					t.Fatal(err)
				}
				for i := 300; i < 330; i++ {
					m.Record(genCall(i))
					want.add(genCall(i))
				}
				m.abandon()

				// A second crash right after replay must not double anything either.
				m2, err := NewMeter(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if got := m2.Backlog(); got == 0 {
					t.Fatal("replay found nothing to send")
				}
				m2.abandon()

				m3, err := NewMeter(cfg)
				if err != nil {
					t.Fatal(err)
				}
				closeMeter(t, m3)
				if got := redisTotals(t, rdb, prefix, true); !got.equal(want) {
					t.Fatalf("after crash and replay redis holds %v, want %v", got, want)
				}
				entries, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var segments int
				for _, e := range entries {
					if e.Name() != "LOCK" {
						segments++
						if info, _ := e.Info(); info.Size() > 200 {
							t.Errorf("spool segment %s is %d bytes after a clean close, want compacted", e.Name(), info.Size())
						}
					}
				}
				if segments != 1 {
					t.Errorf("%d spool segments after close, want 1", segments)
				}
			})
		}
	})
}

func TestSpoolIsLocked(t *testing.T) {
	t.Parallel()
	b := testenv.Backends()[0]
	rdb, prefix := testenv.Redis(t, b)
	dir := t.TempDir()
	m := newTestMeter(t, rdb, prefix, dir, time.Hour)
	defer closeMeter(t, m)
	if _, err := NewMeter(MeterConfig{Redis: rdb, Prefix: prefix, SpoolDir: dir, Logger: quietLogger()}); err == nil {
		t.Fatal("a second meter opened the same spool")
	}
}

func TestMeterRedisUnreachable(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		conn, prefix := testenv.Redis(t, b)
		rdb, proxy, ok := proxiedClient(t, b, conn)
		if !ok {
			t.Skip("the proxy cannot stand in front of a cluster")
		}
		ctx := context.Background()
		m := newTestMeter(t, rdb, prefix, t.TempDir(), time.Hour)
		var want totals

		// Fully down: nothing can be delivered, nothing is lost.
		proxy.setUp(false)
		for i := range 200 {
			m.Record(genCall(i))
			want.add(genCall(i))
		}
		if err := m.flushOnce(ctx); err == nil {
			t.Fatal("flush succeeded with redis unreachable")
		}
		if got := m.Backlog(); got != 200 {
			t.Fatalf("backlog with redis down = %d, want 200", got)
		}
		l := newTestLimiter(t, rdb, prefix, nil)
		a, err := l.Admit(ctx, AdmissionRequest{Caller: Caller{ConsumerID: "con_0", KeyID: "key_0_0", RateLimitPerSecond: 10}, FunctionID: "fn_0", InvocationID: "inv"})
		if err != nil || !a.Degraded || !a.Allowed {
			t.Fatalf("admission with redis down = %+v, %v; want allowed and degraded", a, err)
		}

		// Flapping while calls keep coming: every few sends the connections
		// are cut while the send is under way (the cut races with it, as a
		// network failure does), so replies of applied flushes get lost;
		// their resends must not double.
		var cuts sync.WaitGroup
		var sends int
		m.hooks.beforeSend = func(*flush) error {
			if sends++; sends%3 == 0 {
				cuts.Go(func() { proxy.setUp(false) })
			}
			return nil
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 200; i < 2000; i++ {
				m.Record(genCall(i))
				if i%50 == 0 {
					runtime.Gosched()
				}
			}
		})
		for i := 200; i < 2000; i++ {
			want.add(genCall(i))
		}
		var failed int
		for round := 0; round < 40 || m.Backlog() > 0 && round < 400; round++ {
			cuts.Wait()
			up := round%4 != 3
			proxy.setUp(up)
			if !up {
				// Something to send while Redis is down, however fast the
				// recorder is.
				m.Record(genCall(2000 + round))
				want.add(genCall(2000 + round))
			}
			if m.flushOnce(ctx) != nil {
				failed++
			}
			if round == 39 {
				wg.Wait()
			}
		}
		m.hooks.beforeSend = nil
		cuts.Wait()
		proxy.setUp(true)
		if failed == 0 {
			t.Fatal("no flush failed while redis was flapping")
		}
		closeMeter(t, m)
		if got := redisTotals(t, conn, prefix, true); !got.equal(want) {
			t.Fatalf("after the outage redis holds %v, want %v", got, want)
		}
	})
}

// TestSpoolLineRoundTrips checks the hand-written call record decodes to the
// call it encodes, odd strings included.
func TestSpoolLineRoundTrips(t *testing.T) {
	t.Parallel()
	for _, sc := range []spooledCall{
		{InvocationID: "inv_1", ConsumerID: "acc_abc", KeyID: "key_x", FunctionID: "fn_y", Version: 3, At: 1_700_000_000_123_456, ComputeMs: 42, Billable: true, SpendPico: 123_456_789},
		{InvocationID: "inv_2", ConsumerID: "acc_abc", KeyID: "key_x", FunctionID: "fn_y", Version: 1, At: 1, ComputeMs: 1, Billable: true, SpendPico: 7, Free: true, CreditPico: 5, Unsettled: true},
		{InvocationID: `odd "quoted" \ id`, ConsumerID: "ünïcode", KeyID: "<k&>", FunctionID: "f\n", Version: 1, At: -5, Error: true},
	} {
		line := sc.appendSpoolLine(nil)
		var rec spoolRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if rec.T != recCall || rec.Call == nil || *rec.Call != sc {
			t.Errorf("%q decoded to %+v, want %+v", line, rec.Call, sc)
		}
	}
}

// TestFlushTickBacksOff steps the flush loop with a test clock while Redis is
// unreachable: a failed flush waits FlushInterval, then twice as long each
// time up to MaxBackoff, and a success resets the wait.
func TestFlushTickBacksOff(t *testing.T) {
	t.Parallel()
	b := testenv.Backends()[0]
	conn, prefix := testenv.Redis(t, b)
	rdb, proxy, ok := proxiedClient(t, b, conn)
	if !ok {
		t.Skip("the proxy cannot stand in front of a cluster")
	}
	clock := fnmarket.NewTestClock(testStart)
	m := newSteppedMeter(t, MeterConfig{
		Redis: rdb, Prefix: prefix, SpoolDir: t.TempDir(), Clock: clock,
		FlushInterval: 100 * time.Millisecond, MaxBackoff: 350 * time.Millisecond, SendTimeout: 2 * time.Second,
		Logger: quietLogger(),
	})
	defer closeMeter(t, m)
	var attempts int
	m.hooks.beforeSend = func(*flush) error { attempts++; return nil }
	record := func() {
		c := genCall(1)
		c.ConsumerID = "con_0" // one shard, so one flush per attempt
		m.Record(c)
	}
	// step advances the clock by d, runs one pass and says whether it tried
	// to send.
	step := func(d time.Duration) bool {
		before := attempts
		clock.Advance(d)
		m.flushTick()
		return attempts > before
	}
	record()
	proxy.setUp(false)
	if !step(0) {
		t.Fatal("the first pass did not try to flush")
	}
	for _, wait := range []time.Duration{100, 200, 350, 350} {
		wait *= time.Millisecond
		if step(wait - time.Millisecond) {
			t.Fatalf("retried %v before the backoff of %v ended", wait-time.Millisecond, wait)
		}
		if !step(time.Millisecond) {
			t.Fatalf("did not retry when the backoff of %v ended", wait)
		}
	}
	proxy.setUp(true)
	if !step(350*time.Millisecond) || m.Backlog() != 0 {
		t.Fatalf("no delivery once redis was back (backlog %d)", m.Backlog())
	}
	// A success resets the backoff: the next failure waits FlushInterval.
	record()
	proxy.setUp(false)
	if !step(0) {
		t.Fatal("did not try to flush the new call")
	}
	if !step(100 * time.Millisecond) {
		t.Fatal("after a success the backoff did not start again from FlushInterval")
	}
	proxy.setUp(true)
}
