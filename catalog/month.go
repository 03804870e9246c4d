package catalog

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// UsageStep is a consumer's usage of one function version in one hour.
type UsageStep struct {
	Hour    time.Time
	Version int
	// Calls are the calls that reached the function (the meter's
	// billable_calls); ComputeMs their compute.
	Calls, ComputeMs int64
	// Priced, when set, is what the gateway charged for these calls, each
	// priced with CallCost at its admission position (the sum of their
	// X-Cost): PriceMonth takes it as it is instead of re-deriving it.
	Priced *StepPrice
}

// StepPrice is what the gateway charged for a step's calls.
type StepPrice struct {
	FreeCalls int64
	Cost      decimal.Decimal
}

// PricedStep is a UsageStep priced as part of its month.
type PricedStep struct {
	UsageStep
	// CallsBefore counts the function's calls earlier in the month.
	CallsBefore int64
	// FreeCalls are the calls the free tier covers, BillableCalls the rest.
	FreeCalls, BillableCalls int64
	// Cost is exact and unrounded: billable calls through the version's
	// tiers, plus compute.
	Cost decimal.Decimal
}

// PriceMonth prices a consumer's month of one function: steps are its hourly
// usage of any versions (all in one UTC month), pricing maps versions to their
// pricing. Steps are taken in (Hour, Version) order, which is the order of the
// result; steps of the same hour and version may repeat (they are priced as
// consecutive calls).
//
// This is the pricing rule, in one place. A consumer's month of one function
// is priced call by call, in the order the calls were admitted, whatever
// version each call ran: the call at position n (n calls of the function
// already billed to that consumer this UTC month) is free when n <
// free_calls_per_month of the version it ran, and otherwise pays that
// version's per-call price at tier slot n - free_calls_per_month (graduated
// tiers count the same way); compute is always charged at the version's
// per_compute_ms. A call that is refused, or never reaches the function, has
// no position: it takes no free call and no tier slot.
//
// Pricing.CallCost is that rule for one call; PriceMonth applies it to a month
// of hourly usage. Every view of money derives from them: spend caps (the
// meter) price each call with CallCost at its admission position, as should
// any per-call cost the gateway reports, and invoice lines, the upcoming
// invoice, adjustments for late usage, consumers' and vendors' usage rows all
// sum PriceMonth's per-step costs, so a period's cost is the price of the
// month's usage through its end minus through its start, and periods add up to
// the invoice.
//
// The meter keeps usage per hour and version, not the order of calls within an
// hour, so PriceMonth takes the calls of one hour in ascending version order.
// When a consumer calls several versions of a function within one hour, that
// tie-break can differ from the admission order the spend cap priced them in;
// PriceMonth and summed CallCost agree exactly whenever
// each hour has calls of one version only, and always when the versions share
// their pricing.
func PriceMonth(pricing map[int]Pricing, steps []UsageStep) ([]PricedStep, error) {
	sorted := slices.Clone(steps)
	slices.SortStableFunc(sorted, func(a, b UsageStep) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Version, b.Version))
	})
	out := make([]PricedStep, 0, len(sorted))
	var month time.Time
	var callsBefore int64
	for i, s := range sorted {
		if s.Calls < 0 || s.ComputeMs < 0 {
			return nil, fmt.Errorf("price version %d: negative usage (%d calls, %d ms)", s.Version, s.Calls, s.ComputeMs)
		}
		p, ok := pricing[s.Version]
		if !ok {
			return nil, fmt.Errorf("price version %d: no pricing for this version", s.Version)
		}
		m := MonthOf(s.Hour)
		if i == 0 {
			month = m
		} else if !m.Equal(month) {
			return nil, fmt.Errorf("price month %s: usage of %s belongs to another month", month.Format("2006-01"), s.Hour.UTC().Format(time.RFC3339))
		}
		var free int64
		var cost decimal.Decimal
		if s.Priced != nil {
			free, cost = min(s.Priced.FreeCalls, s.Calls), s.Priced.Cost
		} else {
			free = min(max(p.FreeCallsPerMonth-callsBefore, 0), s.Calls)
			// The first billable call sits at position callsBefore+free,
			// which is at least FreeCallsPerMonth whenever there is one.
			cost = p.CallsCost(max(callsBefore-p.FreeCallsPerMonth, 0), s.Calls-free).Add(p.ComputeCost(s.ComputeMs))
		}
		billable := s.Calls - free
		out = append(out, PricedStep{UsageStep: s, CallsBefore: callsBefore, FreeCalls: free, BillableCalls: billable, Cost: cost})
		callsBefore += s.Calls
	}
	return out, nil
}

// MonthOf is the start of t's UTC calendar month, the period free calls and
// tiers count over.
func MonthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
