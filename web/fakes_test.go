package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
)

// fakeGateway stands in for the gateway, metering and billing, which other
// packages provide: it authenticates X-API-Key against the real accounts
// store (so revocation is real), routes with the real catalog store, proxies
// to the function's upstream, answers X-Compute-Ms and X-Invocation-Id, and
// remembers each billed call so it can serve usage, latency, the upcoming
// invoice and statements through the API's UsageReader and BillingReader.
type fakeGateway struct {
	accounts *accounts.Store
	catalog  *catalogstore.Store
	client   *http.Client

	mu    sync.Mutex
	calls []billedCall
}

type billedCall struct {
	at          time.Time
	consumerID  string
	keyID       string
	vendorID    string
	functionID  string
	function    string // vendor/name
	version     int
	pricing     catalog.Pricing
	computeMs   int64
	status      int
	cost        decimal.Decimal
	callsBefore int64
}

var (
	_ api.UsageReader   = (*fakeGateway)(nil)
	_ api.BillingReader = (*fakeGateway)(nil)
	_ http.Handler      = (*fakeGateway)(nil)
)

func newFakeGateway(a *accounts.Store, c *catalogstore.Store) *fakeGateway {
	return &fakeGateway{accounts: a, catalog: c, client: &http.Client{Timeout: 10 * time.Second}}
}

func (g *fakeGateway) billed() []billedCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key := r.Header.Get("X-API-Key")
	if key == "" {
		key = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	if key == "" {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "send an API key in X-API-Key"))
		return
	}
	k, err := g.accounts.KeyByHash(ctx, fnmarket.HashAPIKey(key))
	if err != nil || k.Revoked {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "unknown or revoked API key"))
		return
	}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/v1/invoke/"), "/", 3)
	if len(parts) < 2 {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such function"))
		return
	}
	route, err := g.catalog.Route(ctx, parts[0], parts[1], 0)
	if err != nil {
		fnmarket.WriteProblem(w, err)
		return
	}
	start := time.Now()
	var spec struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(route.Version.Backend.Spec, &spec); err != nil {
		fnmarket.WriteProblem(w, &fnmarket.Error{Code: fnmarket.EINTERNAL, Err: err})
		return
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, spec.URL, r.Body)
	if err != nil {
		fnmarket.WriteProblem(w, &fnmarket.Error{Code: fnmarket.EINTERNAL, Err: err})
		return
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	res, err := g.client.Do(req)
	if err != nil {
		fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.EUNREACHABLE, "the function could not be reached"))
		return
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	ms := max(1, int64(math.Ceil(float64(time.Since(start).Microseconds())/1000)))

	g.mu.Lock()
	var before int64
	for _, c := range g.calls {
		if c.consumerID == k.AccountID && c.functionID == route.FunctionID {
			before++
		}
	}
	g.calls = append(g.calls, billedCall{at: time.Now().UTC(), consumerID: k.AccountID, keyID: k.ID, vendorID: route.VendorID, functionID: route.FunctionID,
		function: route.VendorSlug + "/" + route.Function, version: route.Version.Version, pricing: route.Version.Pricing, computeMs: ms,
		status: res.StatusCode, cost: route.Version.Pricing.CallCost(before, ms), callsBefore: before})
	n := len(g.calls)
	g.mu.Unlock()

	w.Header().Set("Content-Type", res.Header.Get("Content-Type"))
	w.Header().Set("X-Invocation-Id", fmt.Sprintf("inv_test_%d", n))
	w.Header().Set("X-Compute-Ms", strconv.FormatInt(ms, 10))
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(body)
}

