package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

func TestAccountsVendorsFunctionsKeys(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b)
			tok := h.signup("Ada@Example.com")
			me := h.must(200, h.do("GET", "/api/v1/me", tok, nil))
			if got, want := me.str("email"), "ada@example.com"; got != want {
				t.Errorf("email %q, want %q", got, want)
			}
			if me.body["vendor"] != nil {
				t.Errorf("new account is a vendor: %v", me.body["vendor"])
			}
			h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": "wrong password!"}))
			h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "nobody@example.com", "password": "wrong password!"}))
			login := h.must(200, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ADA@example.com", "password": "correct horse battery"}))
			tok = login.str("token")

			// Not yet a vendor: function routes are forbidden.
			h.must(403, h.do("POST", "/api/v1/functions", tok, validFunction("scan")))
			v := h.must(201, h.do("POST", "/api/v1/vendor", tok, map[string]any{"slug": "acme-sec", "display_name": "Acme Security"}))
			if v.str("slug") != "acme-sec" {
				t.Errorf("vendor %v", v.body)
			}
			h.must(409, h.do("POST", "/api/v1/vendor", tok, map[string]any{"slug": "acme-two", "display_name": "Again"}))
			if h.must(200, h.do("GET", "/api/v1/me", tok, nil)).str("vendor", "slug") != "acme-sec" {
				t.Error("me does not show the vendor")
			}

			f := h.must(201, h.do("POST", "/api/v1/functions", tok, validFunction("malware-scan")))
			id := f.str("id")
			if f.body["published_version"] != nil {
				t.Errorf("new function is published: %v", f.body["published_version"])
			}
			h.must(409, h.do("POST", "/api/v1/functions", tok, validFunction("malware-scan")))
			if n := len(h.must(200, h.do("GET", "/api/v1/functions", tok, nil)).items()); n != 1 {
				t.Errorf("%d functions listed, want 1", n)
			}
			p := h.must(200, h.do("PATCH", "/api/v1/functions/"+id, tok, map[string]any{"description": "Now with **Markdown**"}))
			if p.str("description") != "Now with **Markdown**" {
				t.Errorf("description not changed: %v", p.body)
			}
			ver := h.must(201, h.do("POST", "/api/v1/functions/"+id+"/versions", tok, map[string]any{
				"backend": map[string]any{"type": "http", "url": "https://scan.example.com/v2"},
				"pricing": map[string]any{"per_call": "0.0002", "per_compute_ms": "0.0000021", "tiers": []any{
					map[string]any{"up_to": 100000, "per_call": "0.0002"}, map[string]any{"up_to": 0, "per_call": "0.0001"}}},
				"timeout_ms": 2000,
			}))
			if ver.body["version"] != float64(2) {
				t.Errorf("version %v, want 2", ver.body["version"])
			}
			h.must(400, h.do("POST", "/api/v1/functions/"+id+"/publish", tok, map[string]any{"version": 7}))
			pub := h.must(200, h.do("POST", "/api/v1/functions/"+id+"/publish", tok, map[string]any{"version": 2}))
			if pub.body["published_version"] != float64(2) {
				t.Errorf("published %v", pub.body["published_version"])
			}
			got := h.must(200, h.do("GET", "/api/v1/functions/"+id, tok, nil))
			vs, _ := got.body["versions"].([]any)
			if len(vs) != 2 {
				t.Fatalf("%d versions, want 2", len(vs))
			}
			v1 := vs[0].(map[string]any)
			if v1["backend"].(map[string]any)["url"] != "https://scan.example.com/check" {
				t.Errorf("version 1 changed: %v", v1)
			}

			// Catalog: public, searchable.
			cat := h.must(200, h.do("GET", "/api/v1/catalog?q=MALWARE", "", nil))
			if len(cat.items()) != 1 || cat.items()[0]["name"] != "malware-scan" || cat.items()[0]["published_version"] != float64(2) {
				t.Errorf("catalog search: %s", cat.raw)
			}
			if len(h.must(200, h.do("GET", "/api/v1/catalog?q=nothing-like-this", "", nil)).items()) != 0 {
				t.Error("search matched nothing-like-this")
			}
			one := h.must(200, h.do("GET", "/api/v1/catalog/acme-sec/malware-scan", "", nil))
			if !strings.Contains(one.str("curl"), "http://gw.test/v1/invoke/acme-sec/malware-scan") {
				t.Errorf("no curl example: %v", one.body)
			}
			h.must(200, h.do("POST", "/api/v1/functions/"+id+"/unpublish", tok, nil))
			h.must(404, h.do("GET", "/api/v1/catalog/acme-sec/malware-scan", "", nil))
			if len(h.must(200, h.do("GET", "/api/v1/catalog", "", nil)).items()) != 0 {
				t.Error("unpublished function still listed")
			}

			// API keys: the secret appears once.
			k := h.must(201, h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "drone fleet", "monthly_spend_cap": "25.00"}))
			secret := k.str("key")
			if !strings.HasPrefix(secret, "fnm_") || len(secret) < 40 || !strings.HasPrefix(secret, k.str("prefix")) {
				t.Errorf("key %q prefix %q", secret, k.str("prefix"))
			}
			if k.str("monthly_spend_cap") != "25.00" {
				t.Errorf("cap %q", k.str("monthly_spend_cap"))
			}
			ks := h.must(200, h.do("GET", "/api/v1/keys", tok, nil))
			if len(ks.items()) != 1 || ks.items()[0]["key"] != nil || strings.Contains(ks.raw, secret) {
				t.Errorf("key list shows the secret or is wrong: %s", ks.raw)
			}
			h.must(204, h.do("DELETE", "/api/v1/keys/"+k.str("id"), tok, nil))
			if h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()[0]["revoked_at"] == nil {
				t.Error("revoked key has no revoked_at")
			}
		})
	}
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b)
			h.signup("taken@example.com")
			tok, fid := h.vendor("vendor@example.com", "acme")
			fn := func(mut func(m map[string]any)) map[string]any {
				m := validFunction("fresh")
				mut(m)
				return m
			}
			cases := []struct {
				name, method, path string
				auth               bool
				body               any
				status             int
				code, field        string
			}{
				{"malformed json", "POST", "/api/v1/auth/signup", false, `{"email":`, 400, "invalid_input", ""},
				{"not an object", "POST", "/api/v1/auth/signup", false, `[1,2]`, 400, "invalid_input", ""},
				{"unknown field", "POST", "/api/v1/auth/signup", false, map[string]any{"email": "x@example.com", "password": "correct horse battery", "name": "X", "admin": true}, 400, "invalid_input", "admin"},
				{"not an email", "POST", "/api/v1/auth/signup", false, map[string]any{"email": "not-an-email", "password": "correct horse battery", "name": "X"}, 400, "invalid_input", "email"},
				{"duplicate email", "POST", "/api/v1/auth/signup", false, map[string]any{"email": "TAKEN@example.com", "password": "correct horse battery", "name": "X"}, 409, "conflict", "email"},
				{"weak password", "POST", "/api/v1/auth/signup", false, map[string]any{"email": "y@example.com", "password": "short", "name": "Y"}, 400, "invalid_input", "password"},
				{"common password", "POST", "/api/v1/auth/signup", false, map[string]any{"email": "y@example.com", "password": "password123", "name": "Y"}, 400, "invalid_input", "password"},
				{"bad slug", "POST", "/api/v1/vendor", true, map[string]any{"slug": "Acme Corp", "display_name": "A"}, 400, "invalid_input", "slug"},
				{"bad function name", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["name"] = "Bad_Name" }), 400, "invalid_input", "name"},
				{"negative price", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["pricing"].(map[string]any)["per_call"] = "-0.1" }), 400, "invalid_input", "pricing.per_call"},
				{"non-decimal price", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["pricing"].(map[string]any)["per_compute_ms"] = "1e-3" }), 400, "invalid_input", "pricing.per_compute_ms"},
				{"float price", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["pricing"].(map[string]any)["per_call"] = 0.1 }), 400, "invalid_input", "pricing.per_call"},
				{"timeout too long", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["timeout_ms"] = 10_000_000 }), 400, "invalid_input", "timeout_ms"},
				{"timeout zero", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["timeout_ms"] = 0 }), 400, "invalid_input", "timeout_ms"},
				{"bad backend url", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["backend"] = map[string]any{"type": "http", "url": "file:///etc/passwd"} }), 400, "invalid_input", "backend.url"},
				{"private backend", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["backend"] = map[string]any{"type": "http", "url": "http://10.0.0.1/x"} }), 400, "invalid_input", "backend.url"},
				{"unknown backend type", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["backend"] = map[string]any{"type": "ftp"} }), 400, "invalid_input", "backend.type"},
				{"bad tiers", "POST", "/api/v1/functions", true, fn(func(m map[string]any) {
					m["pricing"].(map[string]any)["tiers"] = []any{map[string]any{"up_to": 10, "per_call": "1"}, map[string]any{"up_to": 5, "per_call": "1"}}
				}), 400, "invalid_input", "pricing.tiers[1].up_to"},
				{"bad version payload", "POST", "/api/v1/functions/" + fid + "/versions", true, map[string]any{"backend": map[string]any{"type": "http", "url": "https://x.example.com"}, "pricing": map[string]any{"per_call": "abc", "per_compute_ms": "0"}}, 400, "invalid_input", "pricing.per_call"},
				{"unknown function", "GET", "/api/v1/functions/fn_nope", true, nil, 404, "not_found", ""},
				{"publish no version", "POST", "/api/v1/functions/" + fid + "/publish", true, map[string]any{}, 400, "invalid_input", "version"},
				{"unknown key", "DELETE", "/api/v1/keys/key_nope", true, nil, 404, "not_found", ""},
				{"key cap not decimal", "POST", "/api/v1/keys", true, map[string]any{"name": "k", "monthly_spend_cap": "lots"}, 400, "invalid_input", "monthly_spend_cap"},
				{"key cap zero", "POST", "/api/v1/keys", true, map[string]any{"name": "k", "monthly_spend_cap": "0"}, 400, "invalid_input", "monthly_spend_cap"},
				{"key without name", "POST", "/api/v1/keys", true, map[string]any{}, 400, "invalid_input", "name"},
				{"bad catalog limit", "GET", "/api/v1/catalog?limit=5000", false, nil, 400, "invalid_input", "limit"},
				{"no session", "GET", "/api/v1/me", false, nil, 401, "unauthenticated", ""},
				{"body over 1 MiB", "POST", "/api/v1/auth/signup", false, map[string]any{"email": "z@example.com", "password": "correct horse battery", "name": strings.Repeat("z", 2<<20)}, 413, "payload_too_large", ""},
				{"long description (uploads may be large)", "POST", "/api/v1/functions", true, fn(func(m map[string]any) { m["description"] = strings.Repeat("d", 2<<20) }), 400, "invalid_input", "description"},
			}
			for _, c := range cases {
				tk := ""
				if c.auth {
					tk = tok
				}
				a := h.do(c.method, c.path, tk, c.body)
				if a.status != c.status || a.str("code") != c.code {
					t.Errorf("%s: %d %q, want %d %q: %s", c.name, a.status, a.str("code"), c.status, c.code, a.raw)
					continue
				}
				if c.field != "" {
					errs, _ := a.body["errors"].(map[string]any)
					if _, ok := errs[c.field]; !ok {
						t.Errorf("%s: errors %v do not name %q", c.name, errs, c.field)
					}
				}
			}
			// Nothing was written by any of them.
			h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "x@example.com", "password": "correct horse battery"}))
			h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "y@example.com", "password": "correct horse battery"}))
			if n := len(h.must(200, h.do("GET", "/api/v1/functions", tok, nil)).items()); n != 1 {
				t.Errorf("%d functions after bad input, want 1", n)
			}
			if vs := h.must(200, h.do("GET", "/api/v1/functions/"+fid, tok, nil)).body["versions"].([]any); len(vs) != 1 {
				t.Errorf("%d versions after bad input, want 1", len(vs))
			}
			if n := len(h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()); n != 0 {
				t.Errorf("%d keys after bad input, want 0", n)
			}
			if h.must(200, h.do("GET", "/api/v1/me", tok, nil)).str("vendor", "slug") != "acme" {
				t.Error("vendor changed by bad input")
			}
		})
	}
}

