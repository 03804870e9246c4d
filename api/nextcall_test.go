package api_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/metering"
)

// fakePositions answers set call counts per (consumer, function) and
// remembers what it was asked.
type fakePositions struct {
	mu    sync.Mutex
	calls map[[2]string]int64
	asked []time.Time
}

func (f *fakePositions) CallsThisMonth(_ context.Context, consumer, function string, at time.Time) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, at)
	return f.calls[[2]string{consumer, function}], nil
}

func (f *fakePositions) set(consumer, function string, n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[[2]string{consumer, function}] = n
}

// TestNextCallCost: the next-call route prices the caller's next call at its
// position with catalog's rule, across the free tier's boundary and graduated
// tiers; it needs a session and a published function.
func TestNextCallCost(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			pos := &fakePositions{calls: map[[2]string]int64{}}
			h := newHarness(t, b, func(d *api.Deps) { d.CallPositions = pos })
			testNextCallCost(t, h, pos)
		})
	}
}

func testNextCallCost(t *testing.T, h *harness, pos *fakePositions) {
	vtok, flatID := h.vendor("v@example.com", "acme")
	h.must(200, h.do("POST", "/api/v1/functions/"+flatID+"/publish", vtok, map[string]any{"version": 1}))
	tiered := validFunction("tiered")
	tiered["pricing"] = map[string]any{"currency": "EUR", "per_compute_ms": "0.000001", "free_calls_per_month": 10,
		"tiers": []any{map[string]any{"up_to": 100, "per_call": "0.01"}, map[string]any{"up_to": 0, "per_call": "0.001"}}}
	tiered["timeout_ms"] = 1000
	tieredID := h.must(201, h.do("POST", "/api/v1/functions", vtok, tiered)).str("id")
	h.must(200, h.do("POST", "/api/v1/functions/"+tieredID+"/publish", vtok, map[string]any{"version": 1}))

	tok := h.signup("c@example.com")
	me := h.must(200, h.do("GET", "/api/v1/me", tok, nil)).str("id")

	type want struct {
		position, freeLeft                     float64
		perCall, costAt1ms, worstCase, formula string
	}
	cases := []struct {
		name, path, fn string
		calls          int64
		want           want
	}{
		// validFunction: 0.0001 per call, 0.000002 per ms, 100 free, 5000 ms.
		{"first call free", "acme/scan", flatID, 0,
			want{0, 100, "0", "0.000002", "0.01", "free (100 free calls left this month) + 0.000002 USD per compute-ms"}},
		{"last free call", "acme/scan", flatID, 99,
			want{99, 1, "0", "0.000002", "0.01", "free (1 free call left this month) + 0.000002 USD per compute-ms"}},
		{"first paid call", "acme/scan", flatID, 100,
			want{100, 0, "0.0001", "0.000102", "0.0101", "0.0001 USD per call + 0.000002 USD per compute-ms; no free calls left this month (100 used)"}},
		// tiered: 10 free, billable calls 1..100 at 0.01, then 0.001.
		{"last call of tier 1", "acme/tiered", tieredID, 109,
			want{109, 0, "0.01", "0.010001", "0.011", "0.01 EUR per call (tier of billable calls 1 to 100) + 0.000001 EUR per compute-ms; no free calls left this month (10 used)"}},
		{"first call of tier 2", "acme/tiered", tieredID, 110,
			want{110, 0, "0.001", "0.001001", "0.002", "0.001 EUR per call (tier from billable call 101 on) + 0.000001 EUR per compute-ms; no free calls left this month (10 used)"}},
		{"free in tiered pricing", "acme/tiered", tieredID, 3,
			want{3, 7, "0", "0.000001", "0.001", "free (7 free calls left this month) + 0.000001 EUR per compute-ms"}},
	}
	for _, c := range cases {
		pos.set(me, c.fn, c.calls)
		a := h.must(200, h.do("GET", "/api/v1/catalog/"+c.path+"/next-call", tok, nil))
		got := want{a.body["position"].(float64), a.body["free_calls_left"].(float64), a.str("per_call"), a.str("cost_at_1ms"), a.str("worst_case"), a.str("formula")}
		if got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
		if a.str("function") != c.path || a.body["version"] != float64(1) {
			t.Errorf("%s: function %q version %v", c.name, a.str("function"), a.body["version"])
		}
	}
	// Another consumer's count is its own.
	other := h.signup("d@example.com")
	if a := h.must(200, h.do("GET", "/api/v1/catalog/acme/scan/next-call", other, nil)); a.body["position"] != float64(0) {
		t.Errorf("other consumer: position %v, want 0", a.body["position"])
	}
	pos.mu.Lock()
	if at := pos.asked[len(pos.asked)-1]; !at.Equal(h.clock.Now()) {
		t.Errorf("counted at %v, want the clock's now %v", at, h.clock.Now())
	}
	pos.mu.Unlock()

	if a := h.must(404, h.do("GET", "/api/v1/catalog/acme/nope/next-call", tok, nil)); a.str("code") != "not_found" {
		t.Errorf("unknown function: code %q", a.str("code"))
	}
	h.must(200, h.do("POST", "/api/v1/functions/"+tieredID+"/unpublish", vtok, nil))
	h.must(404, h.do("GET", "/api/v1/catalog/acme/tiered/next-call", tok, nil))
	h.must(401, h.do("GET", "/api/v1/catalog/acme/scan/next-call", "", nil))
}

