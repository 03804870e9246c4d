package billing

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// h0 is an hour of January.
var h0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPriceFunctionMonth(t *testing.T) {
	t.Parallel()
	tiered := catalog.Pricing{Currency: "USD", PerComputeMs: decimal.Zero, Tiers: []catalog.Tier{
		{UpTo: 100, PerCall: dec("0.01")}, {UpTo: 0, PerCall: dec("0.001")}}}
	tieredFree := tiered
	tieredFree.FreeCallsPerMonth = 50
	type want struct {
		version        int
		free, billable int64
		exact, amount  string
	}
	tests := []struct {
		name    string
		pricing map[int]catalog.Pricing
		usage   []VersionUsage
		want    []want
	}{
		{"below free tier", map[int]catalog.Pricing{1: usd("0.01", "0", 100)},
			[]VersionUsage{{1, 99, 0, h0, nil}}, []want{{1, 99, 0, "0", "0"}}},
		{"exactly the free tier", map[int]catalog.Pricing{1: usd("0.01", "0", 100)},
			[]VersionUsage{{1, 100, 0, h0, nil}}, []want{{1, 100, 0, "0", "0"}}},
		{"one past the free tier", map[int]catalog.Pricing{1: usd("0.01", "0", 100)},
			[]VersionUsage{{1, 101, 0, h0, nil}}, []want{{1, 100, 1, "0.01", "0.01"}}},
		{"free calls still pay compute", map[int]catalog.Pricing{1: usd("0.01", "0.001", 100)},
			[]VersionUsage{{1, 10, 1000, h0, nil}}, []want{{1, 10, 0, "1", "1"}}},
		{"free tier split across versions in version order", map[int]catalog.Pricing{1: usd("0.01", "0", 100), 2: usd("0.02", "0", 100)},
			[]VersionUsage{{2, 70, 0, h0, nil}, {1, 60, 0, h0, nil}}, []want{{1, 60, 0, "0", "0"}, {2, 40, 30, "0.6", "0.60"}}},
		{"a later version's smaller cap counts the earlier free calls", map[int]catalog.Pricing{1: usd("0.01", "0", 100), 2: usd("0.01", "0", 50)},
			[]VersionUsage{{1, 60, 0, h0, nil}, {2, 30, 0, h0, nil}}, []want{{1, 60, 0, "0", "0"}, {2, 0, 30, "0.3", "0.30"}}},
		{"a later version's larger cap counts every earlier call", map[int]catalog.Pricing{1: usd("0.01", "0", 10), 2: usd("0.01", "0", 100)},
			[]VersionUsage{{1, 60, 0, h0, nil}, {2, 100, 0, h0, nil}}, []want{{1, 10, 50, "0.5", "0.50"}, {2, 40, 60, "0.6", "0.60"}}},
		{"free calls go to the earlier hour, whatever its version", map[int]catalog.Pricing{1: usd("0.01", "0", 100), 2: usd("0.01", "0", 0)},
			[]VersionUsage{{1, 100, 0, h0.Add(2 * time.Hour), nil}, {2, 50, 0, h0.Add(time.Hour), nil}}, []want{{1, 50, 50, "0.5", "0.50"}, {2, 0, 50, "0.5", "0.50"}}},
		{"tiers continue in hour order", map[int]catalog.Pricing{1: tiered, 2: tiered},
			[]VersionUsage{{1, 80, 0, h0.Add(time.Hour), nil}, {2, 70, 0, h0, nil}}, []want{{1, 0, 80, "0.35", "0.35"}, {2, 0, 70, "0.7", "0.70"}}},
		{"repeated rows of one version are summed", map[int]catalog.Pricing{1: usd("0.01", "0", 0)},
			[]VersionUsage{{1, 1, 0, h0, nil}, {1, 2, 0, h0, nil}}, []want{{1, 0, 3, "0.03", "0.03"}}},
		{"tiny compute price", map[int]catalog.Pricing{1: usd("0", "0.0000021", 0)},
			[]VersionUsage{{1, 0, 1234567, h0, nil}}, []want{{1, 0, 0, "2.5925907", "2.59"}}},
		{"sub-cent total rounds to zero", map[int]catalog.Pricing{1: usd("0.000000001", "0.0000021", 0)},
			[]VersionUsage{{1, 1000, 1000, h0, nil}}, []want{{1, 0, 1000, "0.002101", "0"}}},
		{"big volume", map[int]catalog.Pricing{1: usd("0.000001", "0.0000021", 1000)},
			[]VersionUsage{{1, 10_000_001_000, 2_000_000_000_000, h0, nil}}, []want{{1, 1000, 10_000_000_000, "4210000", "4210000.00"}}},
		{"half a cent rounds to even (down)", map[int]catalog.Pricing{1: usd("0.005", "0", 0)},
			[]VersionUsage{{1, 1, 0, h0, nil}}, []want{{1, 0, 1, "0.005", "0.00"}}},
		{"one and a half cents rounds to even (up)", map[int]catalog.Pricing{1: usd("0.005", "0", 0)},
			[]VersionUsage{{1, 3, 0, h0, nil}}, []want{{1, 0, 3, "0.015", "0.02"}}},
		{"two and a half cents rounds to even (down)", map[int]catalog.Pricing{1: usd("0.005", "0", 0)},
			[]VersionUsage{{1, 5, 0, h0, nil}}, []want{{1, 0, 5, "0.025", "0.02"}}},
		{"just above half a cent rounds up", map[int]catalog.Pricing{1: usd("0.005000000001", "0", 0)},
			[]VersionUsage{{1, 1, 0, h0, nil}}, []want{{1, 0, 1, "0.005000000001", "0.01"}}},
		{"just below half a cent rounds down", map[int]catalog.Pricing{1: usd("0.004999999999", "0", 0)},
			[]VersionUsage{{1, 3, 0, h0, nil}}, []want{{1, 0, 3, "0.014999999997", "0.01"}}},
		{"graduated tiers", map[int]catalog.Pricing{1: tiered},
			[]VersionUsage{{1, 150, 0, h0, nil}}, []want{{1, 0, 150, "1.05", "1.05"}}},
		{"graduated tiers continue across versions", map[int]catalog.Pricing{1: tiered, 2: tiered},
			[]VersionUsage{{1, 80, 0, h0, nil}, {2, 70, 0, h0, nil}}, []want{{1, 0, 80, "0.8", "0.80"}, {2, 0, 70, "0.25", "0.25"}}},
		{"graduated tiers start after the free tier", map[int]catalog.Pricing{1: tieredFree, 2: tieredFree},
			[]VersionUsage{{1, 40, 0, h0, nil}, {2, 150, 0, h0, nil}}, []want{{1, 40, 0, "0", "0"}, {2, 10, 140, "1.04", "1.04"}}},
		{"no usage, no line", map[int]catalog.Pricing{1: usd("1", "1", 0)},
			[]VersionUsage{{1, 0, 0, h0, nil}}, nil},
		{"currency defaults to USD", map[int]catalog.Pricing{1: {PerCall: dec("1")}},
			[]VersionUsage{{1, 1, 0, h0, nil}}, []want{{1, 0, 1, "1", "1"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := PriceFunctionMonth(tt.pricing, tt.usage)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines %+v, want %d", len(got), got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Version != w.version || g.FreeCalls != w.free || g.BillableCalls != w.billable || g.FreeCalls+g.BillableCalls != g.Calls ||
					!g.Exact.Equal(dec(w.exact)) || !g.Amount.Equal(dec(w.amount)) || g.Currency != "USD" {
					t.Errorf("line %d = v%d free %d billable %d exact %s amount %s %s, want v%d free %d billable %d exact %s amount %s USD",
						i, g.Version, g.FreeCalls, g.BillableCalls, g.Exact, g.Amount, g.Currency, w.version, w.free, w.billable, w.exact, w.amount)
				}
			}
		})
	}
}

