package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/alerts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/webhooks"
)

const testSecret = "test-secret-test-secret-test-secret-0123"

type harness struct {
	t     *testing.T
	url   string
	srv   http.Handler
	clock *fnmarket.TestClock
	db    *database.DB
}

func newHarness(t *testing.T, b testenv.Backend, opts ...func(*api.Deps)) *harness {
	t.Helper()
	db := testenv.DB(t, b)
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
	deps := api.Deps{
		Accounts: accounts.NewStore(db, clock, bcrypt.MinCost),
		Catalog:  catalogstore.NewStore(db, clock),
		Sessions: api.NewSessions([]byte(testSecret), time.Hour, clock),
		Clock:    clock,
		// The real http kind: its private-address guard refuses 10.0.0.1.
		Backends:       mustKinds(t, gateway.HTTPKind{}),
		GatewayURL:     "http://gw.test",
		MaxUploadBytes: 8 << 20,
		// Usage and logs answer nothing here; their routes still check who
		// owns the function they name.
		Usage:        everything{},
		FunctionLogs: everything{},
		Audit:        audit.NewLog(db, clock),
		ErrorAlerts:  alerts.NewChecker(db, clock),
		// Outbound webhooks, private URLs refused.
		WebhookEndpoints: webhooks.NewStore(db, clock, false),
	}
	for _, o := range opts {
		o(&deps)
	}
	srv := api.NewServer(deps)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &harness{t: t, url: ts.URL, srv: srv, clock: clock, db: db}
}

func mustKinds(t *testing.T, kinds ...backend.Kind) *backend.Registry {
	t.Helper()
	r, err := backend.NewRegistry(kinds...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (a answer) str(path ...string) string {
	var v any = a.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (a answer) items() []map[string]any {
	raw, _ := a.body["items"].([]any)
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i], _ = r.(map[string]any)
	}
	return out
}

// do sends a request with an optional session token and JSON body (a string
// is sent as it is, anything else is encoded).
func (h *harness) do(method, path, token string, body any) answer {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, h.url+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	checkContract(h.t, req, res, raw)
	a := answer{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	if res.StatusCode >= 400 && res.Header.Get("Content-Type") != "application/problem+json" {
		h.t.Errorf("%s %s: error %d with Content-Type %q, want application/problem+json", method, path, res.StatusCode, res.Header.Get("Content-Type"))
	}
	return a
}

func (h *harness) must(want int, a answer) answer {
	h.t.Helper()
	if a.status != want {
		h.t.Fatalf("status %d, want %d: %s", a.status, want, a.raw)
	}
	return a
}

// signup creates an account and returns its session token.
func (h *harness) signup(email string) string {
	h.t.Helper()
	a := h.must(201, h.do("POST", "/api/v1/auth/signup", "", map[string]any{"email": email, "password": "correct horse battery", "name": "Test " + email}))
	return a.str("token")
}

// vendor signs up a vendor with one function and returns the token and the function id.
func (h *harness) vendor(email, slug string) (string, string) {
	h.t.Helper()
	tok := h.signup(email)
	h.must(201, h.do("POST", "/api/v1/vendor", tok, map[string]any{"slug": slug, "display_name": strings.ToUpper(slug)}))
	f := h.must(201, h.do("POST", "/api/v1/functions", tok, validFunction("scan")))
	return tok, f.str("id")
}

func validFunction(name string) map[string]any {
	return map[string]any{
		"name": name, "description": "Checks a file for malware",
		"backend":    map[string]any{"type": "http", "url": "https://scan.example.com/check"},
		"pricing":    map[string]any{"currency": "USD", "per_call": "0.0001", "per_compute_ms": "0.000002", "free_calls_per_month": 100},
		"timeout_ms": 5000,
	}
}