func TestSessionTokensArePinnedAndChecked(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0])
	tok := h.signup("s@example.com")
	h.must(200, h.do("GET", "/api/v1/me", tok, nil))
	ses, err := api.NewSessions([]byte(testSecret), time.Hour, h.clock).Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.RegisteredClaims{Subject: ses.AccountID, Issuer: api.SessionIssuer, IssuedAt: jwt.NewNumericDate(h.clock.Now()), ExpiresAt: jwt.NewNumericDate(h.clock.Now().Add(time.Hour))}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, claims).SignedString([]byte(testSecret))
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("another-secret-another-secret-another"))
	expiredClaims := claims
	expiredClaims.ExpiresAt = jwt.NewNumericDate(h.clock.Now().Add(-time.Minute))
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, expiredClaims).SignedString([]byte(testSecret))
	noExp := claims
	noExp.ExpiresAt = nil
	noExpiry, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, noExp).SignedString([]byte(testSecret))
	parts := strings.Split(tok, ".")
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	stripped := header + "." + parts[1] + "."
	for name, bad := range map[string]string{"alg none": none, "alg none on a real token": stripped, "HS512": hs512, "wrong key": wrongKey,
		"expired": expired, "no expiry": noExpiry, "garbage": "abc.def.ghi"} {
		a := h.do("GET", "/api/v1/me", bad, nil)
		if a.status != 401 || a.str("code") != "unauthenticated" {
			t.Errorf("%s: %d %s, want 401 unauthenticated", name, a.status, a.raw)
		}
	}
	// The real token expires with the clock.
	h.clock.Advance(2 * time.Hour)
	if a := h.do("GET", "/api/v1/me", tok, nil); a.status != 401 {
		t.Errorf("token valid after expiry: %d", a.status)
	}
}