func TestPriceFunctionMonthRejects(t *testing.T) {
	t.Parallel()
	if _, err := PriceFunctionMonth(map[int]catalog.Pricing{1: usd("1", "0", 0)}, []VersionUsage{{2, 1, 0, h0, nil}}); err == nil {
		t.Error("a version without pricing was priced")
	}
	if _, err := PriceFunctionMonth(map[int]catalog.Pricing{1: usd("1", "0", 0)}, []VersionUsage{{1, -1, 0, h0, nil}}); err == nil {
		t.Error("negative usage was priced")
	}
}

func TestRoundCents(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"0.005": "0", "0.015": "0.02", "0.025": "0.02", "0.035": "0.04", "0.0050001": "0.01", "0.0049999": "0",
		"-0.005": "0", "-0.015": "-0.02", "12.344999": "12.34", "1000000000.125": "1000000000.12",
	} {
		if got := RoundCents(dec(in)); !got.Equal(dec(want)) {
			t.Errorf("RoundCents(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestMoneyJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{{"12.3", `"12.30"`}, {"0", `"0.00"`}, {"-0.05", `"-0.05"`}, {"1234567.891", `"1234567.89"`}} {
		b, err := json.Marshal(NewMoney(dec(tt.in)))
		if err != nil || string(b) != tt.want {
			t.Errorf("marshal %s = %s, %v; want %s", tt.in, b, err, tt.want)
		}
	}
	var m Money
	if err := json.Unmarshal([]byte(`"0.10"`), &m); err != nil || !m.Equal(dec("0.1")) {
		t.Errorf("unmarshal = %s, %v", m, err)
	}
	if got := NewMoney(dec("-12.34")).Cents(); got != -1234 {
		t.Errorf("cents = %d", got)
	}
}

func TestCanTransition(t *testing.T) {
	t.Parallel()
	all := []Status{StatusDraft, StatusOpen, StatusPaid, StatusVoid, StatusPreview}
	ok := map[[2]Status]bool{{StatusDraft, StatusOpen}: true, {StatusOpen, StatusPaid}: true, {StatusOpen, StatusVoid}: true}
	for _, from := range all {
		for _, to := range all {
			if got := CanTransition(from, to); got != ok[[2]Status{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
}

// TestInvoiceFreeCallsInAdmissionOrder is issue 10's measured case on an
// invoice: v1 with 100 free calls, v2 with none, both 0.01 a call; 50 calls
// of v2, then 100 of v1. The free calls go to calls in the order they were
// made, so v2 pays 0.50 and v1 (50 free, 50 paid) 0.50: 1.00, what the
// usage view and the spend cap count. Before, the invoice gave free calls to
// versions in ascending order and billed 0.50 (test fails before this fix).
func TestInvoiceFreeCallsInAdmissionOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		fn := f.function(f.vendor("acme"), "echo", usd("0.01", "0", 100), usd("0.01", "0", 0))
		alice := f.consumer("alice")
		f.usage(jan.Add(time.Hour), alice, fn, 2, 50, 0)
		f.usage(jan.Add(2*time.Hour), alice, fn, 1, 100, 0)
		f.bill(jan, Options{})
		inv := f.only(alice, jan)
		if inv.Total.String() != "1.00" || len(inv.Lines) != 2 {
			t.Fatalf("january = total %s, lines %+v; want 1.00 on two lines", inv.Total, inv.Lines)
		}
		v1, v2 := inv.Lines[0], inv.Lines[1]
		if v1.Version != 1 || v1.FreeCalls != 50 || v1.BillableCalls != 50 || v1.Amount.String() != "0.50" {
			t.Errorf("v1 line = %+v, want 50 free, 50 billable, 0.50", v1)
		}
		if v2.Version != 2 || v2.FreeCalls != 0 || v2.BillableCalls != 50 || v2.Amount.String() != "0.50" {
			t.Errorf("v2 line = %+v, want 50 billable, 0.50", v2)
		}
	})
}
