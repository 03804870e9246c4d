package billing

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/metering"
	"github.com/fnmarket/fnmarket/migrations"
)

func TestSchemaHasEveryMappedColumn(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		db := testenv.DB(t, be)
		for _, m := range Models() {
			stmt := &gorm.Statement{DB: db.DB}
			if err := stmt.Parse(m); err != nil {
				t.Fatal(err)
			}
			for _, field := range stmt.Schema.Fields {
				if field.DBName != "" && !db.Migrator().HasColumn(m, field.DBName) {
					t.Errorf("table %s has no column %s", stmt.Schema.Table, field.DBName)
				}
			}
		}
		sqlDB, err := db.DB.DB()
		if err != nil {
			t.Fatal(err)
		}
		// Down and up again: the Down section must undo the Up section.
		if err := migrations.Reset(context.Background(), sqlDB, db.Dialect); err != nil {
			t.Fatal(err)
		}
		if db.Migrator().HasTable("invoices") {
			t.Error("invoices survived migrating down")
		}
		if err := migrations.Up(context.Background(), sqlDB, db.Dialect); err != nil {
			t.Fatal(err)
		}
	})
}

// seedJanuary gives two consumers January usage of two functions.
func seedJanuary(f *fixture) (alice, bob, fnA, fnB string, v catalog.Vendor) {
	v = f.vendor("acme")
	fnA = f.function(v, "scan", usd("0.001", "0.0000021", 1000), usd("0.002", "0.0000021", 1000))
	fnB = f.function(v, "ocr", usd("0.05", "0", 0))
	alice, bob = f.consumer("alice"), f.consumer("bob")
	f.usage(jan.Add(1*time.Hour), alice, fnA, 1, 800, 12_345)
	f.usage(jan.Add(30*24*time.Hour), alice, fnA, 2, 700, 50_000)
	f.usage(jan.Add(744*time.Hour-time.Hour), alice, fnB, 1, 3, 0) // the month's last hour
	f.usage(jan.Add(2*time.Hour), bob, fnB, 1, 41, 900)
	f.usage(jan.Add(-time.Hour), bob, fnB, 1, 1000, 0) // December: not January's
	f.usage(feb, bob, fnB, 1, 1000, 0)                 // February: not January's
	return
}

func TestBillPeriodIssuesAndIsIdempotent(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		alice, bob, _, _, _ := seedJanuary(f)

		rep := f.bill(jan, Options{})
		if rep.Draft || rep.Consumers != 2 || rep.Created != 2 || rep.Finalized != 2 || rep.Unchanged != 0 {
			t.Fatalf("first run report = %+v", rep)
		}
		a := f.only(alice, jan)
		// scan v1: 800 calls all free, 12345 ms; v2: 200 free of the 1000
		// left, 500 billable at 0.002 = 1.00 plus 50000 ms = 0.105.
		wantLines := []struct {
			fn              string
			version         int
			calls, free, ms int64
			amount          string
		}{
			{"acme/ocr", 1, 3, 0, 0, "0.15"},
			{"acme/scan", 1, 800, 800, 12345, "0.03"},
			{"acme/scan", 2, 700, 200, 50000, "1.10"},
		}
		if len(a.Lines) != len(wantLines) {
			t.Fatalf("alice's lines = %+v", a.Lines)
		}
		for i, w := range wantLines {
			l := a.Lines[i]
			if l.Function != w.fn || l.Version != w.version || l.Calls != w.calls || l.FreeCalls != w.free || l.BillableCalls != w.calls-w.free ||
				l.ComputeMs != w.ms || l.Amount.String() != w.amount || l.Kind != LineUsage || !l.PeriodStart.Equal(jan) {
				t.Errorf("line %d = %+v, want %+v", i, l, w)
			}
		}
		if a.Status != StatusOpen || a.Total.String() != "1.28" || a.Subtotal.String() != "1.28" || a.TotalCents != 128 || a.Currency != "USD" ||
			!a.PeriodStart.Equal(jan) || !a.PeriodEnd.Equal(feb) {
			t.Errorf("alice's invoice = %+v", a)
		}
		if b := f.only(bob, jan); b.Total.String() != "2.05" || len(b.Lines) != 1 || b.Lines[0].Calls != 41 {
			t.Errorf("bob's invoice = %+v", b)
		}

		before := map[string][]Invoice{alice: f.invoices(alice), bob: f.invoices(bob)}
		counts := map[string]int64{}
		for _, table := range []string{"invoices", "invoice_lines", "invoice_events", "vendor_shares"} {
			counts[table] = f.count(table)
		}
		f.clock.Advance(24 * time.Hour)
		rep = f.bill(jan, Options{})
		if rep.Created != 0 || rep.Finalized != 0 || rep.Unchanged != 2 {
			t.Errorf("second run report = %+v", rep)
		}
		rep = f.bill(jan, Options{ThroughNow: true}) // a month that is over is billed for real either way
		if rep.Draft || rep.Unchanged != 2 {
			t.Errorf("third run report = %+v", rep)
		}
		for c, invs := range before {
			if got := f.invoices(c); !reflect.DeepEqual(got, invs) {
				t.Errorf("re-running changed %s's invoices:\n got %+v\nwant %+v", c, got, invs)
			}
		}
		for table, n := range counts {
			if got := f.count(table); got != n {
				t.Errorf("%s has %d rows after re-running, want %d", table, got, n)
			}
		}
	})
}

func TestBillPeriodConcurrentRunsIssueOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		alice, bob, _, _, _ := seedJanuary(f)
		errs := make(chan error, 3)
		for range 3 {
			go func() {
				_, err := f.biller.BillPeriod(f.ctx, jan, Options{})
				errs <- err
			}()
		}
		// Runs take turns (the billing lease): one that finds another under
		// way is refused, and at least one issues.
		issued := 0
		for range 3 {
			err := <-errs
			if err != nil && fnmarket.ErrorCode(err) != fnmarket.ECONFLICT {
				t.Fatal(err)
			}
			if err == nil {
				issued++
			}
		}
		if issued == 0 {
			t.Error("every run was refused")
		}
		f.only(alice, jan)
		f.only(bob, jan)
		if n := f.count("invoices"); n != 2 {
			t.Errorf("%d invoices, want 2", n)
		}
	})
}

func TestBillPeriodRefusesMonthNotOver(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		f.clock.Set(jan.Add(14 * 24 * time.Hour))
		v := f.vendor("acme")
		fn := f.function(v, "scan", usd("0.01", "0", 0))
		alice := f.consumer("alice")
		f.usage(jan.Add(time.Hour), alice, fn, 1, 10, 0)

		_, err := f.biller.BillPeriod(f.ctx, jan, Options{})
		wantCode(t, err, fnmarket.EINVALID)
		if !strings.Contains(err.Error(), "2026-01") || f.count("invoices") != 0 {
			t.Errorf("refusal = %v with %d invoices", err, f.count("invoices"))
		}
		_, err = f.biller.BillPeriod(f.ctx, feb, Options{ThroughNow: true})
		wantCode(t, err, fnmarket.EINVALID)
		_, err = f.biller.BillPeriod(f.ctx, jan.Add(time.Hour), Options{})
		wantCode(t, err, fnmarket.EINVALID)

		rep := f.bill(jan, Options{ThroughNow: true})
		if !rep.Draft || rep.Created != 1 {
			t.Fatalf("draft report = %+v", rep)
		}
		d := f.only(alice, jan)
		if d.Status != StatusDraft || d.Total.String() != "0.10" || !d.UsageThrough.Equal(f.clock.Now()) {
			t.Fatalf("draft = %+v", d)
		}

		f.usage(jan.Add(20*24*time.Hour), alice, fn, 1, 5, 0)
		f.clock.Set(jan.Add(25 * 24 * time.Hour))
		rep = f.bill(jan, Options{ThroughNow: true})
		if rep.Refreshed != 1 || rep.Created != 0 {
			t.Errorf("refresh report = %+v", rep)
		}
		d2 := f.only(alice, jan)
		if d2.ID != d.ID || d2.Status != StatusDraft || d2.Total.String() != "0.15" || d2.Lines[0].Calls != 15 {
			t.Errorf("refreshed draft = %+v", d2)
		}
		if n := f.count("invoice_lines"); n != 1 {
			t.Errorf("%d lines after refresh, want 1", n)
		}

		f.clock.Set(feb.Add(time.Minute))
		rep = f.bill(jan, Options{})
		if rep.Finalized != 1 || rep.Created != 0 {
			t.Errorf("final report = %+v", rep)
		}
		inv := f.only(alice, jan)
		if inv.ID != d.ID || inv.Status != StatusOpen || !inv.UsageThrough.Equal(feb) {
			t.Errorf("finalized = %+v", inv)
		}
		evs, err := f.biller.Events(f.ctx, alice, inv.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[0].To != StatusDraft || !evs[0].At.Equal(jan.Add(14*24*time.Hour)) ||
			evs[1].From != StatusDraft || evs[1].To != StatusOpen || !evs[1].At.Equal(feb.Add(time.Minute)) {
			t.Errorf("events = %+v", evs)
		}
	})
}

