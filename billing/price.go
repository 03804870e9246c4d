package billing

import (
	"fmt"
	"sort"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
)

// VersionUsage is one consumer's usage of one function version in one month.
type VersionUsage struct {
	Version int
	// Calls are the chargeable calls (the meter's billable_calls).
	Calls     int64
	ComputeMs int64
}

// PricedUsage is one version's usage priced for a month.
type PricedUsage struct {
	Version       int
	Currency      string
	Calls         int64
	FreeCalls     int64
	BillableCalls int64
	ComputeMs     int64
	// Exact is the unrounded price; Amount is Exact rounded half-even to cents.
	Exact  decimal.Decimal
	Amount decimal.Decimal
}

// PriceFunctionMonth prices one consumer's month of one function: usage of
// any of its versions (repeated versions are summed), with pricing by version.
// Versions are taken in ascending order; each takes free calls up to its own
// free_calls_per_month less the free calls earlier versions took, and its
// billable calls continue the graduated tiers where earlier versions left off.
// The result is in ascending version order and omits versions with no usage.
func PriceFunctionMonth(pricing map[int]catalog.Pricing, usage []VersionUsage) ([]PricedUsage, error) {
	sum := map[int]VersionUsage{}
	for _, u := range usage {
		if u.Calls < 0 || u.ComputeMs < 0 {
			return nil, fmt.Errorf("price version %d: negative usage (%d calls, %d ms)", u.Version, u.Calls, u.ComputeMs)
		}
		s := sum[u.Version]
		s.Version = u.Version
		s.Calls += u.Calls
		s.ComputeMs += u.ComputeMs
		sum[u.Version] = s
	}
	versions := make([]int, 0, len(sum))
	for v, s := range sum {
		if s.Calls == 0 && s.ComputeMs == 0 {
			continue
		}
		versions = append(versions, v)
	}
	sort.Ints(versions)
	out := make([]PricedUsage, 0, len(versions))
	var usedFree, billableBefore int64
	for _, v := range versions {
		p, ok := pricing[v]
		if !ok {
			return nil, fmt.Errorf("price version %d: no pricing for this version", v)
		}
		u := sum[v]
		free := p.FreeCalls(u.Calls, usedFree)
		exact := p.Cost(catalog.Usage{Calls: u.Calls, ComputeMs: u.ComputeMs, FreeCalls: free, BillableBefore: billableBefore})
		out = append(out, PricedUsage{
			Version: v, Currency: currencyOf(p), Calls: u.Calls, FreeCalls: free, BillableCalls: u.Calls - free,
			ComputeMs: u.ComputeMs, Exact: exact, Amount: RoundCents(exact),
		})
		usedFree += free
		billableBefore += u.Calls - free
	}
	return out, nil
}

// currencyOf is the pricing's currency, USD when unset.
func currencyOf(p catalog.Pricing) string {
	if p.Currency == "" {
		return "USD"
	}
	return p.Currency
}