func truncate(t time.Time, granularity string) time.Time {
	if granularity == "hour" {
		return t.Truncate(time.Hour)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Usage sums billed calls per function, version and period.
func (g *fakeGateway) Usage(_ context.Context, q api.UsageQuery) ([]api.UsageRow, error) {
	type key struct {
		fn      string
		version int
		period  time.Time
	}
	rows := map[key]*api.UsageRow{}
	costs := map[key]decimal.Decimal{}
	for _, c := range g.billed() {
		if (q.ConsumerID != "" && c.consumerID != q.ConsumerID) || (q.VendorID != "" && c.vendorID != q.VendorID) || c.at.Before(q.From) || !c.at.Before(q.To) {
			continue
		}
		k := key{c.functionID, c.version, truncate(c.at, q.Granularity)}
		r := rows[k]
		if r == nil {
			r = &api.UsageRow{Function: c.function, FunctionID: c.functionID, Version: c.version, PeriodStart: k.period.Format(time.RFC3339), Currency: c.pricing.Currency}
			rows[k] = r
		}
		r.Calls++
		r.ComputeMs += c.computeMs
		if c.status >= 500 {
			r.Errors++
		}
		costs[k] = costs[k].Add(c.cost)
	}
	out := make([]api.UsageRow, 0, len(rows))
	for k, r := range rows {
		r.Cost = costs[k].String()
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeriodStart+out[i].Function < out[j].PeriodStart+out[j].Function })
	return out, nil
}

// Latency reports nearest-rank p50 and p99 compute-ms per period.
func (g *fakeGateway) Latency(_ context.Context, functionID string, from, to time.Time, granularity string) ([]api.LatencyPoint, error) {
	by := map[time.Time][]int64{}
	for _, c := range g.billed() {
		if c.functionID == functionID && !c.at.Before(from) && c.at.Before(to) {
			p := truncate(c.at, granularity)
			by[p] = append(by[p], c.computeMs)
		}
	}
	var out []api.LatencyPoint
	for p, ms := range by {
		slices.Sort(ms)
		rank := func(q float64) int64 { return ms[max(0, int(math.Ceil(q*float64(len(ms))))-1)] }
		out = append(out, api.LatencyPoint{PeriodStart: p.Format(time.RFC3339), Calls: int64(len(ms)), P50Ms: rank(0.5), P99Ms: rank(0.99)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PeriodStart < out[j].PeriodStart })
	return out, nil
}

func monthStart(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// pastInvoice is a canned, paid invoice for last month, so the invoices list
// has something to show: a usage line and an adjustment for late usage of
// the month before (adjustmentMonth).
func pastInvoice() billing.Invoice {
	start := monthStart(time.Now().UTC()).AddDate(0, -1, 0)
	return billing.Invoice{ID: "inv_past_1", PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0), Status: billing.StatusPaid, Currency: "USD",
		Subtotal: money("12.34"), Total: money("12.34"), TotalCents: 1234, StripeInvoiceID: "in_test_1", SyncStatus: billing.SyncSynced,
		UsageThrough: start.AddDate(0, 1, 0), CreatedAt: start.AddDate(0, 1, 0),
		Lines: []billing.InvoiceLine{
			{Kind: billing.LineUsage, PeriodStart: start, Function: "acme/legacy", Version: 1, Calls: 118_400, BillableCalls: 118_400, Amount: money("11.84")},
			{Kind: billing.LineAdjustment, PeriodStart: adjustmentMonth(), Function: "acme/legacy", Version: 1, Calls: 5_000, BillableCalls: 5_000, Amount: money("0.50")},
		}}
}

func money(s string) billing.Money { return billing.NewMoney(decimal.RequireFromString(s)) }

// adjustmentMonth is the earlier month whose late usage the past invoice
// adjusts.
func adjustmentMonth() time.Time { return monthStart(time.Now().UTC()).AddDate(0, -2, 0) }

// fakeBackends prepares wasm backends as the wasm package's preparer does,
// without compiling: the module must be standard base64 of bytes starting
// with \0asm, the memory limit 0 to 4096 pages. Unlike the real one it
// reports every bad field at once. It remembers the last module it took.
type fakeBackends struct {
	mu   sync.Mutex
	last []byte
}

var _ backend.Kind = (*fakeBackends)(nil)

func (f *fakeBackends) Type() string { return "wasm" }

func (f *fakeBackends) Schema() backend.Schema {
	return backend.Schema{
		Input:  map[string]any{"module_base64": map[string]any{"type": "string"}, "memory_pages": map[string]any{"type": "integer", "format": "int64"}},
		Stored: map[string]any{"module_sha256": map[string]any{"type": "string"}, "memory_pages": map[string]any{"type": "integer", "format": "int64"}},
	}
}

func (f *fakeBackends) Prepare(_ context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	var in struct {
		Type         string `json:"type"`
		ModuleBase64 string `json:"module_base64"`
		MemoryPages  int    `json:"memory_pages"`
	}
	if !backend.Decode(v, doc, &in) {
		return nil
	}
	fields := map[string]string{}
	code, err := base64.StdEncoding.DecodeString(in.ModuleBase64)
	switch {
	case in.ModuleBase64 == "":
		fields["backend.module_base64"] = "is required for wasm backends"
	case err != nil:
		fields["backend.module_base64"] = "must be the module's bytes in standard base64"
	case len(code) < 8 || !bytes.HasPrefix(code, []byte("\x00asm")):
		fields["backend.module_base64"] = "the module is not a WebAssembly binary module (it must start with \\0asm)"
	}
	if in.MemoryPages < 0 || in.MemoryPages > 4096 {
		fields["backend.memory_pages"] = "must be between 0 (the default) and 4096 pages of 64 KiB"
	}
	if len(fields) > 0 {
		for k, m := range fields {
			v.Add(k, m)
		}
		return nil
	}
	f.mu.Lock()
	f.last = code
	f.mu.Unlock()
	sum := sha256.Sum256(code)
	return backend.Spec(map[string]any{"module_sha256": hex.EncodeToString(sum[:]), "memory_pages": in.MemoryPages})
}

func (f *fakeBackends) lastModule() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (g *fakeGateway) Invoices(context.Context, string) ([]billing.Invoice, error) {
	return []billing.Invoice{pastInvoice()}, nil
}

func (g *fakeGateway) Invoice(_ context.Context, _ string, id string) (billing.Invoice, error) {
	if p := pastInvoice(); id == p.ID {
		return p, nil
	}
	return billing.Invoice{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no invoice %q among yours", id)
}

// Upcoming prices this month's calls per function version, each line rounded
// half-even to cents once, as billing does.
func (g *fakeGateway) Upcoming(_ context.Context, consumerID string) ([]billing.Invoice, error) {
	start := monthStart(time.Now().UTC())
	type key struct {
		fn      string
		version int
	}
	lines := map[key]*billing.InvoiceLine{}
	exact := map[key]decimal.Decimal{}
	var order []key
	for _, c := range g.billed() {
		if c.consumerID != consumerID || c.at.Before(start) {
			continue
		}
		k := key{c.function, c.version}
		if lines[k] == nil {
			lines[k] = &billing.InvoiceLine{Kind: billing.LineUsage, PeriodStart: start, Function: c.function, Version: c.version}
			order = append(order, k)
		}
		l := lines[k]
		l.Calls++
		l.ComputeMs += c.computeMs
		// The call at its position in the month, by catalog's one rule.
		priced, err := catalog.PriceMonth(map[int]catalog.Pricing{c.version: c.pricing}, []catalog.UsageStep{
			{Hour: start, Version: c.version, Calls: c.callsBefore},
			{Hour: start.Add(time.Hour), Version: c.version, Calls: 1},
		})
		if err != nil {
			return nil, err
		}
		l.FreeCalls += priced[1].FreeCalls
		l.BillableCalls += priced[1].BillableCalls
		exact[k] = exact[k].Add(c.cost)
	}
	now := time.Now().UTC()
	inv := billing.Invoice{ID: billing.UpcomingID, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0), Status: billing.StatusPreview, Currency: "USD",
		SyncStatus: billing.SyncNone, UsageThrough: now, CreatedAt: now, Lines: []billing.InvoiceLine{}}
	total := decimal.Zero
	for _, k := range order {
		amt := exact[k].RoundBank(2)
		lines[k].Amount = billing.NewMoney(amt)
		total = total.Add(amt)
		inv.Lines = append(inv.Lines, *lines[k])
	}
	inv.Subtotal, inv.Total, inv.TotalCents = billing.NewMoney(total), billing.NewMoney(total), total.Shift(2).IntPart()
	return []billing.Invoice{inv}, nil
}

// Statements reports this month's gross for the vendor, with a 20% fee.
func (g *fakeGateway) Statements(_ context.Context, vendorID string) ([]billing.Statement, error) {
	gross := decimal.Zero
	for _, c := range g.billed() {
		if c.vendorID == vendorID {
			gross = gross.Add(c.cost)
		}
	}
	gross = gross.RoundBank(2)
	fee := gross.Mul(decimal.RequireFromString("0.2")).RoundBank(2)
	start := monthStart(time.Now().UTC())
	return []billing.Statement{
		{PeriodStart: start, Currency: "USD", Gross: billing.NewMoney(gross), PlatformFee: billing.NewMoney(fee), Net: billing.NewMoney(gross.Sub(fee)), PayoutStatus: billing.StatementPending},
		{PeriodStart: start.AddDate(0, -1, 0), Currency: "USD", Gross: money("120.00"), PlatformFee: money("24.00"), Net: money("96.00"), PayoutStatus: billing.StatementPaid},
	}, nil
}

// OnboardVendor sends the browser straight back, as if Stripe were done.
func (g *fakeGateway) OnboardVendor(_ context.Context, _ string, returnURL string) (string, error) {
	return returnURL + "?stripe=connected", nil
}
