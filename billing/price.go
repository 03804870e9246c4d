package billing

import (
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
)

// VersionUsage is one consumer's usage of one function version in one hour
// of a month.
type VersionUsage struct {
	Version int
	// Calls are the chargeable calls (the meter's billable_calls).
	Calls     int64
	ComputeMs int64
	// Hour is the hour the calls fell in; the month's free calls and tiers go
	// to calls in hour order (see catalog.PriceMonth).
	Hour time.Time
	// Priced, when set, is what the gateway charged for these calls (usage
	// counted from migration 00009 on): taken as it is, never re-derived.
	Priced *catalog.StepPrice
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

// PriceFunctionMonth prices one consumer's month of one function: hourly
// usage of any of its versions, with pricing by version. It prices with
// catalog.PriceMonth (the one pricing rule; hours the gateway priced keep its
// price) and sums its steps per version,
// each version's line rounded once. The result is in ascending version order
// and omits versions with no usage.
func PriceFunctionMonth(pricing map[int]catalog.Pricing, usage []VersionUsage) ([]PricedUsage, error) {
	steps := make([]catalog.UsageStep, len(usage))
	for i, u := range usage {
		steps[i] = catalog.UsageStep{Hour: u.Hour, Version: u.Version, Calls: u.Calls, ComputeMs: u.ComputeMs, Priced: u.Priced}
	}
	priced, err := catalog.PriceMonth(pricing, steps)
	if err != nil {
		return nil, err
	}
	byVersion := map[int]*PricedUsage{}
	var versions []int
	for _, s := range priced {
		if s.Calls == 0 && s.ComputeMs == 0 {
			continue
		}
		p := byVersion[s.Version]
		if p == nil {
			p = &PricedUsage{Version: s.Version, Currency: pricing[s.Version].CurrencyCode()}
			byVersion[s.Version] = p
			versions = append(versions, s.Version)
		}
		p.Calls += s.Calls
		p.FreeCalls += s.FreeCalls
		p.BillableCalls += s.BillableCalls
		p.ComputeMs += s.ComputeMs
		p.Exact = p.Exact.Add(s.Cost)
	}
	slices.Sort(versions)
	out := make([]PricedUsage, 0, len(versions))
	for _, v := range versions {
		p := byVersion[v]
		p.Amount = RoundCents(p.Exact)
		out = append(out, *p)
	}
	return out, nil
}
