package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/usage"
)

// The fakes below stand in for the SQL and Redis implementations, which are
// tested in their own packages. They keep the same contracts: ENOTFOUND
// errors, change times compared with "at or after", honest counting.

// fakeKeys is an in-memory KeyStore that counts its lookups.
type fakeKeys struct {
	clock   fnmarket.Clock
	mu      sync.Mutex
	keys    map[string]gateway.Key // by hash
	changed map[string]time.Time
	lookups int
}

var _ gateway.KeyStore = (*fakeKeys)(nil)

func newFakeKeys(clock fnmarket.Clock) *fakeKeys {
	return &fakeKeys{clock: clock, keys: map[string]gateway.Key{}, changed: map[string]time.Time{}}
}

func (f *fakeKeys) add(raw string, k gateway.Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := fnmarket.HashAPIKey(raw)
	f.keys[h] = k
	f.changed[h] = f.clock.Now()
}

func (f *fakeKeys) revoke(raw string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := fnmarket.HashAPIKey(raw)
	k := f.keys[h]
	k.Revoked = true
	f.keys[h] = k
	f.changed[h] = f.clock.Now()
}

func (f *fakeKeys) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

func (f *fakeKeys) KeyByHash(ctx context.Context, hash string) (gateway.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	k, ok := f.keys[hash]
	if !ok {
		return gateway.Key{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such key")
	}
	return k, nil
}

func (f *fakeKeys) KeysChangedSince(ctx context.Context, since time.Time) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for h, at := range f.changed {
		if !at.Before(since) {
			out = append(out, h)
		}
	}
	return out, nil
}

// fakeRoutes is an in-memory RouteStore over functions with versions.
type fakeRoutes struct {
	clock   fnmarket.Clock
	mu      sync.Mutex
	fns     map[gateway.FunctionRef]*fakeFunction
	changed map[gateway.FunctionRef]time.Time
	lookups int
}

type fakeFunction struct {
	id        string
	versions  map[int]catalog.Version
	published int // 0: unpublished
}

var _ gateway.RouteStore = (*fakeRoutes)(nil)

func newFakeRoutes(clock fnmarket.Clock) *fakeRoutes {
	return &fakeRoutes{clock: clock, fns: map[gateway.FunctionRef]*fakeFunction{}, changed: map[gateway.FunctionRef]time.Time{}}
}

// testPricing is 0.0001 per call and 0.000002 per compute-ms, no free calls.
func testPricing() catalog.Pricing {
	return catalog.Pricing{
		Currency:     "USD",
		PerCall:      decimal.RequireFromString("0.0001"),
		PerComputeMs: decimal.RequireFromString("0.000002"),
	}
}

// addVersion adds version v of vendor/name with an HTTP backend at url, and
// publishes it when publish is set.
func (f *fakeRoutes) addVersion(vendor, name string, v int, url string, publish bool, edit ...func(*catalog.Version)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := gateway.FunctionRef{VendorSlug: vendor, Name: name}
	fn := f.fns[ref]
	if fn == nil {
		fn = &fakeFunction{id: "fn-" + vendor + "-" + name, versions: map[int]catalog.Version{}}
		f.fns[ref] = fn
	}
	ver := catalog.Version{
		FunctionID: fn.id,
		Version:    v,
		Backend:    catalog.Backend{Type: gateway.BackendHTTP, Spec: backend.Spec(map[string]string{"url": url})},
		Pricing:    testPricing(),
		TimeoutMs:  10_000,
	}
	for _, e := range edit {
		e(&ver)
	}
	if publish {
		ver.EverPublished = true
		fn.published = v
	}
	fn.versions[v] = ver
	f.changed[ref] = f.clock.Now()
}

func (f *fakeRoutes) unpublish(vendor, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ref := gateway.FunctionRef{VendorSlug: vendor, Name: name}
	f.fns[ref].published = 0
	f.changed[ref] = f.clock.Now()
}