// TestTenantIsolation walks every route that names another account's
// resource with the wrong account: each must answer as if it did not exist
// and change nothing.
func TestTenantIsolation(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b)
			aTok, aFn := h.vendor("a@example.com", "vendor-a")
			bTok, _ := h.vendor("b@example.com", "vendor-b")
			consumer := h.signup("c@example.com")
			aKey := h.must(201, h.do("POST", "/api/v1/keys", aTok, map[string]any{"name": "a's key"})).str("id")

			routes := []struct {
				method, path string
				body         any
			}{
				{"GET", "/api/v1/functions/" + aFn, nil},
				{"PATCH", "/api/v1/functions/" + aFn, map[string]any{"description": "pwned"}},
				{"POST", "/api/v1/functions/" + aFn + "/versions", map[string]any{"backend": map[string]any{"type": "http", "url": "https://evil.example.com"}, "pricing": map[string]any{"per_call": "0", "per_compute_ms": "0"}}},
				{"POST", "/api/v1/functions/" + aFn + "/publish", map[string]any{"version": 1}},
				{"POST", "/api/v1/functions/" + aFn + "/unpublish", nil},
				{"PATCH", "/api/v1/keys/" + aKey, map[string]any{"name": "pwned", "monthly_spend_cap": "0.01"}},
				{"DELETE", "/api/v1/keys/" + aKey, nil},
				{"GET", "/api/v1/vendor/functions/" + aFn + "/latency", nil},
				{"GET", "/api/v1/functions/" + aFn + "/logs", nil},
			}
			// The owner reaches the read routes, so a 404 below is isolation,
			// not a missing route.
			for _, path := range []string{"/api/v1/functions/" + aFn, "/api/v1/vendor/functions/" + aFn + "/latency", "/api/v1/functions/" + aFn + "/logs"} {
				h.must(200, h.do("GET", path, aTok, nil))
			}
			for _, r := range routes {
				if a := h.do(r.method, r.path, bTok, r.body); a.status != 404 {
					t.Errorf("vendor B %s %s: %d, want 404: %s", r.method, r.path, a.status, a.raw)
				}
				if a := h.do(r.method, r.path, consumer, r.body); a.status != 404 && a.status != 403 {
					t.Errorf("consumer %s %s: %d, want 403 or 404: %s", r.method, r.path, a.status, a.raw)
				}
			}
			for _, tok := range []string{bTok, consumer} {
				if ks := h.do("GET", "/api/v1/keys", tok, nil); strings.Contains(ks.raw, aKey) {
					t.Errorf("another account lists A's key: %s", ks.raw)
				}
			}
			if fs := h.must(200, h.do("GET", "/api/v1/functions", bTok, nil)); strings.Contains(fs.raw, aFn) {
				t.Errorf("vendor B lists A's function: %s", fs.raw)
			}
			// A's function and key are untouched.
			f := h.must(200, h.do("GET", "/api/v1/functions/"+aFn, aTok, nil))
			if f.str("description") == "pwned" || f.body["published_version"] != nil || len(f.body["versions"].([]any)) != 1 {
				t.Errorf("A's function changed: %s", f.raw)
			}
			if k := h.must(200, h.do("GET", "/api/v1/keys", aTok, nil)).items()[0]; k["revoked_at"] != nil || k["name"] != "a's key" || k["monthly_spend_cap"] != nil {
				t.Errorf("A's key changed by another account: %v", k)
			}
		})
	}
}

