package catalog

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

var jan = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestPriceMonthIssueExample is issue 10's measured case: v1 with 100 free
// calls, v2 with none, both 0.01 a call; 50 calls of v2, then 100 of v1. The
// free calls go to calls in the order they were admitted, so v2's 50 calls
// pay (0.50), v1's first 50 are free and its last 50 pay (0.50): 1.00, what
// the usage view and the spend cap count. Versions taken in ascending order
// (the old invoice rule) gave v1 all its 100 calls free: 0.50.
func TestPriceMonthIssueExample(t *testing.T) {
	t.Parallel()
	pricing := map[int]Pricing{
		1: {Currency: "USD", PerCall: d("0.01"), FreeCallsPerMonth: 100},
		2: {Currency: "USD", PerCall: d("0.01")},
	}
	got, err := PriceMonth(pricing, []UsageStep{{Hour: jan.Add(2 * time.Hour), Version: 1, Calls: 100}, {Hour: jan.Add(time.Hour), Version: 2, Calls: 50}})
	if err != nil {
		t.Fatal(err)
	}
	want := []PricedStep{
		{UsageStep: UsageStep{Hour: jan.Add(time.Hour), Version: 2, Calls: 50}, CallsBefore: 0, FreeCalls: 0, BillableCalls: 50, Cost: d("0.5")},
		{UsageStep: UsageStep{Hour: jan.Add(2 * time.Hour), Version: 1, Calls: 100}, CallsBefore: 50, FreeCalls: 50, BillableCalls: 50, Cost: d("0.5")},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d steps, want %d", len(got), len(want))
	}
	total := decimal.Zero
	for i := range want {
		g, w := got[i], want[i]
		if g.UsageStep != w.UsageStep || g.CallsBefore != w.CallsBefore || g.FreeCalls != w.FreeCalls || g.BillableCalls != w.BillableCalls || !g.Cost.Equal(w.Cost) {
			t.Errorf("step %d = %+v, want %+v", i, g, w)
		}
		total = total.Add(g.Cost)
	}
	if !total.Equal(d("1")) {
		t.Errorf("month costs %s, want 1.00", total)
	}
}

func TestPriceMonthRejects(t *testing.T) {
	t.Parallel()
	p := map[int]Pricing{1: {PerCall: d("1")}}
	for name, steps := range map[string][]UsageStep{
		"unknown version": {{Hour: jan, Version: 2, Calls: 1}},
		"negative calls":  {{Hour: jan, Version: 1, Calls: -1}},
		"negative ms":     {{Hour: jan, Version: 1, ComputeMs: -1}},
		"two months":      {{Hour: jan, Version: 1, Calls: 1}, {Hour: jan.AddDate(0, 1, 0), Version: 1, Calls: 1}},
	} {
		if _, err := PriceMonth(p, steps); err == nil {
			t.Errorf("%s: priced, want an error", name)
		}
	}
}

// randomMonthPricing gives versions 1..n different prices, free tiers
// (0 included) and, sometimes, graduated tiers.
func randomMonthPricing(r *rand.Rand, n int) map[int]Pricing {
	prices := []string{"0", "0.000001", "0.0001", "0.001", "0.005", "0.0125", "0.05", "0.333333333333"}
	pick := func() decimal.Decimal { return d(prices[r.IntN(len(prices))]) }
	out := map[int]Pricing{}
	for v := 1; v <= n; v++ {
		p := Pricing{Currency: "USD", PerCall: pick(), PerComputeMs: pick(), FreeCallsPerMonth: int64(r.IntN(4) * 5)}
		if r.IntN(3) == 0 {
			p.PerCall = decimal.Zero
			lo := int64(1 + r.IntN(10))
			p.Tiers = []Tier{{UpTo: lo, PerCall: pick()}, {UpTo: lo + int64(1+r.IntN(20)), PerCall: pick()}, {UpTo: 0, PerCall: pick()}}
		}
		out[v] = p
	}
	return out
}

// TestPriceMonthIsCallCostInOrder checks that PriceMonth and CallCost are one
// rule: random calls of several versions, priced one call per step, cost
// exactly what CallCost charges each call at its admission position, step by
// step; and grouping consecutive calls of one version into a step changes
// nothing (which is why hourly counters suffice when an hour has one version).
func TestPriceMonthIsCallCostInOrder(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(10, 10))
	for round := range 300 {
		pricing := randomMonthPricing(r, 1+r.IntN(4))
		type call struct {
			version int
			ms      int64
		}
		var calls []call
		for range r.IntN(120) {
			calls = append(calls, call{1 + r.IntN(len(pricing)), r.Int64N(50)})
		}
		// One call per hour: steps in admission order.
		var single []UsageStep
		for i, c := range calls {
			single = append(single, UsageStep{Hour: jan.Add(time.Duration(i) * time.Minute), Version: c.version, Calls: 1, ComputeMs: c.ms})
		}
		priced, err := PriceMonth(pricing, single)
		if err != nil {
			t.Fatal(err)
		}
		want := decimal.Zero
		for i, c := range calls {
			one := pricing[c.version].CallCost(int64(i), c.ms)
			if !priced[i].Cost.Equal(one) {
				t.Fatalf("round %d call %d (v%d): PriceMonth %s, CallCost %s", round, i, c.version, priced[i].Cost, one)
			}
			want = want.Add(one)
		}
		// Runs of one version grouped into one step each.
		var grouped []UsageStep
		for i, c := range calls {
			if n := len(grouped); n > 0 && grouped[n-1].Version == c.version && r.IntN(4) != 0 {
				grouped[n-1].Calls++
				grouped[n-1].ComputeMs += c.ms
				continue
			}
			grouped = append(grouped, UsageStep{Hour: jan.Add(time.Duration(i) * time.Minute), Version: c.version, Calls: 1, ComputeMs: c.ms})
		}
		pg, err := PriceMonth(pricing, grouped)
		if err != nil {
			t.Fatal(err)
		}
		got := decimal.Zero
		for _, s := range pg {
			if s.FreeCalls+s.BillableCalls != s.Calls {
				t.Fatalf("round %d: step %+v: free + billable != calls", round, s)
			}
			got = got.Add(s.Cost)
		}
		if !got.Equal(want) {
			t.Fatalf("round %d: grouped steps cost %s, calls one by one %s", round, got, want)
		}
	}
}