func TestLateUsageLandsOnNextInvoice(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		v := f.vendor("acme")
		tiers := catalog.Pricing{Currency: "USD", PerComputeMs: dec("0.0001"), FreeCallsPerMonth: 10,
			Tiers: []catalog.Tier{{UpTo: 100, PerCall: dec("0.01")}, {UpTo: 0, PerCall: dec("0.001")}}}
		fn := f.function(v, "scan", tiers, tiers)
		alice, carol := f.consumer("alice"), f.consumer("carol")
		f.usage(jan.Add(time.Hour), alice, fn, 2, 60, 100)
		f.usage(jan.Add(time.Hour), carol, fn, 1, 5, 0)
		f.bill(jan, Options{})
		janInv := f.only(alice, jan)
		if janInv.Total.String() != "0.51" { // 50 billable * 0.01 + 100 ms * 0.0001
			t.Fatalf("january = %+v", janInv)
		}

		// Late January usage of January's first hour (a replica that was cut
		// off), rolled up after January was billed: it came before version
		// 2's calls, so version 1 now takes the free calls version 2 had, and
		// pushes v2 into the cheaper tier.
		f.usage(jan, alice, fn, 1, 100, 50)
		f.usage(jan, carol, fn, 1, 20, 0)
		f.usage(feb.Add(time.Hour), alice, fn, 2, 1, 0)
		f.clock.Set(mar.Add(time.Hour))
		if rep := f.bill(jan, Options{}); rep.Unchanged != 2 || rep.Created != 0 {
			t.Errorf("re-billing january = %+v", rep)
		}
		if got := f.only(alice, jan); !reflect.DeepEqual(got, janInv) {
			t.Errorf("january changed: %+v", got)
		}
		rep := f.bill(feb, Options{})
		if rep.AdjustmentLines != 3 || rep.Created != 2 {
			t.Errorf("february report = %+v", rep)
		}
		febInv := f.only(alice, feb)
		if len(febInv.Lines) != 3 {
			t.Fatalf("february lines = %+v", febInv.Lines)
		}
		own, adj1, adj2 := febInv.Lines[0], febInv.Lines[1], febInv.Lines[2]
		if own.Kind != LineUsage || !own.PeriodStart.Equal(feb) || own.Version != 2 || own.FreeCalls != 1 || own.Amount.String() != "0.00" {
			t.Errorf("february's own line = %+v", own)
		}
		// Full January now: v1 100 calls (10 free, 90 billable at 0.01) + 50
		// ms = 0.905 -> 0.90; v2 60 calls, none free, tiers 91..150 = 10 at
		// 0.01 + 50 at 0.001 = 0.15 + 0.01 ms = 0.16.
		if adj1.Kind != LineAdjustment || !adj1.PeriodStart.Equal(jan) || adj1.Version != 1 || adj1.Calls != 100 || adj1.FreeCalls != 10 ||
			adj1.BillableCalls != 90 || adj1.ComputeMs != 50 || adj1.Amount.String() != "0.90" {
			t.Errorf("adjustment v1 = %+v", adj1)
		}
		if adj2.Kind != LineAdjustment || adj2.Version != 2 || adj2.Calls != 0 || adj2.FreeCalls != -10 || adj2.BillableCalls != 10 ||
			adj2.ComputeMs != 0 || adj2.Amount.String() != "-0.35" {
			t.Errorf("adjustment v2 = %+v", adj2)
		}
		// Everything billed for January adds up to January's full usage priced.
		full, err := PriceFunctionMonth(map[int]catalog.Pricing{1: tiers, 2: tiers}, []VersionUsage{{Version: 1, Calls: 100, ComputeMs: 50, Hour: jan}, {Version: 2, Calls: 60, ComputeMs: 100, Hour: jan.Add(time.Hour)}})
		if err != nil {
			t.Fatal(err)
		}
		wantJan := full[0].Amount.Add(full[1].Amount)
		gotJan := janInv.Total.Add(adj1.Amount.Decimal).Add(adj2.Amount.Decimal)
		if !gotJan.Equal(wantJan) {
			t.Errorf("january billed %s in all, want %s", gotJan, wantJan)
		}
		// A consumer with only late usage still gets it billed.
		c := f.only(carol, feb)
		if len(c.Lines) != 1 || c.Lines[0].Kind != LineAdjustment || c.Lines[0].Calls != 20 || c.Lines[0].FreeCalls != 5 || c.Total.String() != "0.15" {
			t.Errorf("carol's february = %+v", c)
		}
		// Once billed, a late call is never billed again.
		f.clock.Set(mar.AddDate(0, 1, 0))
		if rep := f.bill(mar, Options{}); rep.AdjustmentLines != 0 || rep.Consumers != 0 {
			t.Errorf("march report = %+v", rep)
		}
	})
}

