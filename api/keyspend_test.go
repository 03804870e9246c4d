package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// functionsByID is a FunctionLookup over fixed functions.
type functionsByID map[string]catalog.Function

func (f functionsByID) FunctionsByID(_ context.Context, ids []string) (map[string]catalog.Function, error) {
	out := map[string]catalog.Function{}
	for _, id := range ids {
		if fn, ok := f[id]; ok {
			out[id] = fn
		}
	}
	return out, nil
}

func pricedFunction(id, currency, perCall, perMs string, free int64) catalog.Function {
	return catalog.Function{ID: id, VendorSlug: "acme", Name: id, Versions: []catalog.Version{{FunctionID: id, Version: 1,
		Pricing: catalog.Pricing{Currency: currency, PerCall: decimal.RequireFromString(perCall), PerComputeMs: decimal.RequireFromString(perMs), FreeCallsPerMonth: free}}}}
}

// TestKeySpendThisMonth: each key's spend is its share of the month priced
// as usage rows are (free calls first, per function and month, whatever
// key), per currency, and the keys add up to the usage rows.
func TestKeySpendThisMonth(t *testing.T) {
	mar := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	store := &usagePeriods{periods: []billing.UsageHour{
		// Last month's calls count for nothing this month.
		{Hour: mar.Add(-time.Hour), ConsumerID: "c1", KeyID: "kA", FunctionID: "f1", Version: 1, Calls: 9, BillableCalls: 9},
		// f1: 2 free calls a month, then 0.01 per call, 0.001 per ms. In hour
		// 0, kA's 2 calls (10 ms) take the free calls, kB's 1 call pays.
		{Hour: mar, ConsumerID: "c1", KeyID: "kB", FunctionID: "f1", Version: 1, Calls: 1, BillableCalls: 1},
		{Hour: mar, ConsumerID: "c1", KeyID: "kA", FunctionID: "f1", Version: 1, Calls: 2, BillableCalls: 2, ComputeMs: 10},
		{Hour: mar.Add(5 * time.Hour), ConsumerID: "c1", KeyID: "kB", FunctionID: "f1", Version: 1, Calls: 4, BillableCalls: 3, ComputeMs: 5},
		{Hour: mar.Add(6 * time.Hour), ConsumerID: "c1", KeyID: "kA", FunctionID: "f2", Version: 1, Calls: 1, BillableCalls: 1},
		{Hour: mar.Add(6 * time.Hour), ConsumerID: "c2", KeyID: "kC", FunctionID: "f1", Version: 1, Calls: 50, BillableCalls: 50},
	}}
	fns := functionsByID{"f1": pricedFunction("f1", "USD", "0.01", "0.001", 2), "f2": pricedFunction("f2", "EUR", "1", "0", 0)}
	u := api.NewUsageReport(store, store, fns, nil)
	at := mar.Add(10 * time.Hour)
	got, err := u.KeySpendThisMonth(context.Background(), "c1", at)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{"kA": {"USD": "0.01", "EUR": "1"}, "kB": {"USD": "0.045"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	total := map[string]decimal.Decimal{}
	for k, m := range want {
		if len(got[k]) != len(m) {
			t.Errorf("key %s: got %v, want %v", k, got[k], m)
		}
		for cur, amt := range m {
			if g := got[k][cur]; !g.Equal(decimal.RequireFromString(amt)) {
				t.Errorf("key %s %s: got %s, want %s", k, cur, g, amt)
			}
			total[cur] = total[cur].Add(got[k][cur])
		}
	}
	if f := store.filters[0]; !f.PerKey || !f.From.Equal(mar) || f.ConsumerID != "c1" {
		t.Errorf("filter %+v, want c1's March per key", f)
	}
	rows, err := u.Usage(context.Background(), api.UsageQuery{ConsumerID: "c1", From: mar, To: at, Granularity: "day"})
	if err != nil {
		t.Fatal(err)
	}
	fromRows := map[string]decimal.Decimal{}
	for _, r := range rows {
		if r.PeriodStart >= mar.Format(time.RFC3339) {
			fromRows[r.Currency] = fromRows[r.Currency].Add(decimal.RequireFromString(r.Cost))
		}
	}
	for cur, d := range fromRows {
		if !d.Equal(total[cur]) {
			t.Errorf("%s: usage rows sum to %s, keys to %s", cur, d, total[cur])
		}
	}
}

type fixedKeySpends map[string]map[string]decimal.Decimal

func (f fixedKeySpends) KeySpendThisMonth(context.Context, string, time.Time) (map[string]map[string]decimal.Decimal, error) {
	return f, nil
}

// TestKeyListsCarrySpend: with KeySpends wired, every key in the list
// carries spend_this_month (empty when nothing), validated against the
// OpenAPI document; without it, none does.
func TestKeyListsCarrySpend(t *testing.T) {
	b := testenv.Backends()[0]
	spends := fixedKeySpends{}
	h := newHarness(t, b, func(d *api.Deps) { d.KeySpends = spends })
	tok := h.signup("c@example.com")
	a := h.must(201, h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "a"}))
	if _, ok := a.body["spend_this_month"]; ok {
		t.Errorf("a created key carries spend_this_month: %s", a.raw)
	}
	h.must(201, h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "b"}))
	spends[a.str("id")] = map[string]decimal.Decimal{"USD": decimal.RequireFromString("0.000213"), "EUR": decimal.RequireFromString("2")}
	for _, k := range h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items() {
		got, _ := k["spend_this_month"].(map[string]any)
		want := map[string]any{}
		if k["name"] == "a" {
			want = map[string]any{"USD": "0.000213", "EUR": "2"}
		}
		if got == nil || len(got) != len(want) || got["USD"] != want["USD"] || got["EUR"] != want["EUR"] {
			t.Errorf("key %v: spend_this_month %v, want %v", k["name"], k["spend_this_month"], want)
		}
	}

	plain := newHarness(t, b)
	ptok := plain.signup("d@example.com")
	plain.must(201, plain.do("POST", "/api/v1/keys", ptok, map[string]any{"name": "a"}))
	for _, k := range plain.must(200, plain.do("GET", "/api/v1/keys", ptok, nil)).items() {
		if _, ok := k["spend_this_month"]; ok {
			t.Errorf("without KeySpends a key carries spend_this_month: %v", k)
		}
	}
}
