package metering

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
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
			m.Record(c)
		}
		if err := m.flushOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}

		h := func(d time.Duration) time.Time { return day1.Add(d) }
		tests := []struct {
			name   string
			filter UsageFilter
			want   []UsagePeriod
		}{
			{"consumer by hour", UsageFilter{ConsumerID: "alice", From: day1, To: h(48 * time.Hour), Granularity: GranularityHour}, []UsagePeriod{
				{PeriodStart: h(10 * time.Hour), FunctionID: "fn_a", Version: 1, Calls: 2, BillableCalls: 2, ComputeMs: 43},
				{PeriodStart: h(10 * time.Hour), FunctionID: "fn_b", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 1},
				{PeriodStart: h(11 * time.Hour), FunctionID: "fn_a", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 40_000},
				{PeriodStart: h(26 * time.Hour), FunctionID: "fn_a", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 7},
			}},
			{"consumer by day", UsageFilter{ConsumerID: "alice", From: day1, To: h(48 * time.Hour), Granularity: GranularityDay}, []UsagePeriod{
				{PeriodStart: day1, FunctionID: "fn_a", Version: 1, Calls: 3, BillableCalls: 3, ComputeMs: 40_043},
				{PeriodStart: day1, FunctionID: "fn_b", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 1},
				{PeriodStart: h(24 * time.Hour), FunctionID: "fn_a", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 7},
			}},
			{"range excludes later hours", UsageFilter{ConsumerID: "alice", From: day1, To: h(11 * time.Hour), Granularity: GranularityTotal}, []UsagePeriod{
				{PeriodStart: day1, FunctionID: "fn_a", Version: 1, Calls: 2, BillableCalls: 2, ComputeMs: 43},
				{PeriodStart: day1, FunctionID: "fn_b", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 1},
			}},
			{"vendor view sums consumers", UsageFilter{FunctionIDs: []string{"fn_a"}, From: day1, To: h(24 * time.Hour), Granularity: GranularityDay}, []UsagePeriod{
				{PeriodStart: day1, FunctionID: "fn_a", Version: 1, Calls: 4, BillableCalls: 4, ComputeMs: 40_143},
			}},
			{"bob sees only his own", UsageFilter{ConsumerID: "bob", From: day1, Granularity: GranularityTotal}, []UsagePeriod{
				{PeriodStart: day1, FunctionID: "fn_a", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 100},
				{PeriodStart: day1, FunctionID: "fn_c", Version: 1, Calls: 2, BillableCalls: 2, ComputeMs: 105},
			}},
			{"bob per key", UsageFilter{ConsumerID: "bob", From: day1, Granularity: GranularityTotal, PerKey: true}, []UsagePeriod{
				{PeriodStart: day1, KeyID: "key_bob", FunctionID: "fn_a", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 100},
				{PeriodStart: day1, KeyID: "key_bob", FunctionID: "fn_c", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 100},
				{PeriodStart: day1, KeyID: "key_bob2", FunctionID: "fn_c", Version: 1, Calls: 1, BillableCalls: 1, ComputeMs: 5},
			}},
			{"vendor with no functions", UsageFilter{FunctionIDs: []string{}, From: day1}, []UsagePeriod{}},
		}
		for _, tc := range tests {
			got, err := s.Usage(ctx, tc.filter)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%s: got %d rows %+v, want %+v", tc.name, len(got), got, tc.want)
			}
			for i := range got {
				if !got[i].PeriodStart.Equal(tc.want[i].PeriodStart) || got[i].FunctionID != tc.want[i].FunctionID || got[i].KeyID != tc.want[i].KeyID ||
					got[i].Calls != tc.want[i].Calls || got[i].BillableCalls != tc.want[i].BillableCalls || got[i].ComputeMs != tc.want[i].ComputeMs {
					t.Fatalf("%s: row %d = %+v, want %+v", tc.name, i, got[i], tc.want[i])
				}
			}
		}
		if _, err := s.Usage(ctx, UsageFilter{From: day1}); fnmarket.ErrorCode(err) != fnmarket.EINVALID {
			t.Fatalf("usage with no consumer or functions: %v, want invalid", err)
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
