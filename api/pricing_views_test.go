package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/metering"
)

// TestEveryViewPricesAlike is issues 10 and 11's property: for random call
// sequences (versions with different per-call prices, free tiers including
// none, graduated tiers, compute, refused calls, versions interleaved within
// hours, calls spread over the hours of two months and over two keys, some
// paid from prepaid credit), every view of money agrees exactly:
//
//  1. issued invoice lines (billing, rounded once per line), and the credit
//     line (the credit consumed, rounded once) with total = subtotal - credit,
//  2. the upcoming invoice, and the invoice later issued for that month,
//  3. consumers' usage rows, at hour and at day granularity and from the
//     middle of a month, summed per month and version,
//  4. vendor usage rows, summed over consumers, and vendor statements,
//  5. the gateway's per-call price (catalog.Pricing.CallCost) of each call
//     at its admission position, summed: the X-Cost each call answered,
//  6. each key's spend in the month (key lists' spend_this_month), summed
//     over the consumer's keys.
//
// The rows are written as the meter writes them: each hour's calls per key
// and version, with the free calls, exact cost and credit the gateway
// charged (migration 00009). Rows of hours before a round's cutoff are
// written as counted before 00009, without prices: for those the views
// take an hour's versions in ascending order (catalog.PriceMonth's
// tie-break), since the counters do not keep the order of calls, and view 5
// is summed in that order; every call from the cutoff on is compared in
// admission order. Rounds cut off before any call (everything priced), after
// every call (nothing priced) and in between.
func TestEveryViewPricesAlike(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			rounds := 16
			if b.DatabaseURL != "" {
				rounds = 4
			}
			for seed := range uint64(rounds) {
				t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) { pricingViewsRound(t, b, seed) })
			}
		})
	}
}

