package api

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/metering"
)

// UsageReport prices rolled-up usage for the portal's usage views.
//
// Cost per row: each consumer's month of a function is priced with
// catalog.PriceMonth, the rule invoices use, and a row sums the exact costs of
// the hours in its period; so rows of a month add up to the invoice's lines
// before rounding. Hours the gateway priced (migration 00009 on) cost what it
// charged, the sum of their calls' X-Cost; older hours are priced by the rule.
// Rows show exact, unrounded amounts; invoices round once per line.
type UsageReport struct {
	usage   MeteringStore
	hours   UsageHours
	catalog FunctionLookup
	clock   fnmarket.Clock
}

var _ UsageReader = (*UsageReport)(nil)

// NewUsageReport returns the usage reader the API serves: usage rows from
// hours (a *billing.UsageTable, the reader invoices use), latency from usage.
func NewUsageReport(usage MeteringStore, hours UsageHours, cat FunctionLookup, clock fnmarket.Clock) *UsageReport {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &UsageReport{usage: usage, hours: hours, catalog: cat, clock: clock}
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func periodStart(t time.Time, granularity string) time.Time {
	if granularity == "day" {
		return t.UTC().Truncate(24 * time.Hour)
	}
	return t.UTC().Truncate(time.Hour)
}

// Usage answers a consumer's or a vendor's usage rows.
func (u *UsageReport) Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error) {
	f := billing.UsageFilter{ConsumerID: q.ConsumerID, From: monthStart(q.From), To: q.To}
	if q.VendorID != "" {
		f.FunctionIDs = q.FunctionIDs
		if f.FunctionIDs == nil {
			f.FunctionIDs = []string{}
		}
	}
	periods, err := u.hours.Hours(ctx, f)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, p := range periods {
		ids[p.FunctionID] = true
	}
	idList := make([]string, 0, len(ids))
	for id := range ids {
		idList = append(idList, id)
	}
	fns, err := u.catalog.FunctionsByID(ctx, idList)
	if err != nil {
		return nil, err
	}
	// Each consumer's month of a function is priced as a whole (from the
	// start of the month, so free calls and tiers are counted right); a row's
	// cost is the sum of the priced hours that fall in its period.
	type monthKey struct {
		consumer, function string
		month              time.Time
	}
	type outKey struct {
		function string
		version  int
		period   time.Time
	}
	months := map[monthKey][]catalog.UsageStep{}
	var order []monthKey
	for _, p := range periods {
		mk := monthKey{p.ConsumerID, p.FunctionID, monthStart(p.Hour)}
		if months[mk] == nil {
			order = append(order, mk)
		}
		months[mk] = append(months[mk], p.Step())
	}
	costs := map[outKey]decimal.Decimal{}
	for _, mk := range order {
		fn, ok := fns[mk.function]
		if !ok {
			return nil, fmt.Errorf("usage names function %s, which the catalog does not have", mk.function)
		}
		priced, err := catalog.PriceMonth(versionPricing(fn), months[mk])
		if err != nil {
			return nil, fmt.Errorf("price usage of %s/%s by %s: %w", fn.VendorSlug, fn.Name, mk.consumer, err)
		}
		for _, s := range priced {
			if s.Hour.Before(q.From.Truncate(time.Hour)) {
				continue
			}
			k := outKey{mk.function, s.Version, periodStart(s.Hour, q.Granularity)}
			costs[k] = costs[k].Add(s.Cost)
		}
	}
	out := map[outKey]*UsageRow{}
	for _, p := range periods {
		if p.Hour.Before(q.From.Truncate(time.Hour)) {
			continue
		}
		fn := fns[p.FunctionID]
		k := outKey{p.FunctionID, p.Version, periodStart(p.Hour, q.Granularity)}
		row := out[k]
		if row == nil {
			row = &UsageRow{Function: fn.VendorSlug + "/" + fn.Name, FunctionID: p.FunctionID, Version: p.Version,
				PeriodStart: rfc3339(k.period), Currency: versionPricing(fn)[p.Version].CurrencyCode()}
			out[k] = row
		}
		row.Calls += p.Calls
		row.Errors += p.Errors
		row.ComputeMs += p.ComputeMs
	}
	rows := make([]UsageRow, 0, len(out))
	for k, r := range out {
		r.Cost = costs[k].String()
		rows = append(rows, *r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.PeriodStart != b.PeriodStart {
			return a.PeriodStart < b.PeriodStart
		}
		if a.Function != b.Function {
			return a.Function < b.Function
		}
		return a.Version < b.Version
	})
	return rows, nil
}

// versionPricing maps f's versions to their pricing.
func versionPricing(f catalog.Function) map[int]catalog.Pricing {
	out := make(map[int]catalog.Pricing, len(f.Versions))
	for _, v := range f.Versions {
		out[v.Version] = v.Pricing
	}
	return out
}

// Latency answers p50/p99 compute-ms of a function per period, from its
// coarse histogram: each percentile is the upper bound of the bucket it
// falls in (the overflow bucket reports the last bound).
func (u *UsageReport) Latency(ctx context.Context, functionID string, from, to time.Time, granularity string) ([]LatencyPoint, error) {
	hours, err := u.usage.Latency(ctx, functionID, from.Truncate(time.Hour), to)
	if err != nil {
		return nil, err
	}
	type acc struct{ hist []int64 }
	byPeriod := map[time.Time]*acc{}
	var order []time.Time
	for _, h := range hours {
		p := periodStart(h.HourStart, granularity)
		a := byPeriod[p]
		if a == nil {
			a = &acc{hist: make([]int64, len(h.Histogram))}
			byPeriod[p] = a
			order = append(order, p)
		}
		for i, n := range h.Histogram {
			if i < len(a.hist) {
				a.hist[i] += n
			}
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i].Before(order[j]) })
	out := make([]LatencyPoint, 0, len(order))
	for _, p := range order {
		h := byPeriod[p].hist
		var total int64
		for _, n := range h {
			total += n
		}
		out = append(out, LatencyPoint{PeriodStart: rfc3339(p), Calls: total, P50Ms: percentile(h, total, 50), P99Ms: percentile(h, total, 99)})
	}
	return out, nil
}

func percentile(hist []int64, total int64, pct int64) int64 {
	if total == 0 {
		return 0
	}
	need := (total*pct + 99) / 100
	var seen int64
	for i, n := range hist {
		seen += n
		if seen >= need {
			if i < len(metering.HistogramBounds) {
				return metering.HistogramBounds[i]
			}
			break
		}
	}
	return metering.HistogramBounds[len(metering.HistogramBounds)-1]
}
