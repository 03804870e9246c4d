package api

import (
	"context"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/metering"
)

// UsageReport prices rolled-up usage for the portal's usage views.
//
// Cost per row: each consumer's calls of a function are priced in the order
// of the hours they fell in, from the start of the month, so the month's free
// calls cover the earliest hours and graduated tiers continue hour to hour.
// Rows show exact, unrounded amounts; invoices round once per line.
type UsageReport struct {
	usage   *metering.Store
	catalog *catalogstore.Store
	clock   fnmarket.Clock
}

var _ UsageReader = (*UsageReport)(nil)

// NewUsageReport returns the usage reader the API serves.
func NewUsageReport(usage *metering.Store, cat *catalogstore.Store, clock fnmarket.Clock) *UsageReport {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &UsageReport{usage: usage, catalog: cat, clock: clock}
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
	f := metering.UsageFilter{ConsumerID: q.ConsumerID, From: monthStart(q.From), To: q.To, Granularity: metering.GranularityHour, PerConsumer: true}
	if q.VendorID != "" {
		f.FunctionIDs = q.FunctionIDs
		if f.FunctionIDs == nil {
			f.FunctionIDs = []string{}
		}
	}
	periods, err := u.usage.Usage(ctx, f)
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
	type running struct{ calls int64 }
	type monthKey struct {
		consumer, function string
		month              time.Time
	}
	type outKey struct {
		function string
		version  int
		period   time.Time
	}
	run := map[monthKey]*running{}
	out := map[outKey]*UsageRow{}
	costs := map[outKey]decimal.Decimal{}
	for _, p := range periods { // oldest hour first
		fn := fns[p.FunctionID]
		pricing, ok := versionPricing(fn, p.Version)
		mk := monthKey{p.ConsumerID, p.FunctionID, monthStart(p.PeriodStart)}
		r := run[mk]
		if r == nil {
			r = &running{}
			run[mk] = r
		}
		cost := decimal.Zero
		if ok {
			free := pricing.FreeCalls(p.BillableCalls, r.calls)
			billableBefore := max(0, r.calls-pricing.FreeCallsPerMonth)
			cost = pricing.Cost(catalog.Usage{Calls: p.BillableCalls, ComputeMs: p.ComputeMs, FreeCalls: free, BillableBefore: billableBefore})
		}
		r.calls += p.BillableCalls
		if p.PeriodStart.Before(q.From.Truncate(time.Hour)) {
			continue
		}
		ok2 := outKey{p.FunctionID, p.Version, periodStart(p.PeriodStart, q.Granularity)}
		row := out[ok2]
		if row == nil {
			row = &UsageRow{Function: fn.VendorSlug + "/" + fn.Name, FunctionID: p.FunctionID, Version: p.Version,
				PeriodStart: rfc3339(ok2.period), Currency: pricing.Currency}
			out[ok2] = row
		}
		row.Calls += p.Calls
		row.Errors += p.Errors
		row.ComputeMs += p.ComputeMs
		costs[ok2] = costs[ok2].Add(cost)
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

func versionPricing(f catalog.Function, version int) (catalog.Pricing, bool) {
	for _, v := range f.Versions {
		if v.Version == version {
			return v.Pricing, true
		}
	}
	return catalog.Pricing{Currency: "USD"}, false
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