func (f *fakeRoutes) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

func (f *fakeRoutes) Route(ctx context.Context, vendor, name string, version int) (catalog.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	notFound := fnmarket.Errorf(fnmarket.ENOTFOUND, "no such function")
	fn := f.fns[gateway.FunctionRef{VendorSlug: vendor, Name: name}]
	if fn == nil {
		return catalog.Route{}, notFound
	}
	if version == 0 {
		if fn.published == 0 {
			return catalog.Route{}, notFound
		}
		version = fn.published
	}
	v, ok := fn.versions[version]
	if !ok || !v.EverPublished {
		return catalog.Route{}, notFound
	}
	return catalog.Route{VendorSlug: vendor, VendorID: "vendor-" + vendor, Function: name, FunctionID: fn.id, Version: v}, nil
}

func (f *fakeRoutes) FunctionsChangedSince(ctx context.Context, since time.Time) ([]gateway.FunctionRef, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gateway.FunctionRef
	for ref, at := range f.changed {
		if !at.Before(since) {
			out = append(out, ref)
		}
	}
	return out, nil
}

// fakeMeter keeps every recorded call, and running totals per key (spend)
// and per consumer and function (calls this month) as the Redis counters do.
type fakeMeter struct {
	mu    sync.Mutex
	calls []usage.Call
	spent map[string]decimal.Decimal // by key ID
	count map[[2]string]int64        // by consumer ID, function ID
}

var _ gateway.Meter = (*fakeMeter)(nil)

func newFakeMeter() *fakeMeter {
	return &fakeMeter{spent: map[string]decimal.Decimal{}, count: map[[2]string]int64{}}
}

func (m *fakeMeter) Record(c usage.Call) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, c)
	if c.Billable {
		m.spent[c.KeyID] = m.spent[c.KeyID].Add(callCost(c))
		m.count[[2]string{c.ConsumerID, c.FunctionID}]++
	}
}

func (m *fakeMeter) recorded() []usage.Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]usage.Call(nil), m.calls...)
}

// callCost prices one recorded call with catalog's rule, as the meter does.
func callCost(c usage.Call) decimal.Decimal {
	return c.Pricing.CallCost(c.CallsBefore, c.ComputeMs)
}

func (m *fakeMeter) spentBy(keyID string) decimal.Decimal {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spent[keyID]
}

func (m *fakeMeter) callsOf(consumerID, functionID string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.count[[2]string{consumerID, functionID}]
}

// fakeAdmitter is a fixed one-second-window rate limiter per key plus a spend
// cap checked against what the meter recorded.
type fakeAdmitter struct {
	meter      *fakeMeter
	mu         sync.Mutex
	windows    map[string]*window
	settled    []settlement
	failSettle bool
	admits     int // Admit calls
}

// admitted counts the calls Admit was asked about.
func (a *fakeAdmitter) admitted() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.admits
}

type window struct {
	start time.Time
	n     int
}

var _ gateway.Admitter = (*fakeAdmitter)(nil)