func TestLifecycleTransitions(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		alice, bob, _, _, _ := seedJanuary(f)
		f.bill(jan, Options{})
		a, b := f.only(alice, jan), f.only(bob, jan)

		wantCode(t, f.biller.Transition(f.ctx, a.ID, StatusDraft, ""), fnmarket.ECONFLICT)
		wantCode(t, f.biller.Transition(f.ctx, "inv_nope", StatusPaid, ""), fnmarket.ENOTFOUND)
		paidAt := f.clock.Now().Add(time.Hour)
		f.clock.Set(paidAt)
		if err := f.biller.Transition(f.ctx, a.ID, StatusPaid, "bank transfer"); err != nil {
			t.Fatal(err)
		}
		if err := f.biller.Transition(f.ctx, a.ID, StatusPaid, ""); err != nil {
			t.Errorf("paid again: %v", err)
		}
		wantCode(t, f.biller.Transition(f.ctx, a.ID, StatusVoid, ""), fnmarket.ECONFLICT)
		wantCode(t, f.biller.Transition(f.ctx, a.ID, StatusOpen, ""), fnmarket.ECONFLICT)
		if err := f.biller.Transition(f.ctx, b.ID, StatusVoid, "goodwill"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, f.biller.Transition(f.ctx, b.ID, StatusPaid, ""), fnmarket.ECONFLICT)

		if got := f.only(alice, jan); got.Status != StatusPaid {
			t.Errorf("alice = %s", got.Status)
		}
		evs, err := f.biller.Events(f.ctx, alice, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		var path []string
		for _, e := range evs {
			path = append(path, string(e.From)+">"+string(e.To)+"@"+e.Source)
		}
		if got := strings.Join(path, " "); got != ">draft@billing draft>open@billing open>paid@operator" {
			t.Errorf("events = %s", got)
		}
		if last := evs[len(evs)-1]; !last.At.Equal(paidAt) || last.Detail != "bank transfer" {
			t.Errorf("last event = %+v", last)
		}
		evs, _ = f.biller.Events(f.ctx, bob, b.ID)
		if last := evs[len(evs)-1]; last.To != StatusVoid || last.Detail != "goodwill" {
			t.Errorf("bob's last event = %+v", last)
		}
	})
}

func TestZeroInvoiceIsPaidAtOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		v := f.vendor("acme")
		fn := f.function(v, "scan", usd("0.01", "0", 100))
		alice := f.consumer("alice")
		f.usage(jan, alice, fn, 1, 100, 0)
		f.bill(jan, Options{})
		inv := f.only(alice, jan)
		if inv.Status != StatusPaid || inv.TotalCents != 0 || inv.Lines[0].FreeCalls != 100 {
			t.Errorf("free-tier invoice = %+v", inv)
		}
	})
}

func TestOneInvoicePerCurrency(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		v := f.vendor("acme")
		eur := usd("0.01", "0", 0)
		eur.Currency = "EUR"
		fnUSD, fnEUR := f.function(v, "scan", usd("0.02", "0", 0)), f.function(v, "ocr", eur)
		alice := f.consumer("alice")
		f.usage(jan, alice, fnUSD, 1, 10, 0)
		f.usage(jan, alice, fnEUR, 1, 10, 0)
		f.bill(jan, Options{})
		invs := f.invoices(alice)
		if len(invs) != 2 || invs[0].Currency != "EUR" || invs[0].Total.String() != "0.10" || invs[1].Currency != "USD" || invs[1].Total.String() != "0.20" {
			t.Errorf("invoices = %+v", invs)
		}
	})
}

