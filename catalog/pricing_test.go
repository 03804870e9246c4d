package catalog

import (
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestCallsCostTiers(t *testing.T) {
	t.Parallel()
	p := Pricing{Tiers: []Tier{{UpTo: 100, PerCall: d("0.01")}, {UpTo: 1000, PerCall: d("0.005")}, {UpTo: 0, PerCall: d("0.001")}}}
	cases := []struct {
		from, n int64
		want    string
	}{
		{0, 0, "0"},
		{0, 1, "0.01"},
		{0, 100, "1"},
		{0, 101, "1.005"},
		{99, 2, "0.015"},
		{100, 900, "4.5"},
		{0, 2000, "6.5"},
		{1500, 10, "0.01"},
	}
	for _, c := range cases {
		if got := p.CallsCost(c.from, c.n); !got.Equal(d(c.want)) {
			t.Errorf("CallsCost(%d, %d) = %s, want %s", c.from, c.n, got, c.want)
		}
	}
}

// TestCallCostSumsToMonthCost checks the gateway's per-call pricing and the
// month's pricing agree exactly, free tier and tiers included.
func TestCallCostSumsToMonthCost(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	pricings := []Pricing{
		{PerCall: d("0.0001"), PerComputeMs: d("0.0000021"), FreeCallsPerMonth: 100},
		{PerCall: d("0"), PerComputeMs: d("0.000000000001")},
		{PerComputeMs: d("0.00001"), FreeCallsPerMonth: 7, Tiers: []Tier{{UpTo: 50, PerCall: d("0.002")}, {UpTo: 0, PerCall: d("0.0015")}}},
	}
	for _, p := range pricings {
		sum := decimal.Zero
		var calls, ms int64
		for i := 0; i < 500; i++ {
			c := r.Int64N(3000) + 1
			sum = sum.Add(p.CallCost(calls, c))
			calls++
			ms += c
		}
		priced, err := PriceMonth(map[int]Pricing{1: p}, []UsageStep{{Version: 1, Calls: calls, ComputeMs: ms}})
		if err != nil {
			t.Fatal(err)
		}
		if month := priced[0].Cost; !sum.Equal(month) {
			t.Errorf("%+v: sum of calls %s != month %s", p, sum, month)
		}
	}
}

func TestParsePricing(t *testing.T) {
	t.Parallel()
	free := int64(100)
	neg := int64(-1)
	cases := []struct {
		name  string
		in    PricingInput
		field string
	}{
		{"ok", PricingInput{PerCall: "0.0001", PerComputeMs: "0.0000021", FreeCallsPerMonth: &free}, ""},
		{"tiny", PricingInput{PerCall: "0.000000000001", PerComputeMs: "0"}, ""},
		{"too precise", PricingInput{PerCall: "0.0000000000001", PerComputeMs: "0"}, "pricing.per_call"},
		{"negative", PricingInput{PerCall: "-1", PerComputeMs: "0"}, "pricing.per_call"},
		{"exponent", PricingInput{PerCall: "1e-4", PerComputeMs: "0"}, "pricing.per_call"},
		{"missing", PricingInput{PerCall: "1"}, "pricing.per_compute_ms"},
		{"bad currency", PricingInput{Currency: "dollars", PerCall: "1", PerComputeMs: "0"}, "pricing.currency"},
		{"not a currency", PricingInput{Currency: "BTC", PerCall: "1", PerComputeMs: "0"}, "pricing.currency"},
		{"zero-decimal currency billing cannot round", PricingInput{Currency: "JPY", PerCall: "1", PerComputeMs: "0"}, "pricing.currency"},
		{"negative free", PricingInput{PerCall: "1", PerComputeMs: "0", FreeCallsPerMonth: &neg}, "pricing.free_calls_per_month"},
		{"open tier not last", PricingInput{PerComputeMs: "0", Tiers: []TierInput{{UpTo: 0, PerCall: "1"}, {UpTo: 0, PerCall: "1"}}}, "pricing.tiers[0].up_to"},
		{"last tier bounded", PricingInput{PerComputeMs: "0", Tiers: []TierInput{{UpTo: 10, PerCall: "1"}}}, "pricing.tiers[0].up_to"},
	}
	for _, c := range cases {
		v := fnmarket.Validation{}
		p := c.in.Parse(v)
		if c.field == "" {
			if len(v) != 0 {
				t.Errorf("%s: unexpected problems %v", c.name, v)
			}
			if p.Currency != "USD" {
				t.Errorf("%s: currency %q, want USD by default", c.name, p.Currency)
			}
			continue
		}
		if _, ok := v[c.field]; !ok {
			t.Errorf("%s: problems %v do not name %s", c.name, v, c.field)
		}
	}
}

// TestSlotsFollowTheSchedule: every position's slot (free or which tier, and
// its per-call price) is what a plain step lookup in Schedule gives, and
// what CallsCost charges for that one billable call, for random pricings
// with free calls and graduated tiers.
func TestSlotsFollowTheSchedule(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 17))
	for round := range 200 {
		p := Pricing{PerCall: decimal.New(rng.Int64N(1000), -4), FreeCallsPerMonth: rng.Int64N(5)}
		if round%2 == 1 {
			lo := int64(0)
			for i := range rng.IntN(3) + 1 {
				lo += rng.Int64N(4) + 1
				p.Tiers = append(p.Tiers, Tier{UpTo: lo, PerCall: decimal.New(int64(100-i), -3)})
			}
			p.Tiers = append(p.Tiers, Tier{PerCall: d("0.0001")})
		}
		sched := p.Schedule()
		for pos := range int64(30) {
			// A step lookup that knows nothing of free calls or tiers.
			price := decimal.Zero
			for _, s := range sched {
				if pos < s.From {
					break
				}
				price = s.PerCall
			}
			sl := p.SlotAt(pos)
			want := decimal.Zero
			if pos >= p.FreeCallsPerMonth {
				want = p.CallsCost(pos-p.FreeCallsPerMonth, 1)
			}
			if !sl.PerCall.Equal(price) || !sl.PerCall.Equal(want) || sl.Free != (pos < p.FreeCallsPerMonth) ||
				sl.FreeLeft != max(p.FreeCallsPerMonth-pos, 0) {
				t.Fatalf("%+v position %d: slot %+v, schedule says %s, CallsCost %s", p, pos, sl, price, want)
			}
			if q := pos - p.FreeCallsPerMonth + 1; sl.Tier >= 0 && (q < sl.From || (sl.To != 0 && q > sl.To)) {
				t.Fatalf("%+v position %d: billable call %d outside its tier %d..%d", p, pos, q, sl.From, sl.To)
			}
		}
	}
}

// SlotAt runs on every call, up to three times (admission, X-Cost, the
// meter's free flag): it must not build the schedule to look one step up.
func TestSlotAtAllocatesNothing(t *testing.T) {
	p := Pricing{FreeCallsPerMonth: 3, Tiers: []Tier{{UpTo: 10, PerCall: d("0.01")}, {PerCall: d("0.001")}}}
	var sl Slot
	if n := testing.AllocsPerRun(100, func() { sl = p.SlotAt(20) }); n != 0 {
		t.Fatalf("SlotAt allocates %.0f times per call, want 0", n)
	}
	if sl.Tier != 1 || !sl.PerCall.Equal(d("0.001")) {
		t.Fatalf("slot %+v", sl)
	}
}