func (a *fakeAdmitter) Admit(ctx context.Context, req usage.AdmissionRequest) (usage.Admission, error) {
	a.mu.Lock()
	a.admits++
	a.mu.Unlock()
	adm := usage.Admission{Allowed: true, CallsBefore: a.meter.callsOf(req.Caller.ConsumerID, req.FunctionID)}
	switch req.Caller.Account.Standing {
	case usage.StandingSuspended:
		return usage.Admission{Reason: fnmarket.EPAYMENTREQUIRED}, nil
	case "unreachable-redis":
		return usage.Admission{Reason: fnmarket.EUNAVAILABLE, Degraded: true}, nil
	}
	if limit := req.Caller.RateLimitPerSecond; limit > 0 {
		a.mu.Lock()
		start := req.At.Truncate(time.Second)
		w := a.windows[req.Caller.KeyID]
		if w == nil || !w.start.Equal(start) {
			w = &window{start: start}
			a.windows[req.Caller.KeyID] = w
		}
		reset := start.Add(time.Second).Sub(req.At)
		adm.Limit, adm.Reset = limit, reset
		if w.n >= limit {
			a.mu.Unlock()
			adm.Allowed, adm.Reason, adm.RetryAfter = false, fnmarket.ERATELIMITED, reset
			return adm, nil
		}
		w.n++
		adm.Remaining = limit - w.n
		a.mu.Unlock()
	}
	if c := req.Caller.MonthlySpendCap; c != nil {
		if a.meter.spentBy(req.Caller.KeyID).GreaterThanOrEqual(*c) {
			adm.Allowed, adm.Reason = false, fnmarket.ESPENDCAP
		} else {
			// A capped call holds its worst case, as metering's does.
			adm.Hold = req.Pricing.CallCost(adm.CallsBefore, req.TimeoutMs)
		}
	}
	return adm, nil
}

// Settle records the settlement; it fails when failSettle is set, as
// when Redis is away at the end of a call.
func (a *fakeAdmitter) Settle(_ context.Context, req usage.AdmissionRequest, adm usage.Admission, reached bool, cost decimal.Decimal) (decimal.Decimal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.settled = append(a.settled, settlement{id: req.InvocationID, reached: reached, cost: cost})
	if a.failSettle {
		return decimal.Zero, errors.New("redis is away")
	}
	return decimal.Zero, nil
}

type settlement struct {
	id      string
	reached bool
	cost    decimal.Decimal
}

func (a *fakeAdmitter) settlements() []settlement {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]settlement(nil), a.settled...)
}

// env is one gateway served over real HTTP, with its fakes.
type env struct {
	t        testing.TB
	keys     *fakeKeys
	routes   *fakeRoutes
	meter    *fakeMeter
	admitter *fakeAdmitter
	reg      *prometheus.Registry
	gw       *gateway.Gateway
	srv      *httptest.Server
	client   *http.Client
}

const testKey = "fnm_test_0123456789abcdef0123456789abcdef"

type envOptions struct {
	cfg    gateway.Config
	keys   *fakeKeys
	routes *fakeRoutes
	start  bool // run the invalidation poller
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.cfg.Clock == nil {
		o.cfg.Clock = fnmarket.SystemClock{}
	}
	if o.keys == nil {
		o.keys = newFakeKeys(o.cfg.Clock)
		o.keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1"})
	}
	if o.routes == nil {
		o.routes = newFakeRoutes(o.cfg.Clock)
	}
	reg := prometheus.NewRegistry()
	o.cfg.Registerer = reg
	meter := newFakeMeter()
	admitter := &fakeAdmitter{meter: meter, windows: map[string]*window{}}
	gw, err := gateway.New(o.cfg, o.keys, o.routes, admitter, meter)
	if err != nil {
		t.Fatal(err)
	}
	if o.start {
		gw.Start(context.Background())
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/invoke/", gw)
	srv := httptest.NewServer(mux)
	client := srv.Client()
	t.Cleanup(func() {
		client.CloseIdleConnections()
		srv.Close()
		_ = gw.Close()
	})
	return &env{t: t, keys: o.keys, routes: o.routes, meter: meter, admitter: admitter, reg: reg, gw: gw, srv: srv, client: client}
}

// do sends a call with the test key (unless the headers say otherwise).
func (e *env) do(method, path string, body io.Reader, header http.Header) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if header == nil {
		header = http.Header{"Authorization": {"Bearer " + testKey}}
	}
	for k, vv := range header {
		req.Header[k] = vv
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// get sends a GET with the test key and returns the status and whole body.
func (e *env) get(path string) (*http.Response, string) {
	e.t.Helper()
	resp := e.do(http.MethodGet, path, nil, nil)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

// upstream starts a function server.
func upstream(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