func TestStatements(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rate := dec("0.15")
		f := newFixture(t, be, func(c *Config) { c.PlatformFeeRate = &rate })
		alice, bob, _, _, acme := seedJanuary(f)
		other := f.vendor("other")
		fnO := f.function(other, "echo", usd("1", "0", 0))
		f.usage(jan.Add(time.Hour), bob, fnO, 1, 2, 0)
		f.bill(jan, Options{})

		sts, err := f.biller.Statements(f.ctx, acme.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(sts) != 1 {
			t.Fatalf("statements = %+v", sts)
		}
		st := sts[0]
		// alice 1.28 + bob 2.05 on acme's functions; fee per invoice:
		// 1.28*0.15 = 0.192 -> 0.19, 2.05*0.15 = 0.3075 -> 0.31.
		if !st.PeriodStart.Equal(jan) || st.Currency != "USD" || st.Gross.String() != "3.33" || st.PlatformFee.String() != "0.50" ||
			st.Net.String() != "2.83" || st.PayoutStatus != StatementPending {
			t.Errorf("statement = %+v", st)
		}
		if len(st.Lines) != 2 || st.Lines[0].Function != "acme/ocr" || st.Lines[0].Gross.String() != "2.20" ||
			st.Lines[1].Function != "acme/scan" || st.Lines[1].Gross.String() != "1.13" {
			t.Errorf("statement lines = %+v", st.Lines)
		}
		// Vendor gross is exactly its lines on consumers' invoices.
		sum := decimal.Zero
		for _, c := range []string{alice, bob} {
			for _, l := range f.only(c, jan).Lines {
				if l.VendorID == acme.ID {
					sum = sum.Add(l.Amount.Decimal)
				}
			}
		}
		if !sum.Equal(st.Gross.Decimal) {
			t.Errorf("lines sum to %s, statement gross %s", sum, st.Gross)
		}
		if sts, _ := f.biller.Statements(f.ctx, other.ID); len(sts) != 1 || sts[0].Gross.String() != "2.00" || sts[0].Net.String() != "1.70" {
			t.Errorf("other vendor's statements = %+v", sts)
		}

		// A void invoice leaves the statement.
		if err := f.biller.Transition(f.ctx, f.only(bob, jan).ID, StatusVoid, ""); err != nil {
			t.Fatal(err)
		}
		sts, _ = f.biller.Statements(f.ctx, acme.ID)
		if len(sts) != 1 || sts[0].Gross.String() != "1.28" || sts[0].Net.String() != "1.09" {
			t.Errorf("after void = %+v", sts)
		}
		b, _ := json.Marshal(sts[0])
		if !strings.Contains(string(b), `"gross":"1.28"`) || !strings.Contains(string(b), `"period_start":"2026-01-01T00:00:00Z"`) {
			t.Errorf("statement JSON = %s", b)
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		live := &fakeLive{}
		f := newFixture(t, be, func(c *Config) { c.Live = live })
		alice, bob, fnA, _, _ := seedJanuary(f)
		f.bill(jan, Options{})
		a := f.only(alice, jan)

		_, err := f.biller.Invoice(f.ctx, bob, a.ID)
		wantCode(t, err, fnmarket.ENOTFOUND)
		_, err = f.biller.Events(f.ctx, bob, a.ID)
		wantCode(t, err, fnmarket.ENOTFOUND)
		for _, inv := range f.invoices(bob) {
			if inv.ID == a.ID {
				t.Error("bob's list holds alice's invoice")
			}
		}
		if got, err := f.biller.Invoice(f.ctx, alice, a.ID); err != nil || got.ID != a.ID {
			t.Errorf("alice reading her own: %v", err)
		}
		// Live counts that are not the asking consumer's never show.
		live.rows = []metering.UsageRow{{HourStart: feb.Add(time.Hour), ConsumerID: alice, FunctionID: fnA, Version: 1, BillableCalls: 5000, ComputeMs: 1}}
		ups, err := f.biller.Upcoming(f.ctx, bob)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ups[0].Lines {
			if l.Function == "acme/scan" {
				t.Errorf("bob's preview shows alice's live usage: %+v", l)
			}
		}
		_, err = f.biller.Upcoming(f.ctx, "")
		wantCode(t, err, fnmarket.EINVALID)
	})
}

