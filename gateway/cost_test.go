package gateway_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/usage"
)

// TestXCostIsWhatIsRecorded: every billed answer says its exact cost, at its
// position (free calls first), and the meter records that same cost; a
// streamed answer sends the final figure as a trailer; a timeout is priced at
// timeout_ms.
func TestXCostIsWhatIsRecorded(t *testing.T) {
	t.Parallel()
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "part")
			_ = http.NewResponseController(w).Flush()
		}
		_, _ = io.WriteString(w, "ok")
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "priced", 1, up.URL, true, func(v *catalog.Version) {
		v.Pricing = catalog.Pricing{Currency: "EUR", PerCall: decimal.RequireFromString("0.25"),
			PerComputeMs: decimal.RequireFromString("0.000001"), FreeCallsPerMonth: 1}
	})
	var costs []string
	for _, path := range []string{"/", "/", "/stream"} {
		resp := e.do("GET", "/v1/invoke/acme/priced"+path, nil, nil)
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		cost := resp.Header.Get("X-Cost")
		if path == "/stream" {
			// Go's client moves announced trailers from the header to
			// resp.Trailer, filled once the body is read.
			cost = resp.Trailer.Get("X-Cost")
		}
		costs = append(costs, cost)
	}
	calls := e.meter.recorded()
	if len(calls) != 3 {
		t.Fatalf("recorded %d calls, want 3", len(calls))
	}
	for i, c := range calls {
		want := c.Pricing.CallCost(int64(i), c.ComputeMs)
		if !c.Cost.Equal(want) || costs[i] != want.String()+" EUR" {
			t.Errorf("call %d: X-Cost %q, recorded %s; want %s EUR (position %d, %d ms)", i, costs[i], c.Cost, want, i, c.ComputeMs)
		}
		if c.Free != (i == 0) || c.Settled {
			t.Errorf("call %d: free %v settled %v, want free only for the first, none settled (nothing held: the meter adds the spend)", i, c.Free, c.Settled)
		}
	}
	if !calls[0].Cost.LessThan(decimal.RequireFromString("0.25")) || calls[1].Cost.LessThan(decimal.RequireFromString("0.25")) {
		t.Errorf("costs %s, %s: want the first call free of the per-call price, the second not", calls[0].Cost, calls[1].Cost)
	}
	if s := e.admitter.settlements(); len(s) != 0 {
		t.Errorf("calls that held nothing were settled: %+v", s)
	}
}

// TestHeldCallIsSettled: a call that holds its worst case (its key has a
// cap) is settled at its real cost before its answer ends.
func TestHeldCallIsSettled(t *testing.T) {
	t.Parallel()
	keys := newFakeKeys(fnmarket.SystemClock{})
	spendCap := decimal.RequireFromString("10")
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1", MonthlySpendCap: &spendCap})
	e := newEnv(t, envOptions{cfg: private(), keys: keys})
	e.routes.addVersion("acme", "greet", 1, echoUpstream(t, "hi").URL, true)
	for range 2 {
		if resp, _ := e.get("/v1/invoke/acme/greet"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	calls, s := e.meter.recorded(), e.admitter.settlements()
	if len(calls) != 2 || len(s) != 2 {
		t.Fatalf("recorded %d calls, %d settlements; want 2 and 2", len(calls), len(s))
	}
	for i, c := range calls {
		if !c.Settled || !s[i].reached || !s[i].cost.Equal(c.Cost) || s[i].id != c.InvocationID {
			t.Errorf("call %d: %+v settled as %+v; want settled, reached, at its cost", i, c, s[i])
		}
	}
}

// TestUnreachedCallIsSettledAtZero: a call that never reached the function
// is settled as such (its hold released, its position given back), and
// carries no X-Cost.
func TestUnreachedCallIsSettledAtZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "gone", 1, "http://127.0.0.1:1", true)
	resp := e.do("GET", "/v1/invoke/acme/gone", nil, nil)
	if resp.Header.Get("X-Cost") != "" {
		t.Errorf("an unbilled 502 says X-Cost %q", resp.Header.Get("X-Cost"))
	}
	wantProblem(t, resp, 502, fnmarket.EUNREACHABLE)
	s := e.admitter.settlements()
	if len(s) != 1 || s[0].reached || !s[0].cost.IsZero() {
		t.Fatalf("settlements %+v, want one, not reached, at zero", s)
	}
}

// TestUnsettledCallIsRecordedAsSuch: when the settlement cannot reach
// Redis, the call is still answered and recorded, marked unsettled, so the
// meter settles it.
func TestUnsettledCallIsRecordedAsSuch(t *testing.T) {
	t.Parallel()
	keys := newFakeKeys(fnmarket.SystemClock{})
	spendCap := decimal.RequireFromString("10")
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1", MonthlySpendCap: &spendCap})
	e := newEnv(t, envOptions{cfg: private(), keys: keys})
	e.admitter.failSettle = true
	e.routes.addVersion("acme", "greet", 1, echoUpstream(t, "hi").URL, true)
	if resp, body := e.get("/v1/invoke/acme/greet"); resp.StatusCode != 200 || body != "hi" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if calls := e.meter.recorded(); len(calls) != 1 || calls[0].Settled || len(e.admitter.settlements()) != 1 {
		t.Fatalf("recorded %+v after %d settlements, want one unsettled call after one failed settlement", calls, len(e.admitter.settlements()))
	}
}

// TestPaymentRefusals: a suspended account gets 402 payment_required with a
// link to pay; a call whose cap cannot be checked gets 503 to retry.
func TestPaymentRefusals(t *testing.T) {
	t.Parallel()
	keys := newFakeKeys(fnmarket.SystemClock{})
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1",
		Account: usage.AccountBilling{Standing: usage.StandingSuspended, PayURL: "https://portal.example/billing"}})
	const other = "fnm_test_ffffffffffffffffffffffffffffffff"
	keys.add(other, gateway.Key{ID: "key-2", ConsumerID: "consumer-2", Account: usage.AccountBilling{Standing: "unreachable-redis"}})
	e := newEnv(t, envOptions{cfg: private(), keys: keys})
	e.routes.addVersion("acme", "greet", 1, echoUpstream(t, "hi").URL, true)

	resp := e.do("GET", "/v1/invoke/acme/greet", nil, nil)
	if link := resp.Header.Get("Link"); link != `<https://portal.example/billing>; rel="payment"` {
		t.Errorf("Link = %q, want the portal's billing page", link)
	}
	wantProblem(t, resp, 402, fnmarket.EPAYMENTREQUIRED)
	resp = e.do("GET", "/v1/invoke/acme/greet", nil, http.Header{"Authorization": {"Bearer " + other}})
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	wantProblem(t, resp, 503, fnmarket.EUNAVAILABLE)
	if n := len(e.meter.recorded()); n != 0 {
		t.Errorf("refused calls recorded: %d", n)
	}
	if s := e.admitter.settlements(); len(s) != 0 {
		t.Errorf("refused calls settled: %+v", s)
	}
}