// usagePeriods answers fixed usage hours (api.UsageHours), filtered by
// consumer, function and hour as billing.UsageTable does, keys kept apart
// only when the filter asks.
type usagePeriods struct {
	periods []billing.UsageHour
	filters []billing.UsageFilter
}

func (u *usagePeriods) Hours(_ context.Context, f billing.UsageFilter) ([]billing.UsageHour, error) {
	u.filters = append(u.filters, f)
	var out []billing.UsageHour
	for _, p := range u.periods {
		in := len(f.FunctionIDs) == 0
		for _, id := range f.FunctionIDs {
			in = in || id == p.FunctionID
		}
		if in && (f.ConsumerID == "" || f.ConsumerID == p.ConsumerID) && !p.Hour.Before(f.From) && (f.To.IsZero() || p.Hour.Before(f.To)) {
			if !f.PerKey {
				p.KeyID = ""
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func (u *usagePeriods) Latency(context.Context, string, time.Time, time.Time) ([]metering.LatencyHour, error) {
	return nil, nil
}

// TestCallsThisMonthFromUsage: without Deps.CallPositions the position is
// the consumer's billable calls of the function in the month, from the
// usage the report reads (refused calls take no position; other months,
// functions and consumers do not count).
func TestCallsThisMonthFromUsage(t *testing.T) {
	mar := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	store := &usagePeriods{periods: []billing.UsageHour{
		{Hour: mar.Add(-time.Hour), ConsumerID: "c1", FunctionID: "f1", Version: 1, Calls: 50, BillableCalls: 50},
		{Hour: mar, ConsumerID: "c1", FunctionID: "f1", Version: 1, Calls: 10, BillableCalls: 7},
		{Hour: mar.Add(30 * time.Hour), ConsumerID: "c1", FunctionID: "f1", Version: 2, Calls: 5, BillableCalls: 5},
		{Hour: mar.Add(30 * time.Hour), ConsumerID: "c1", FunctionID: "f2", Version: 1, Calls: 100, BillableCalls: 100},
		{Hour: mar.Add(30 * time.Hour), ConsumerID: "c2", FunctionID: "f1", Version: 1, Calls: 100, BillableCalls: 100},
	}}
	u := api.NewUsageReport(store, store, nil, nil)
	n, err := u.CallsThisMonth(context.Background(), "c1", "f1", mar.Add(40*time.Hour))
	if err != nil || n != 12 {
		t.Fatalf("CallsThisMonth = %d, %v; want 12", n, err)
	}
	if f := store.filters[0]; !f.From.Equal(mar) || !f.To.Equal(mar.AddDate(0, 1, 0)) {
		t.Errorf("filter %+v, want March", f)
	}
}

// TestNextCallFallsBackToUsage: with no CallPositions the route counts
// through the usage reader; with neither it is not served.
func TestNextCallFallsBackToUsage(t *testing.T) {
	b := testenv.Backends()[0]
	store := &usagePeriods{}
	h := newHarness(t, b, func(d *api.Deps) { d.Usage = api.NewUsageReport(store, store, nil, nil) })
	vtok, id := h.vendor("v@example.com", "acme")
	h.must(200, h.do("POST", "/api/v1/functions/"+id+"/publish", vtok, map[string]any{"version": 1}))
	tok := h.signup("c@example.com")
	me := h.must(200, h.do("GET", "/api/v1/me", tok, nil)).str("id")
	store.periods = []billing.UsageHour{{Hour: h.clock.Now().Truncate(time.Hour), ConsumerID: me, FunctionID: id, Version: 1, Calls: 120, BillableCalls: 120}}
	a := h.must(200, h.do("GET", "/api/v1/catalog/acme/scan/next-call", tok, nil))
	if a.body["position"] != float64(120) || a.str("per_call") != "0.0001" {
		t.Errorf("fallback: %s", a.raw)
	}

	none := newHarness(t, b, func(d *api.Deps) { d.Usage = nil })
	none.must(404, none.do("GET", "/api/v1/catalog/acme/scan/next-call", none.signup("c@example.com"), nil))
}