type fakeLive struct{ rows []metering.UsageRow }

func (l *fakeLive) LiveUsage(_ context.Context, consumerID string) ([]metering.UsageRow, error) {
	return l.rows, nil
}

func TestUpcomingMatchesTheInvoice(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		live := &fakeLive{}
		f := newFixture(t, be, func(c *Config) { c.Live = live })
		alice, _, fnA, fnB, _ := seedJanuary(f)
		f.bill(jan, Options{})
		f.clock.Set(feb.Add(10 * 24 * time.Hour))
		// Rolled up: February usage and a late January call (adjustment).
		f.usage(feb.Add(2*time.Hour), alice, fnB, 1, 7, 0)
		f.usage(jan.Add(5*time.Hour), alice, fnB, 1, 1, 0)
		// Still in Redis: more of both.
		live.rows = []metering.UsageRow{
			{HourStart: feb.Add(9 * 24 * time.Hour), ConsumerID: alice, FunctionID: fnA, Version: 2, Calls: 3000, BillableCalls: 2500, ComputeMs: 70_000},
			{HourStart: jan.Add(743 * time.Hour), ConsumerID: alice, FunctionID: fnB, Version: 1, Calls: 2, BillableCalls: 2},
		}
		ups, err := f.biller.Upcoming(f.ctx, alice)
		if err != nil {
			t.Fatal(err)
		}
		if len(ups) != 1 || ups[0].Status != StatusPreview || ups[0].ID != UpcomingID || !ups[0].PeriodStart.Equal(feb) {
			t.Fatalf("upcoming = %+v", ups)
		}
		up := ups[0]
		// scan v2 2500 calls: 1000 free, 1500 * 0.002 = 3 + 70000 ms = 0.147
		// -> 3.15; ocr 7 * 0.05 = 0.35; january's ocr grew by 3 calls: 0.15.
		if up.Total.String() != "3.65" || len(up.Lines) != 3 || up.Lines[2].Kind != LineAdjustment || up.Lines[2].Calls != 3 {
			t.Errorf("upcoming = %+v", up)
		}
		// The roll-up lands, February ends, and February is billed: the
		// invoice has exactly the preview's numbers.
		for _, r := range live.rows {
			f.usage(r.HourStart, alice, r.FunctionID, r.Version, r.BillableCalls, r.ComputeMs)
		}
		live.rows = nil
		f.clock.Set(mar)
		f.bill(feb, Options{})
		inv := f.only(alice, feb)
		if !reflect.DeepEqual(inv.Lines, up.Lines) || !inv.Total.Equal(up.Total.Decimal) || inv.TotalCents != up.TotalCents {
			t.Errorf("invoice %+v\ndiffers from preview %+v", inv, up)
		}
		// No usage at all: an empty USD preview.
		ups, err = f.biller.Upcoming(f.ctx, "acc_nobody")
		if err != nil || len(ups) != 1 || ups[0].Currency != "USD" || len(ups[0].Lines) != 0 || ups[0].TotalCents != 0 {
			t.Errorf("empty upcoming = %+v, %v", ups, err)
		}
	})
}

func TestInvoiceJSONShape(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		alice, _, _, _, _ := seedJanuary(f)
		f.bill(jan, Options{})
		b, err := json.Marshal(f.only(alice, jan))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"id", "period_start", "period_end", "status", "currency", "subtotal", "total", "total_cents", "lines", "stripe_invoice_id"} {
			if _, ok := m[k]; !ok {
				t.Errorf("invoice JSON lacks %s: %s", k, b)
			}
		}
		if m["total"] != "1.28" || m["total_cents"] != float64(128) || m["period_start"] != "2026-01-01T00:00:00Z" || m["period_end"] != "2026-02-01T00:00:00Z" {
			t.Errorf("invoice JSON = %s", b)
		}
		line := m["lines"].([]any)[2].(map[string]any)
		for k, want := range map[string]any{"function": "acme/scan", "version": float64(2), "calls": float64(700), "free_calls": float64(200),
			"billable_calls": float64(500), "compute_ms": float64(50000), "amount": "1.10"} {
			if line[k] != want {
				t.Errorf("line JSON %s = %v, want %v (%s)", k, line[k], want, b)
			}
		}
		if _, ok := m["consumer_id"]; ok {
			t.Error("invoice JSON leaks internal ids")
		}
	})
}
