package billing

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// hourVersion is one hour's usage of one version.
type hourVersion struct {
	hour    time.Time
	version int
}

// oracleMonth prices one function's month call by call with
// catalog.Pricing.CallCost, as the gateway prices calls, in the order the
// meter keeps: hour by hour, versions of one hour in ascending order (the
// documented tie-break). Each version is rounded once.
func oracleMonth(pricing map[int]catalog.Pricing, calls, ms map[hourVersion]int64) decimal.Decimal {
	keys := make([]hourVersion, 0, len(calls))
	for k := range calls {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if !keys[i].hour.Equal(keys[j].hour) {
			return keys[i].hour.Before(keys[j].hour)
		}
		return keys[i].version < keys[j].version
	})
	exact := map[int]decimal.Decimal{}
	var before int64
	for _, k := range keys {
		p := pricing[k.version]
		exact[k.version] = exact[k.version].Add(p.ComputeCost(ms[k]))
		for range calls[k] {
			exact[k.version] = exact[k.version].Add(p.CallCost(before, 0))
			before++
		}
	}
	total := decimal.Zero
	for _, e := range exact {
		total = total.Add(e.RoundBank(2))
	}
	return total
}

func randomPricing(r *rand.Rand) catalog.Pricing {
	prices := []string{"0", "0.0000021", "0.000001", "0.0001", "0.001", "0.005", "0.0125", "0.05", "0.333333333333"}
	pick := func() decimal.Decimal { return dec(prices[r.Intn(len(prices))]) }
	p := catalog.Pricing{Currency: "USD", PerCall: pick(), PerComputeMs: pick(), FreeCallsPerMonth: int64(r.Intn(4) * 50)}
	if r.Intn(3) == 0 {
		p.PerCall = decimal.Zero
		p.Tiers = []catalog.Tier{{UpTo: int64(50 + r.Intn(200)), PerCall: pick()}, {UpTo: 0, PerCall: pick()}}
	}
	return p
}

// TestPropertyInvoicesRecompute bills random usage (with late usage after the
// first month) and checks that every invoice's total is the sum of its
// rounded lines, and that what was billed for each month equals that month's
// usage re-priced independently from the usage that was recorded.
func TestPropertyInvoicesRecompute(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rounds := 3
		if be.DatabaseURL != "" {
			rounds = 2
		}
		for seed := int64(1); seed <= int64(rounds); seed++ {
			t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { propertyRound(t, be, seed) })
		}
	})
}

func propertyRound(t *testing.T, be testenv.Backend, seed int64) {
	r := rand.New(rand.NewSource(seed))
	f := newFixture(t, be, nil)
	v := f.vendor("acme")
	type fnInfo struct {
		id      string
		pricing map[int]catalog.Pricing
	}
	var fns []fnInfo
	for i := range 4 {
		n := 1 + r.Intn(3)
		ps := make([]catalog.Pricing, n)
		pm := map[int]catalog.Pricing{}
		for j := range ps {
			ps[j] = randomPricing(r)
			pm[j+1] = ps[j]
		}
		fns = append(fns, fnInfo{f.function(v, fmt.Sprintf("fn%d", i), ps...), pm})
	}
	consumers := make([]string, 6)
	for i := range consumers {
		consumers[i] = f.consumer(fmt.Sprintf("c%d", i))
	}
	// ledger[month][consumer][function] = calls and ms by version, as recorded.
	type usageByVersion struct{ calls, ms map[hourVersion]int64 }
	ledger := map[time.Time]map[string]map[int]*usageByVersion{}
	record := func(month time.Time, n int) {
		for range n {
			c := consumers[r.Intn(len(consumers))]
			fi := r.Intn(len(fns))
			fn := fns[fi]
			ver := 1 + r.Intn(len(fn.pricing))
			calls, ms := int64(r.Intn(400)), int64(r.Intn(5000))
			hour := month.Add(time.Duration(r.Intn(28*24)) * time.Hour)
			f.usage(hour, c, fn.id, ver, calls, ms)
			if ledger[month] == nil {
				ledger[month] = map[string]map[int]*usageByVersion{}
			}
			if ledger[month][c] == nil {
				ledger[month][c] = map[int]*usageByVersion{}
			}
			u := ledger[month][c][fi]
			if u == nil {
				u = &usageByVersion{map[hourVersion]int64{}, map[hourVersion]int64{}}
				ledger[month][c][fi] = u
			}
			u.calls[hourVersion{hour, ver}] += calls
			u.ms[hourVersion{hour, ver}] += ms
		}
	}
	expected := func(month time.Time, c string) decimal.Decimal {
		total := decimal.Zero
		for fi, u := range ledger[month][c] {
			total = total.Add(oracleMonth(fns[fi].pricing, u.calls, u.ms))
		}
		return total
	}

	record(jan, 60)
	f.clock.Set(feb.Add(time.Hour))
	f.bill(jan, Options{})
	record(jan, 15) // late
	record(feb, 40)
	f.clock.Set(mar.Add(time.Hour))
	f.bill(feb, Options{})

	for _, c := range consumers {
		billed := map[time.Time]decimal.Decimal{}
		for _, inv := range f.invoices(c) {
			sum := decimal.Zero
			for _, l := range inv.Lines {
				if !l.Amount.Equal(l.Amount.RoundBank(2)) {
					t.Errorf("line amount %s is not in cents", l.Amount)
				}
				if l.FreeCalls+l.BillableCalls != l.Calls {
					t.Errorf("line %+v: free + billable != calls", l)
				}
				sum = sum.Add(l.Amount.Decimal)
				billed[l.PeriodStart] = billed[l.PeriodStart].Add(l.Amount.Decimal)
			}
			if !inv.Total.Equal(sum) || !inv.Subtotal.Equal(sum) || inv.TotalCents != sum.Shift(2).IntPart() {
				t.Errorf("invoice %s: total %s (%d cents), lines sum to %s", inv.ID, inv.Total, inv.TotalCents, sum)
			}
		}
		for _, month := range []time.Time{jan, feb} {
			if want := expected(month, c); !billed[month].Equal(want) {
				t.Errorf("consumer %s %s: billed %s in all, usage re-priced is %s", c, month.Format("2006-01"), billed[month], want)
			}
		}
	}
	// Re-billing either month changes no invoice.
	before := map[string][]Invoice{}
	for _, c := range consumers {
		before[c] = f.invoices(c)
	}
	f.bill(jan, Options{})
	f.bill(feb, Options{})
	for _, c := range consumers {
		after := f.invoices(c)
		if len(after) != len(before[c]) {
			t.Fatalf("re-billing changed %s's invoices", c)
		}
		for i := range after {
			if after[i].ID != before[c][i].ID || !after[i].Total.Equal(before[c][i].Total.Decimal) || len(after[i].Lines) != len(before[c][i].Lines) {
				t.Errorf("re-billing changed %s's invoice %s", c, after[i].ID)
			}
		}
	}
}
