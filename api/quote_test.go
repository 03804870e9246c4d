package api_test

import (
	"encoding/json"
	"testing"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestQuotePricing: the quote route prices a month's calls with catalog's
// rule and answers exact decimal strings plus the total rounded half-even to
// cents; no session is needed.
func TestQuotePricing(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			testQuotePricing(t, newHarness(t, b))
		})
	}
}

func testQuotePricing(t *testing.T, h *harness) {
	flat := map[string]any{"currency": "USD", "per_call": "0.0001", "per_compute_ms": "0.000002", "free_calls_per_month": 100}
	tiers := map[string]any{"per_compute_ms": "0", "free_calls_per_month": 10,
		"tiers": []any{map[string]any{"up_to": 100, "per_call": "0.01"}, map[string]any{"up_to": 0, "per_call": "0.001"}}}
	type quote struct {
		Currency      string `json:"currency"`
		Calls         int64  `json:"calls"`
		FreeCalls     int64  `json:"free_calls"`
		BillableCalls int64  `json:"billable_calls"`
		ComputeMs     int64  `json:"compute_ms"`
		PerCallCost   string `json:"per_call_cost"`
		ComputeCost   string `json:"compute_cost"`
		Total         string `json:"total"`
		TotalRounded  string `json:"total_rounded"`
	}
	cases := []struct {
		name string
		body map[string]any
		want quote
	}{
		{"no calls", map[string]any{"pricing": flat, "calls": 0, "compute_ms_per_call": 50},
			quote{"USD", 0, 0, 0, 0, "0", "0", "0", "0.00"}},
		{"flat 10k", map[string]any{"pricing": flat, "calls": 10000, "compute_ms_per_call": 50},
			quote{"USD", 10000, 100, 9900, 500000, "0.99", "1", "1.99", "1.99"}},
		{"all free, compute still charged", map[string]any{"pricing": flat, "calls": 100, "compute_ms_per_call": 1},
			quote{"USD", 100, 100, 0, 100, "0", "0.0002", "0.0002", "0.00"}},
		{"free tier partly used", map[string]any{"pricing": flat, "calls": 100, "compute_ms_per_call": 0, "calls_before": 60},
			quote{"USD", 100, 40, 60, 0, "0.006", "0", "0.006", "0.01"}},
		{"free tier used up", map[string]any{"pricing": flat, "calls": 10, "compute_ms_per_call": 0, "calls_before": 150},
			quote{"USD", 10, 0, 10, 0, "0.001", "0", "0.001", "0.00"}},
		{"graduated tiers", map[string]any{"pricing": tiers, "calls": 1010, "compute_ms_per_call": 0},
			quote{"USD", 1010, 10, 1000, 0, "1.9", "0", "1.9", "1.90"}},
		// 60 earlier calls: 10 free, 50 billable in tier 1, so these 100 are
		// 50 at 0.01 and 50 at 0.001.
		{"tiers continue after calls_before", map[string]any{"pricing": tiers, "calls": 100, "compute_ms_per_call": 0, "calls_before": 60},
			quote{"USD", 100, 0, 100, 0, "0.55", "0", "0.55", "0.55"}},
		{"compute at tiny prices", map[string]any{"pricing": map[string]any{"currency": "eur", "per_call": "0", "per_compute_ms": "0.000000000001", "free_calls_per_month": 0}, "calls": 3, "compute_ms_per_call": 2},
			quote{"EUR", 3, 0, 3, 6, "0", "0.000000000006", "0.000000000006", "0.00"}},
		{"0.1 + 0.2 stays exact", map[string]any{"pricing": map[string]any{"per_call": "0.1", "per_compute_ms": "0.2"}, "calls": 1, "compute_ms_per_call": 1},
			quote{"USD", 1, 0, 1, 1, "0.1", "0.2", "0.3", "0.30"}},
		{"half-even down", map[string]any{"pricing": map[string]any{"per_call": "0.125", "per_compute_ms": "0"}, "calls": 1, "compute_ms_per_call": 0},
			quote{"USD", 1, 0, 1, 0, "0.125", "0", "0.125", "0.12"}},
		{"half-even up", map[string]any{"pricing": map[string]any{"per_call": "0.135", "per_compute_ms": "0"}, "calls": 1, "compute_ms_per_call": 0},
			quote{"USD", 1, 0, 1, 0, "0.135", "0", "0.135", "0.14"}},
		{"largest volume", map[string]any{"pricing": map[string]any{"per_call": "1000", "per_compute_ms": "1000"}, "calls": 1_000_000_000, "compute_ms_per_call": 900_000},
			quote{"USD", 1_000_000_000, 0, 1_000_000_000, 900_000_000_000_000, "1000000000000", "900000000000000000", "900001000000000000", "900001000000000000.00"}},
	}
	for _, c := range cases {
		a := h.must(200, h.do("POST", "/api/v1/pricing/quote", "", c.body))
		var got quote
		if err := json.Unmarshal([]byte(a.raw), &got); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}

	// A published function is quoted by reference, at its live or a pinned
	// published version.
	tok, fid := h.vendor("vendor@example.com", "acme")
	h.must(200, h.do("POST", "/api/v1/functions/"+fid+"/publish", tok, map[string]any{"version": 1}))
	for _, body := range []map[string]any{
		{"function": "acme/scan", "calls": 10000, "compute_ms_per_call": 50},
		{"function": "acme/scan", "version": 1, "calls": 10000, "compute_ms_per_call": 50},
	} {
		a := h.must(200, h.do("POST", "/api/v1/pricing/quote", "", body))
		if a.str("total") != "1.99" || a.str("total_rounded") != "1.99" || a.str("currency") != "USD" {
			t.Errorf("quote of %v: %s", body, a.raw)
		}
	}

	bad := []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"calls missing", map[string]any{"pricing": flat, "compute_ms_per_call": 1}, 400, "calls"},
		{"calls negative", map[string]any{"pricing": flat, "calls": -1, "compute_ms_per_call": 1}, 400, "calls"},
		{"calls too many", map[string]any{"pricing": flat, "calls": 1_000_000_001, "compute_ms_per_call": 1}, 400, "calls"},
		{"calls not a number", map[string]any{"pricing": flat, "calls": "10k", "compute_ms_per_call": 1}, 400, "calls"},
		{"calls fractional", map[string]any{"pricing": flat, "calls": 1.5, "compute_ms_per_call": 1}, 400, "calls"},
		{"compute missing", map[string]any{"pricing": flat, "calls": 1}, 400, "compute_ms_per_call"},
		{"compute too long", map[string]any{"pricing": flat, "calls": 1, "compute_ms_per_call": 900_001}, 400, "compute_ms_per_call"},
		{"calls_before negative", map[string]any{"pricing": flat, "calls": 1, "compute_ms_per_call": 1, "calls_before": -5}, 400, "calls_before"},
		{"no pricing", map[string]any{"calls": 1, "compute_ms_per_call": 1}, 400, "pricing"},
		{"bad price", map[string]any{"pricing": map[string]any{"per_call": "-0.1", "per_compute_ms": "0"}, "calls": 1, "compute_ms_per_call": 1}, 400, "pricing.per_call"},
		{"float price", map[string]any{"pricing": map[string]any{"per_call": 0.1, "per_compute_ms": "0"}, "calls": 1, "compute_ms_per_call": 1}, 400, "pricing.per_call"},
		{"bad tiers", map[string]any{"pricing": map[string]any{"per_compute_ms": "0", "tiers": []any{map[string]any{"up_to": 10, "per_call": "1"}, map[string]any{"up_to": 5, "per_call": "1"}}},
			"calls": 1, "compute_ms_per_call": 1}, 400, "pricing.tiers[1].up_to"},
		{"bad currency", map[string]any{"pricing": map[string]any{"currency": "JPY", "per_call": "1", "per_compute_ms": "0"}, "calls": 1, "compute_ms_per_call": 1}, 400, "pricing.currency"},
		{"unknown field", map[string]any{"pricing": flat, "calls": 1, "compute_ms_per_call": 1, "discount": "0.5"}, 400, "discount"},
		{"pricing and function", map[string]any{"pricing": flat, "function": "acme/scan", "calls": 1, "compute_ms_per_call": 1}, 400, "function"},
		{"function not vendor/name", map[string]any{"function": "scan", "calls": 1, "compute_ms_per_call": 1}, 400, "function"},
		{"version without function", map[string]any{"pricing": flat, "version": 1, "calls": 1, "compute_ms_per_call": 1}, 400, "version"},
		{"unknown function", map[string]any{"function": "acme/nope", "calls": 1, "compute_ms_per_call": 1}, 404, ""},
		{"unpublished version", map[string]any{"function": "acme/scan", "version": 2, "calls": 1, "compute_ms_per_call": 1}, 404, ""},
	}
	for _, c := range bad {
		a := h.do("POST", "/api/v1/pricing/quote", "", c.body)
		if a.status != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, a.status, c.status, a.raw)
			continue
		}
		if c.field != "" {
			errs, _ := a.body["errors"].(map[string]any)
			if _, ok := errs[c.field]; !ok {
				t.Errorf("%s: errors %v do not name %q", c.name, errs, c.field)
			}
		}
	}
}