var (
	viewsJan = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	viewsFeb = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	viewsMar = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

// viewsCall is one admitted call, or a refused one (which is counted but not
// billed and takes no free call or tier slot).
type viewsCall struct {
	at      time.Time
	key     string
	version int
	ms      int64
	refused bool
	// What the gateway charged: set for admitted calls.
	free         bool
	cost, credit decimal.Decimal
}

// lineKey names what an invoice line prices.
type lineKey struct {
	consumer, function string
	month              time.Time
	version            int
}

func randomViewsPricing(r *rand.Rand, versions int) []catalog.Pricing {
	prices := []string{"0", "0.000001", "0.0000021", "0.0001", "0.001", "0.005", "0.0125", "0.05", "0.333333333333"}
	pick := func() decimal.Decimal { return decimal.RequireFromString(prices[r.IntN(len(prices))]) }
	out := make([]catalog.Pricing, versions)
	for i := range out {
		p := catalog.Pricing{Currency: "USD", PerCall: pick(), PerComputeMs: pick(), FreeCallsPerMonth: []int64{0, 0, 3, 10, 40}[r.IntN(5)]}
		if r.IntN(3) == 0 {
			p.PerCall = decimal.Zero
			lo := int64(1 + r.IntN(20))
			p.Tiers = []catalog.Tier{{UpTo: lo, PerCall: pick()}, {UpTo: lo + int64(1+r.IntN(40)), PerCall: pick()}, {UpTo: 0, PerCall: pick()}}
		}
		out[i] = p
	}
	return out
}

func pricingViewsRound(t *testing.T, b testenv.Backend, seed uint64) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 10))
	// Hours before cutoff were counted before migration 00009.
	cutoff := []time.Time{viewsJan, viewsMar, viewsJan.Add(time.Duration(r.IntN(40*24)) * time.Hour)}[seed%3]
	db := testenv.DB(t, b)
	now := viewsFeb.Add(9*24*time.Hour + 30*time.Minute)
	clock := fnmarket.NewTestClock(now)
	accts := accounts.NewStore(db, clock, bcrypt.MinCost)
	cat := catalogstore.NewStore(db, clock)
	biller, err := billing.New(billing.Config{DB: db, Catalog: cat, Accounts: accts, Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	usage := api.NewUsageReport(metering.NewStore(metering.StoreConfig{DB: db}), billing.NewUsageTable(db), cat, clock)

	n := 0
	signUp := func(name string) string {
		n++
		a, err := accts.SignUp(ctx, fmt.Sprintf("%s-%d@example.com", name, n), name, "correct horse battery")
		if err != nil {
			t.Fatal(err)
		}
		return a.ID
	}
	vendor, err := cat.CreateVendor(ctx, signUp("acme"), "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	pricing := map[string]map[int]catalog.Pricing{}
	var fnIDs []string
	for i := range 2 {
		ps := randomViewsPricing(r, 1+r.IntN(3))
		nv := func(p catalog.Pricing) catalog.NewVersion {
			return catalog.NewVersion{Backend: catalog.Backend{Type: "http", Spec: json.RawMessage(`{"url":"https://example.com/f"}`)}, Pricing: p, TimeoutMs: 1000}
		}
		fn, err := cat.CreateFunction(ctx, vendor, fmt.Sprintf("fn%d", i), "", nv(ps[0]))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps[1:] {
			if _, err := cat.AddVersion(ctx, vendor, fn.ID, nv(p)); err != nil {
				t.Fatal(err)
			}
		}
		pricing[fn.ID] = map[int]catalog.Pricing{}
		for v, p := range ps {
			pricing[fn.ID][v+1] = p
		}
		fnIDs = append(fnIDs, fn.ID)
	}
	consumers := []string{signUp("c0"), signUp("c1"), signUp("c2")}

	// Each consumer's calls of each function, in admission order, in January
	// and in February up to now.
	type cf struct{ consumer, function string }
	seqs := map[cf][]viewsCall{}
	for _, c := range consumers {
		for _, fn := range fnIDs {
			var calls []viewsCall
			for _, month := range []struct {
				start time.Time
				hours int
			}{{viewsJan, 31 * 24}, {viewsFeb, 9 * 24}} {
				at := month.start
				for range r.IntN(25) {
					at = at.Add(time.Duration(r.IntN(month.hours/12)) * time.Hour) // several runs may share an hour
					if !at.Before(month.start.Add(time.Duration(month.hours) * time.Hour)) {
						break
					}
					v := 1 + r.IntN(len(pricing[fn]))
					for range 1 + r.IntN(30) {
						at = at.Add(time.Duration(r.IntN(3)) * time.Second)
						calls = append(calls, viewsCall{at: at, key: []string{"key_a", "key_b"}[r.IntN(2)], version: v, ms: int64(r.IntN(400)), refused: r.IntN(8) == 0})
						if r.IntN(4) == 0 {
							v = 1 + r.IntN(len(pricing[fn])) // interleave versions within the hour
						}
					}
				}
			}
			seqs[cf{c, fn}] = calls
		}
	}

	// View 5, as the gateway prices: each admitted call priced with CallCost
	// at its position among the month's admitted calls, in admission order
	// (the hours before cutoff in the tie-break's order, as the views must
	// take them); a quarter of the calls paid from prepaid credit.
	exact := map[lineKey]decimal.Decimal{}
	free := map[lineKey]int64{}
	credit := map[lineKey]decimal.Decimal{} // per consumer and month (function and version empty)
	lines := map[lineKey]bool{}
	for _, c := range consumers {
		for _, fn := range fnIDs {
			calls := seqs[cf{c, fn}]
			order := make([]int, len(calls))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(i, j int) int {
				a, b := calls[i], calls[j]
				if c := a.at.Truncate(time.Hour).Compare(b.at.Truncate(time.Hour)); c != 0 || !a.at.Before(cutoff.Truncate(time.Hour)) {
					return c
				}
				return a.version - b.version
			})
			before := map[time.Time]int64{}
			for _, i := range order {
				call := &calls[i]
				month := catalog.MonthOf(call.at)
				lk := lineKey{c, fn, month, call.version}
				lines[lk] = true
				if call.refused {
					continue
				}
				p := pricing[fn][call.version]
				call.cost = p.CallCost(before[month], call.ms)
				call.free = before[month] < p.FreeCallsPerMonth
				if !call.at.Before(cutoff.Truncate(time.Hour)) && r.IntN(4) == 0 {
					call.credit = call.cost
				}
				exact[lk] = exact[lk].Add(call.cost)
				if call.free {
					free[lk]++
				}
				ck := lineKey{consumer: c, month: month}
				credit[ck] = credit[ck].Add(call.credit)
				before[month]++
			}
		}
	}

	// Roll the calls up as the meter does: per hour, key and version, with
	// what the gateway charged (no prices before cutoff).
	type hourRow struct {
		hour            int64
		consumer, key   string
		function        string
		version         int
		calls, billable int64
		computeMs, errs int64
		free            int64
		cost, credit    decimal.Decimal
	}
	rows := map[[5]string]*hourRow{}
	var rowOrder [][5]string
	for k, calls := range seqs {
		for _, c := range calls {
			rk := [5]string{fmt.Sprint(c.at.Truncate(time.Hour).Unix()), k.consumer, c.key, k.function, fmt.Sprint(c.version)}
			row := rows[rk]
			if row == nil {
				row = &hourRow{hour: c.at.Truncate(time.Hour).Unix(), consumer: k.consumer, key: c.key, function: k.function, version: c.version}
				rows[rk] = row
				rowOrder = append(rowOrder, rk)
			}
			row.calls++
			if c.refused {
				row.errs++
				continue
			}
			row.billable++
			row.computeMs += c.ms
			if c.free {
				row.free++
			}
			row.cost = row.cost.Add(c.cost)
			row.credit = row.credit.Add(c.credit)
		}
	}
	for _, rk := range rowOrder {
		row := rows[rk]
		var costPico any // NULL: counted before 00009
		if row.hour >= cutoff.Truncate(time.Hour).Unix() {
			costPico = row.cost.Shift(12).IntPart()
			if !decimal.New(costPico.(int64), -12).Equal(row.cost) {
				t.Fatalf("cost %s does not fit in 1e-12 units", row.cost)
			}
		} else {
			row.free = 0
		}
		err := db.WithContext(ctx).Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors,
			free_calls, cost_pico, credit_pico) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			row.hour, row.consumer, row.key, row.function, row.version, row.calls, row.billable, row.computeMs, row.errs,
			row.free, costPico, row.credit.Shift(12).IntPart()).Error
		if err != nil {
			t.Fatal(err)
		}
	}
	// A line exists for a version with admitted calls (or compute).
	for lk := range lines {
		if _, ok := exact[lk]; !ok {
			delete(lines, lk)
		}
	}

	// View 3: usage rows, summed per line, at both granularities; and rows
	// from the middle of a month carry the same cost for their hours.
	usageSums := func(q api.UsageQuery) map[lineKey]decimal.Decimal {
		t.Helper()
		got, err := usage.Usage(ctx, q)
		if err != nil {
			t.Fatalf("usage %+v: %v", q, err)
		}
		out := map[lineKey]decimal.Decimal{}
		for _, row := range got {
			start, err := time.Parse(time.RFC3339, row.PeriodStart)
			if err != nil {
				t.Fatal(err)
			}
			cost, err := decimal.NewFromString(row.Cost)
			if err != nil {
				t.Fatalf("row cost %q: %v", row.Cost, err)
			}
			lk := lineKey{q.ConsumerID, row.FunctionID, catalog.MonthOf(start), row.Version}
			out[lk] = out[lk].Add(cost)
		}
		return out
	}
	sameSums := func(what string, got, want map[lineKey]decimal.Decimal) {
		t.Helper()
		for lk, w := range want {
			if !got[lk].Equal(w) {
				t.Errorf("%s: %s v%d %s of %s costs %s, want %s", what, lk.function, lk.version, lk.month.Format("2006-01"), lk.consumer, got[lk], w)
			}
		}
		for lk, g := range got {
			if _, ok := want[lk]; !ok && !g.IsZero() {
				t.Errorf("%s: %s v%d %s of %s costs %s, want nothing", what, lk.function, lk.version, lk.month.Format("2006-01"), lk.consumer, g)
			}
		}
	}
	mid := viewsJan.Add(time.Duration(1+r.IntN(30*24)) * time.Hour)
	for _, c := range consumers {
		want := map[lineKey]decimal.Decimal{}
		for lk, e := range exact {
			if lk.consumer == c {
				want[lk] = e
			}
		}
		sameSums("hourly usage", usageSums(api.UsageQuery{ConsumerID: c, From: viewsJan, To: viewsMar, Granularity: "hour"}), want)
		sameSums("daily usage", usageSums(api.UsageQuery{ConsumerID: c, From: viewsJan, To: viewsMar, Granularity: "day"}), want)
		// From mid-January: the hours before mid are left out, the rest cost
		// what they cost in the whole month's rows.
		hourly, err := usage.Usage(ctx, api.UsageQuery{ConsumerID: c, From: viewsJan, To: viewsMar, Granularity: "hour"})
		if err != nil {
			t.Fatal(err)
		}
		wantLate := map[lineKey]decimal.Decimal{}
		for _, row := range hourly {
			start, _ := time.Parse(time.RFC3339, row.PeriodStart)
			if start.Before(mid) {
				continue
			}
			lk := lineKey{c, row.FunctionID, catalog.MonthOf(start), row.Version}
			wantLate[lk] = wantLate[lk].Add(decimal.RequireFromString(row.Cost))
		}
		sameSums("usage from "+mid.Format(time.RFC3339), usageSums(api.UsageQuery{ConsumerID: c, From: mid, To: viewsMar, Granularity: "hour"}), wantLate)
	}

	// View 6: spend per key, summed over keys, is the consumer's month.
	for _, c := range consumers {
		for _, month := range []time.Time{viewsJan, viewsFeb} {
			spends, err := usage.KeySpendThisMonth(ctx, c, month.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			got, want := decimal.Zero, decimal.Zero
			for k, m := range spends {
				for cur, d := range m {
					if cur != "USD" || (k != "key_a" && k != "key_b") {
						t.Errorf("key spend of %s: %s %s %s", c, k, cur, d)
					}
					got = got.Add(d)
				}
			}
			for lk, e := range exact {
				if lk.consumer == c && lk.month.Equal(month) {
					want = want.Add(e)
				}
			}
			if !got.Equal(want) {
				t.Errorf("keys of %s spent %s in %s, the month costs %s", c, got, month.Format("2006-01"), want)
			}
		}
	}

	// View 4: vendor usage, summed over consumers.
	vendorWant := map[lineKey]decimal.Decimal{}
	for lk, e := range exact {
		vk := lineKey{"", lk.function, lk.month, lk.version}
		vendorWant[vk] = vendorWant[vk].Add(e)
	}
	sameSums("vendor usage", usageSums(api.UsageQuery{VendorID: vendor.ID, FunctionIDs: fnIDs, From: viewsJan, To: viewsMar, Granularity: "day"}), vendorWant)

	// Views 1 and 2: January's invoices, February's preview, then
	// February's invoices.
	checkLines := func(what string, c string, month time.Time, inv billing.Invoice) decimal.Decimal {
		t.Helper()
		total := decimal.Zero
		seen := map[lineKey]bool{}
		wantCredit := credit[lineKey{consumer: c, month: month}].RoundBank(2)
		for _, l := range inv.Lines {
			if l.Kind == billing.LineCredit {
				if !l.PeriodStart.Equal(month) || !l.Amount.Equal(wantCredit.Neg()) || wantCredit.IsZero() {
					t.Errorf("%s: credit line %+v, want %s", what, l, wantCredit.Neg())
				}
				continue
			}
			lk := lineKey{c, l.FunctionID, month, l.Version}
			seen[lk] = true
			if l.Kind != billing.LineUsage || !l.PeriodStart.Equal(month) {
				t.Errorf("%s: unexpected line %+v", what, l)
				continue
			}
			if want := exact[lk].RoundBank(2); !l.Amount.Equal(want) {
				t.Errorf("%s: %s v%d amount %s, want %s (exactly %s)", what, l.Function, l.Version, l.Amount, want, exact[lk])
			}
			if l.FreeCalls != free[lk] || l.FreeCalls+l.BillableCalls != l.Calls {
				t.Errorf("%s: %s v%d free %d of %d calls, want %d free", what, l.Function, l.Version, l.FreeCalls, l.Calls, free[lk])
			}
			total = total.Add(l.Amount.Decimal)
		}
		for lk := range lines {
			if lk.consumer == c && lk.month.Equal(month) && !seen[lk] {
				t.Errorf("%s: no line for %s v%d", what, lk.function, lk.version)
			}
		}
		if !inv.Subtotal.Equal(total) || !inv.CreditApplied.Equal(wantCredit) || !inv.Total.Equal(total.Sub(wantCredit)) || inv.TotalCents != inv.Total.Cents() {
			t.Errorf("%s: subtotal %s, credit %s, total %s; lines sum to %s, credit consumed %s", what, inv.Subtotal, inv.CreditApplied, inv.Total, total, wantCredit)
		}
		return total
	}
	invoiceOf := func(c string, month time.Time) (billing.Invoice, bool) {
		t.Helper()
		invs, err := biller.Invoices(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, inv := range invs {
			if inv.PeriodStart.Equal(month) {
				return inv, true
			}
		}
		return billing.Invoice{}, false
	}
	gross := map[time.Time]decimal.Decimal{}
	if _, err := biller.BillPeriod(ctx, viewsJan, billing.Options{}); err != nil {
		t.Fatal(err)
	}
	previews := map[string]billing.Invoice{}
	for _, c := range consumers {
		if inv, ok := invoiceOf(c, viewsJan); ok {
			gross[viewsJan] = gross[viewsJan].Add(checkLines("january invoice", c, viewsJan, inv))
		}
		up, err := biller.Upcoming(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(up) != 1 {
			t.Fatalf("%d previews, want 1", len(up))
		}
		checkLines("february preview", c, viewsFeb, up[0])
		previews[c] = up[0]
	}
	clock.Set(viewsMar.Add(time.Hour))
	if _, err := biller.BillPeriod(ctx, viewsFeb, billing.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range consumers {
		inv, ok := invoiceOf(c, viewsFeb)
		if !ok {
			if len(previews[c].Lines) != 0 {
				t.Errorf("february preview of %s has lines, but no invoice was issued", c)
			}
			continue
		}
		gross[viewsFeb] = gross[viewsFeb].Add(checkLines("february invoice", c, viewsFeb, inv))
		if !inv.Total.Equal(previews[c].Total.Decimal) {
			t.Errorf("february invoice of %s totals %s, its preview %s", c, inv.Total, previews[c].Total)
		}
	}

	// Statements: a vendor's gross per month is its invoice lines' sum.
	sts, err := biller.Statements(ctx, vendor.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if !st.Gross.Equal(gross[st.PeriodStart]) {
			t.Errorf("statement %s: gross %s, invoice lines sum to %s", st.PeriodStart.Format("2006-01"), st.Gross, gross[st.PeriodStart])
		}
		delete(gross, st.PeriodStart)
	}
	for month, g := range gross {
		if !g.IsZero() {
			t.Errorf("no statement for %s, whose lines sum to %s", month.Format("2006-01"), g)
		}
	}
}