// everything stands in for every optional part, so that every route is
// registered; its methods are never called.
type everything struct{}

func (everything) Usage(context.Context, api.UsageQuery) ([]api.UsageRow, error) { return nil, nil }
func (everything) Latency(context.Context, string, time.Time, time.Time, string) ([]api.LatencyPoint, error) {
	return nil, nil
}
func (everything) Invoices(context.Context, string) ([]billing.Invoice, error) { return nil, nil }
func (everything) Invoice(context.Context, string, string) (billing.Invoice, error) {
	return billing.Invoice{}, nil
}
func (everything) Upcoming(context.Context, string) ([]billing.Invoice, error)     { return nil, nil }
func (everything) Statements(context.Context, string) ([]billing.Statement, error) { return nil, nil }
func (everything) OnboardVendor(context.Context, string, string) (string, error)   { return "", nil }
func (everything) HandleWebhook(context.Context, []byte, string) error             { return nil }
func (everything) Lines(context.Context, string, int) ([]api.FunctionLogLine, error) {
	return nil, nil
}

func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0])
	doc := h.must(200, h.do("GET", "/api/v1/openapi.json", "", nil)).body
	if doc["openapi"] != "3.0.3" {
		t.Fatalf("openapi version %v", doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)
	full := api.NewServer(api.Deps{Usage: everything{}, Billing: everything{}, Webhooks: everything{}, FunctionLogs: everything{}})
	for _, r := range api.Routes(full) {
		if strings.HasSuffix(r.Path, "/*") || r.Method == "echo_route_not_found" {
			continue
		}
		p := openAPIPath(r.Path)
		ops, ok := paths[p].(map[string]any)
		if !ok {
			t.Errorf("served route %s %s is missing from the OpenAPI document", r.Method, p)
			continue
		}
		if _, ok := ops[strings.ToLower(r.Method)]; !ok {
			t.Errorf("served route %s %s has no %s operation in the OpenAPI document", r.Method, p, r.Method)
		}
	}
	for _, p := range []string{"/v1/invoke/{vendor}/{function}", "/readyz", "/metrics"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("%s missing from the OpenAPI document", p)
		}
	}
}

func openAPIPath(echoPath string) string {
	segs := strings.Split(echoPath, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i] = fmt.Sprintf("{%s}", s[1:])
		}
	}
	return strings.Join(segs, "/")
}

// TestLoginThrottle locks an account's logins from one address after ten
// wrong passwords, on every backend's Redis, and leaves other accounts alone.
func TestLoginThrottle(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			rdb, prefix := testenv.Redis(t, b)
			h := newHarness(t, b, func(d *api.Deps) {
				d.LoginThrottle = redisx.NewLoginThrottle(rdb, prefix, 10, time.Minute)
			})
			h.signup("victim@example.com")
			h.signup("other@example.com")
			for i := 0; i < 10; i++ {
				h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "victim@example.com", "password": fmt.Sprintf("guess number %d", i)}))
			}
			a := h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "VICTIM@example.com", "password": "correct horse battery"})
			if a.status != 429 || a.str("code") != "rate_limited" || a.header.Get("Retry-After") == "" {
				t.Errorf("after ten wrong passwords: %d %s (Retry-After %q), want 429 rate_limited", a.status, a.raw, a.header.Get("Retry-After"))
			}
			h.must(200, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "other@example.com", "password": "correct horse battery"}))
		})
	}
}
