package billing

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// gatewayCall is one admitted call as the gateway prices it.
type gatewayCall struct {
	version int
	ms      int64
	key     string
	// credit is the part of the call's cost paid from prepaid credit.
	credit decimal.Decimal
}

// admit prices calls in admission order with catalog.Pricing.CallCost at
// their positions, from callsBefore on, and writes them to usage_hourly as
// the meter does (one row per key and version of the hour, with free_calls,
// cost_pico and credit_pico). It returns the exact cost per version.
func (f *fixture) admit(hour time.Time, consumer, fn string, pricing map[int]catalog.Pricing, callsBefore int64, calls []gatewayCall) map[int]decimal.Decimal {
	f.t.Helper()
	type rowKey struct {
		key     string
		version int
	}
	type row struct {
		calls, ms, free int64
		cost, credit    decimal.Decimal
	}
	rows := map[rowKey]*row{}
	var order []rowKey
	costs := map[int]decimal.Decimal{}
	for i, c := range calls {
		p := pricing[c.version]
		cost := p.CallCost(callsBefore+int64(i), c.ms)
		k := rowKey{c.key, c.version}
		r := rows[k]
		if r == nil {
			r = &row{}
			rows[k] = r
			order = append(order, k)
		}
		r.calls++
		r.ms += c.ms
		if callsBefore+int64(i) < p.FreeCallsPerMonth {
			r.free++
		}
		r.cost = r.cost.Add(cost)
		r.credit = r.credit.Add(c.credit)
		costs[c.version] = costs[c.version].Add(cost)
	}
	for _, k := range order {
		r := rows[k]
		err := f.db.WithContext(f.ctx).Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors,
			free_calls, cost_pico, credit_pico) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`,
			hour.UTC().Truncate(time.Hour).Unix(), consumer, k.key, fn, k.version, r.calls, r.calls, r.ms, r.free,
			r.cost.Shift(12).IntPart(), r.credit.Shift(12).IntPart()).Error
		if err != nil {
			f.t.Fatalf("add priced usage: %v", err)
		}
	}
	return costs
}

// lineOf returns the invoice's line of kind for version (credit lines have
// version 0), failing when there is none.
func lineOf(t *testing.T, inv Invoice, kind string, version int, period time.Time) InvoiceLine {
	t.Helper()
	for _, l := range inv.Lines {
		if l.Kind == kind && l.Version == version && l.PeriodStart.Equal(period) {
			return l
		}
	}
	t.Fatalf("invoice %s has no %s line for v%d of %s: %+v", inv.ID, kind, version, period.Format("2006-01"), inv.Lines)
	return InvoiceLine{}
}

// TestPricedUsageBillsWhatTheGatewayCharged: when a consumer calls two
// versions of a function with different prices and free tiers within one
// hour, the invoice bills each version the sum of the costs the gateway
// recorded for its calls, in the order they were admitted, not the
// (hour, version) tie-break's; rows counted before migration 00009 are still
// priced by the rule, and positions count across both.
func TestPricedUsageBillsWhatTheGatewayCharged(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		v := f.vendor("acme")
		pricing := map[int]catalog.Pricing{1: usd("0.01", "0.00001", 0), 2: usd("0.05", "0", 3)}
		fn := f.function(v, "scan", pricing[1], pricing[2])
		alice := f.consumer("alice")

		// Hour 0, before 00009: one call of v1, priced by the rule (0.01).
		f.usage(jan, alice, fn, 1, 1, 0)
		// Hour 5: v2, v2, v1, v1, v2 in that order, over two keys. The
		// gateway gives positions 1 and 2 free calls of v2, charges v1 at
		// 0.01 (plus compute) and the last v2 at 0.05. The tie-break (v1
		// first) would put v2's calls at positions 3..5, past its free tier:
		// 0.15 for v2.
		calls := []gatewayCall{{2, 0, "k1", decimal.Zero}, {2, 0, "k2", decimal.Zero}, {1, 100, "k1", decimal.Zero}, {1, 300, "k2", decimal.Zero}, {2, 0, "k1", decimal.Zero}}
		costs := f.admit(jan.Add(5*time.Hour), alice, fn, pricing, 1, calls)
		if want := dec("0.024"); !costs[1].Equal(want) {
			t.Fatalf("the gateway priced v1 at %s, want %s", costs[1], want)
		}
		if want := dec("0.05"); !costs[2].Equal(want) {
			t.Fatalf("the gateway priced v2 at %s, want %s", costs[2], want)
		}
		// The rule over the same hourly usage, for contrast.
		rule, err := PriceFunctionMonth(pricing, []VersionUsage{{Version: 1, Calls: 1, Hour: jan}, {Version: 1, Calls: 2, ComputeMs: 400, Hour: jan.Add(5 * time.Hour)},
			{Version: 2, Calls: 3, Hour: jan.Add(5 * time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		if rule[1].Exact.Equal(costs[2]) {
			t.Fatalf("the test does not tell the gateway's order from the tie-break's: both price v2 at %s", costs[2])
		}

		f.clock.Set(jan.Add(10 * 24 * time.Hour))
		up, err := f.biller.Upcoming(f.ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Set(feb.Add(time.Hour))
		f.bill(jan, Options{})
		inv := f.only(alice, jan)
		for _, got := range []Invoice{up[0], inv} {
			l1, l2 := lineOf(t, got, LineUsage, 1, jan), lineOf(t, got, LineUsage, 2, jan)
			// v1: 0.01 by the rule for hour 0, plus the gateway's 0.024.
			if l1.Calls != 3 || l1.FreeCalls != 0 || l1.ComputeMs != 400 || l1.Amount.String() != "0.03" {
				t.Errorf("%s v1 line = %+v, want 3 calls, 0 free, 0.03 (0.034 exactly)", got.Status, l1)
			}
			if l2.Calls != 3 || l2.FreeCalls != 2 || l2.Amount.String() != "0.05" {
				t.Errorf("%s v2 line = %+v, want 3 calls, 2 free, 0.05", got.Status, l2)
			}
			if got.Total.String() != "0.08" || got.Subtotal.String() != "0.08" || !got.CreditApplied.IsZero() {
				t.Errorf("%s totals %s/%s credit %s, want 0.08 and no credit", got.Status, got.Subtotal, got.Total, got.CreditApplied)
			}
		}

		// The exact amounts, step by step: priced steps are summed as given.
		hours, err := NewUsageTable(f.db).Hours(f.ctx, UsageFilter{From: jan, To: feb, ConsumerID: alice})
		if err != nil {
			t.Fatal(err)
		}
		var usage []VersionUsage
		for _, h := range hours {
			s := h.Step()
			usage = append(usage, VersionUsage{Version: s.Version, Calls: s.Calls, ComputeMs: s.ComputeMs, Hour: s.Hour, Priced: s.Priced})
		}
		if len(hours) != 3 || hours[0].Priced || !hours[1].Priced || !hours[2].Priced || hours[1].BillableCalls != 2 || hours[2].BillableCalls != 3 {
			t.Fatalf("usage hours (summed over keys) = %+v", hours)
		}
		exact, err := PriceFunctionMonth(pricing, usage)
		if err != nil {
			t.Fatal(err)
		}
		if want := dec("0.01").Add(costs[1]); !exact[0].Exact.Equal(want) {
			t.Errorf("v1 exactly %s, want %s", exact[0].Exact, want)
		}
		if !exact[1].Exact.Equal(costs[2]) {
			t.Errorf("v2 exactly %s, want the gateway's %s", exact[1].Exact, costs[2])
		}
	})
}

// TestCreditAppliedLine: prepaid credit the month's calls consumed is its own
// negative line, rounded once; the total is the subtotal less it; vendors'
// gross is the whole subtotal; credit consumed by late usage of a closed
// month is applied on the next invoice.
func TestCreditAppliedLine(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		v := f.vendor("acme")
		pricing := map[int]catalog.Pricing{1: usd("0.125", "0", 0)}
		fn := f.function(v, "scan", pricing[1])
		alice := f.consumer("alice")

		// 40 calls at 0.125 = 5.00; credit paid 0.0625 of each of the first
		// 20 (1.25) and the whole of 4 more (0.50): 1.75 in all. Spread over
		// keys and hours.
		var calls []gatewayCall
		for i := range 40 {
			c := gatewayCall{version: 1, key: fmt.Sprintf("k%d", i%2)}
			switch {
			case i < 20:
				c.credit = dec("0.0625")
			case i < 24:
				c.credit = dec("0.125")
			}
			calls = append(calls, c)
		}
		f.admit(jan.Add(time.Hour), alice, fn, pricing, 0, calls[:25])
		f.admit(jan.Add(9*time.Hour), alice, fn, pricing, 25, calls[25:])

		check := func(inv Invoice, subtotal, credit, total string) {
			t.Helper()
			if inv.Subtotal.String() != subtotal || inv.CreditApplied.String() != credit || inv.Total.String() != total ||
				inv.TotalCents != inv.Total.Cents() {
				t.Errorf("%s invoice: subtotal %s, credit %s, total %s (%d cents); want %s, %s, %s", inv.Status, inv.Subtotal, inv.CreditApplied,
					inv.Total, inv.TotalCents, subtotal, credit, total)
			}
		}
		f.clock.Set(jan.Add(2 * 24 * time.Hour))
		up, err := f.biller.Upcoming(f.ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		check(up[0], "5.00", "1.75", "3.25")
		if l := lineOf(t, up[0], LineCredit, 0, jan); l.Amount.String() != "-1.75" {
			t.Errorf("preview credit line = %+v", l)
		}

		f.clock.Set(feb.Add(time.Hour))
		f.bill(jan, Options{})
		inv := f.only(alice, jan)
		check(inv, "5.00", "1.75", "3.25")
		if l := lineOf(t, inv, LineCredit, 0, jan); l.Amount.String() != "-1.75" || l.Function != "prepaid credit applied" {
			t.Errorf("credit line = %+v", l)
		}
		sts, err := f.biller.Statements(f.ctx, v.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(sts) != 1 || sts[0].Gross.String() != "5.00" || sts[0].Net.String() != "4.00" {
			t.Errorf("statements = %+v, want gross 5.00 (credit is money collected)", sts)
		}

		// Late January usage, half of it paid by credit (0.125 + 0.0025 of
		// rounding, shown once per month): February's invoice charges it as
		// an adjustment and applies its credit as a January credit line.
		f.admit(jan.Add(20*24*time.Hour), alice, fn, pricing, 40, []gatewayCall{{1, 0, "k1", dec("0.125")}, {1, 0, "k1", dec("0.0025")}})
		f.admit(feb.Add(2*time.Hour), alice, fn, pricing, 0, []gatewayCall{{1, 0, "k1", decimal.Zero}, {1, 0, "k1", dec("0.01")}})
		f.clock.Set(mar.Add(time.Hour))
		f.bill(feb, Options{})
		next := f.only(alice, feb)
		if l := lineOf(t, next, LineAdjustment, 1, jan); l.Amount.String() != "0.25" {
			t.Errorf("adjustment = %+v", l)
		}
		// January's credit is 1.8775 in all, 1.88 rounded once; 1.75 applied.
		if l := lineOf(t, next, LineCredit, 0, jan); l.Amount.String() != "-0.13" {
			t.Errorf("late credit line = %+v, want -0.13", l)
		}
		if l := lineOf(t, next, LineCredit, 0, feb); l.Amount.String() != "-0.01" {
			t.Errorf("february credit line = %+v, want -0.01", l)
		}
		check(next, "0.50", "0.14", "0.36")
		// Billing again changes nothing.
		f.clock.Set(mar.Add(2 * time.Hour))
		if rep := f.bill(feb, Options{}); rep.Created != 0 || rep.AdjustmentLines != 0 {
			t.Errorf("second run = %+v", rep)
		}
	})
}

// TestStripeChargesTotalLessCredit: the credit line goes to Stripe as a
// negative invoice item, so Stripe charges the total, never the credited part.
func TestStripeChargesTotalLessCredit(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		v := f.vendor("acme")
		pricing := map[int]catalog.Pricing{1: usd("0.50", "0", 0)}
		fn := f.function(v, "scan", pricing[1])
		alice := f.consumer("alice")
		f.admit(jan.Add(time.Hour), alice, fn, pricing, 0, []gatewayCall{{1, 0, "k", dec("0.50")}, {1, 0, "k", dec("0.20")}, {1, 0, "k", decimal.Zero}})
		f.clock.Set(feb.Add(time.Hour))
		rec.take()
		if rep := f.bill(jan, Options{}); rep.SyncFailures != 0 {
			t.Fatalf("report = %+v", rep)
		}
		inv := f.only(alice, jan)
		if inv.SyncStatus != SyncSynced || inv.TotalCents != 80 || inv.CreditApplied.String() != "0.70" {
			t.Fatalf("invoice = %+v", inv)
		}
		var items []int64
		for _, c := range rec.take() {
			if c.Path == "/v1/invoiceitems" {
				n, err := strconv.ParseInt(c.Form.Get("amount"), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				items = append(items, n)
			}
		}
		if len(items) != 2 || items[0] != 150 || items[1] != -70 {
			t.Errorf("stripe items = %v cents, want [150 -70]", items)
		}
	})
}

// TestStatementCollectedAndPaidOut: a statement shows the vendor's gross as
// soon as an invoice is issued, its net as collected once the invoice is
// paid, and as paid out once the payout job has transferred it.
func TestStatementCollectedAndPaidOut(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		v := f.vendor("acme")
		pricing := map[int]catalog.Pricing{1: usd("1.00", "0", 0)}
		fn := f.function(v, "scan", pricing[1])
		alice := f.consumer("alice")
		f.admit(jan.Add(time.Hour), alice, fn, pricing, 0, []gatewayCall{{1, 0, "k", decimal.Zero}, {1, 0, "k", decimal.Zero}})
		f.clock.Set(feb.Add(time.Hour))
		f.bill(jan, Options{})
		inv := f.only(alice, jan)

		statement := func(gross, net, collected, paidOut, status string) {
			t.Helper()
			sts, err := f.biller.Statements(f.ctx, v.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(sts) != 1 {
				t.Fatalf("statements = %+v", sts)
			}
			st := sts[0]
			if st.Gross.String() != gross || st.Net.String() != net || st.Collected.String() != collected || st.PaidOut.String() != paidOut || st.PayoutStatus != status {
				t.Errorf("statement = gross %s net %s collected %s paid out %s (%s); want %s %s %s %s (%s)",
					st.Gross, st.Net, st.Collected, st.PaidOut, st.PayoutStatus, gross, net, collected, paidOut, status)
			}
		}
		statement("2.00", "1.60", "0.00", "0.00", StatementPending)

		// Paid in Stripe; acme has no Connect account yet, so nothing moves.
		payload, sig := signedEvent(f, "evt_paid", "invoice.paid", inv.StripeInvoiceID, inv.ID)
		if err := f.biller.HandleWebhook(f.ctx, payload, sig); err != nil {
			t.Fatal(err)
		}
		statement("2.00", "1.60", "1.60", "0.00", StatementPending)

		// Onboarded: the payout job transfers the net.
		if _, err := f.biller.OnboardVendor(f.ctx, v.ID, "https://portal.example/vendor"); err != nil {
			t.Fatal(err)
		}
		res, err := f.biller.SyncPending(f.ctx)
		if err != nil || res.Payouts != 1 {
			t.Fatalf("payout job = %+v, %v", res, err)
		}
		statement("2.00", "1.60", "1.60", "1.60", StatementPaid)
	})
}

// TestCreditPaidMonthNetsToZero: a month whose calls prepaid credit paid in
// full totals exactly zero, whatever rounding each line and the credit line
// does on its own. Lines are rounded to cents one by one, the credit once:
// 0.004 + 0.004 used to show two 0.00 lines and a -0.01 credit line (a total
// of -0.01), and 0.015 + 0.015 two 0.02 lines and a -0.03 credit line (a
// cent charged for calls the credit had paid). Credit never takes a month
// below zero, and a month it paid in full nets to zero.
func TestCreditPaidMonthNetsToZero(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		v := f.vendor("acme")
		for _, tc := range []struct {
			consumer, perCall         string
			subtotal, credit, total   string
			partialCredit, wantCredit string
		}{
			{consumer: "alice", perCall: "0.004", subtotal: "0.00", credit: "0.00", total: "0.00"},
			{consumer: "bob", perCall: "0.015", subtotal: "0.04", credit: "0.04", total: "0.00"},
			// Credit paid most but not all: it is rounded once and applied, up
			// to the subtotal.
			{consumer: "carol", perCall: "0.015", subtotal: "0.04", credit: "0.03", total: "0.01", partialCredit: "0.0149"},
		} {
			pricing := map[int]catalog.Pricing{1: usd(tc.perCall, "0", 0)}
			who := f.consumer(tc.consumer)
			for i, name := range []string{"one", "two"} {
				fn := f.function(v, tc.consumer+"-"+name, pricing[1])
				credit := dec(tc.perCall)
				if i == 1 && tc.partialCredit != "" {
					credit = dec(tc.partialCredit)
				}
				f.admit(jan.Add(time.Hour), who, fn, pricing, 0, []gatewayCall{{version: 1, key: "k1", credit: credit}})
			}
			f.clock.Set(jan.Add(2 * 24 * time.Hour))
			up, err := f.biller.Upcoming(f.ctx, who)
			if err != nil {
				t.Fatal(err)
			}
			f.clock.Set(feb.Add(time.Hour))
			f.bill(jan, Options{})
			for _, inv := range []Invoice{up[0], f.only(who, jan)} {
				if inv.Subtotal.StringFixed(2) != tc.subtotal || inv.CreditApplied.StringFixed(2) != tc.credit || inv.Total.StringFixed(2) != tc.total ||
					inv.TotalCents != inv.Total.Cents() {
					t.Errorf("%s, %s invoice: subtotal %s, credit %s, total %s; want %s, %s, %s", tc.consumer, inv.Status,
						inv.Subtotal, inv.CreditApplied, inv.Total, tc.subtotal, tc.credit, tc.total)
				}
			}
			f.clock.Set(jan)
		}
	})
}
