package metering

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

func TestStoreReadsUsage(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		db := testenv.DB(t, b)
		rdb, prefix := testenv.Redis(t, b)
		ctx := context.Background()
		m := newTestMeter(t, rdb, prefix, t.TempDir(), time.Hour)
		defer closeMeter(t, m)
		r := newTestRollup(t, db, rdb, prefix, nil)
		s := NewStore(StoreConfig{DB: db, Redis: rdb, Prefix: prefix})

		day1 := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
		call := func(consumer, fn string, at time.Time, ms int64) Call {
			return Call{ConsumerID: consumer, KeyID: "key_" + consumer, FunctionID: fn, Version: 1, Pricing: testPricing(), At: at, ComputeMs: ms, Billable: true}
		}
		calls := []Call{
			call("alice", "fn_a", day1.Add(10*time.Hour+5*time.Minute), 3),
			call("alice", "fn_a", day1.Add(10*time.Hour+50*time.Minute), 40),
			call("alice", "fn_a", day1.Add(11*time.Hour), 40_000),
			call("alice", "fn_a", day1.Add(26*time.Hour), 7),
			call("alice", "fn_b", day1.Add(10*time.Hour), 1),
			call("bob", "fn_a", day1.Add(10*time.Hour+1*time.Minute), 100),
			call("bob", "fn_c", day1.Add(10*time.Hour), 100),
			{ConsumerID: "bob", KeyID: "key_bob2", FunctionID: "fn_c", Version: 1, Pricing: testPricing(), At: day1.Add(30 * time.Hour), ComputeMs: 5, Billable: true},
		}
		for _, c := range calls {
			// Priced as the gateway prices them: within the 5 free calls.
			c.Cost, c.Free = c.Pricing.CallCost(0, c.ComputeMs), true
			m.Record(c)
		}
		if err := m.flushOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}

		h := func(d time.Duration) time.Time { return day1.Add(d) }
		// The roll-up writes each row with what the gateway charged.
		var rows []struct {
			HourStart            int64
			KeyID, FunctionID    string
			Calls, BillableCalls int64
			ComputeMs, FreeCalls int64
			CostPico             *int64
			CreditPico           int64
		}
		if err := db.Table("usage_hourly").Where("consumer_id = ?", "bob").Order("hour_start, key_id, function_id").Find(&rows).Error; err != nil {
			t.Fatal(err)
		}
		if len(rows) != 3 || rows[0].FunctionID != "fn_a" || rows[0].ComputeMs != 100 || rows[2].KeyID != "key_bob2" || rows[2].HourStart != h(30*time.Hour).Unix() {
			t.Fatalf("bob's rows = %+v", rows)
		}
		for _, r := range rows {
			want := testPricing().CallCost(0, r.ComputeMs)
			if r.CostPico == nil || !fromPico(*r.CostPico).Equal(want) || r.FreeCalls != 1 || r.CreditPico != 0 {
				t.Fatalf("row %+v: want cost %s (a free call at position 0), one free call", r, want)
			}
		}

		lat, err := s.Latency(ctx, "fn_a", day1, h(24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		bucket := func(ms int64) int { return histogramBucket(ms) }
		if len(lat) != 2 || !lat[0].HourStart.Equal(h(10*time.Hour)) || !lat[1].HourStart.Equal(h(11*time.Hour)) {
			t.Fatalf("latency hours = %+v", lat)
		}
		if lat[0].Histogram[bucket(3)] != 1 || lat[0].Histogram[bucket(40)] != 1 || lat[0].Histogram[bucket(100)] != 1 || lat[1].Histogram[len(HistogramBounds)] != 1 {
			t.Fatalf("latency histograms = %+v", lat)
		}

		// Not yet rolled up: live counters, plus a batch a crashed worker left pending.
		m.Record(call("alice", "fn_a", h(12*time.Hour), 5))
		m.Record(call("bob", "fn_a", h(12*time.Hour), 5))
		if err := m.flushOnce(ctx); err != nil {
			t.Fatal(err)
		}
		crashing := newTestRollup(t, db, rdb, prefix, nil)
		errCrash := errors.New("crash")
		crashing.failAt = func(s string) error {
			if s == stepMoved {
				return errCrash
			}
			return nil
		}
		if _, err := crashing.RunOnce(ctx); !errors.Is(err, errCrash) {
			t.Fatalf("crashing roll-up: %v", err)
		}
		m.Record(call("alice", "fn_a", h(12*time.Hour), 6))
		if err := m.flushOnce(ctx); err != nil {
			t.Fatal(err)
		}
		live, err := s.LiveUsage(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != 1 || live[0].ConsumerID != "alice" || live[0].Calls != 2 || live[0].ComputeMs != 11 || !live[0].HourStart.Equal(h(12*time.Hour)) {
			t.Fatalf("alice's live usage = %+v, want one row of 2 calls, 11 ms at 12:00", live)
		}
		if _, err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if live, err := s.LiveUsage(ctx, "alice"); err != nil || len(live) != 0 {
			t.Fatalf("live usage after roll-up = %+v, %v; want none", live, err)
		}
	})
}

func TestFieldRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []rowKey{
		{HourStart: 1773568800, ConsumerID: "con_1", KeyID: "key_1", FunctionID: "fn_1", Version: 3},
		{HourStart: 0, ConsumerID: "a|b", KeyID: "100%", FunctionID: "%7C", Version: 0},
	}
	for _, want := range tests {
		got, metric, err := parseField(want.field("h3"))
		if err != nil || got != want || metric != "h3" {
			t.Fatalf("parseField(field(%+v)) = %+v, %q, %v", want, got, metric, err)
		}
	}
}

func TestHistogramBucketAndPico(t *testing.T) {
	t.Parallel()
	buckets := []struct {
		ms   int64
		want int
	}{{0, 0}, {1, 0}, {2, 1}, {3, 2}, {30000, len(HistogramBounds) - 1}, {30001, len(HistogramBounds)}}
	for _, tc := range buckets {
		if got := histogramBucket(tc.ms); got != tc.want {
			t.Errorf("histogramBucket(%d) = %d, want %d", tc.ms, got, tc.want)
		}
	}
	p := testPricing()
	picos := []struct {
		before, ms int64
		want       int64
	}{
		{0, 10, 1_230_000},               // free call: compute only, 10 * 0.000000123
		{5, 10, 100_000_000 + 1_230_000}, // billable: 0.0001 + compute
		{5, 0, 100_000_000},
	}
	for _, tc := range picos {
		if got := toPico(p.CallCost(tc.before, tc.ms)); got != tc.want {
			t.Errorf("toPico(CallCost(%d, %d)) = %d, want %d", tc.before, tc.ms, got, tc.want)
		}
	}
}

// TestToPicoFastPathAgrees: the direct scaling of a coefficient gives what
// shifting and rounding up gives, for amounts of every scale and sign.
func TestToPicoFastPathAgrees(t *testing.T) {
	slow := func(d decimal.Decimal) int64 {
		b := d.Shift(picoExp).Ceil().BigInt()
		if !b.IsInt64() {
			if b.Sign() < 0 {
				return math.MinInt64
			}
			return math.MaxInt64
		}
		return b.Int64()
	}
	rng := rand.New(rand.NewPCG(3, 5))
	cases := []string{"0", "1", "-1", "0.000000000001", "0.0000000000001", "-0.0000000000001", "9223372", "9223373", "-9223373", "1000000000", "0.1", "12.345678901234"}
	for range 2000 {
		cases = append(cases, decimal.New(rng.Int64N(1<<62)-(1<<61), -int32(rng.IntN(16))).String())
	}
	for _, s := range cases {
		d := decimal.RequireFromString(s)
		if got, want := toPico(d), slow(d); got != want {
			t.Fatalf("toPico(%s) = %d, want %d", s, got, want)
		}
	}
	if got := toPico(decimal.New(5, 3)); got != 5000*1e12 {
		t.Fatalf("toPico(5e3) = %d", got)
	}
}
