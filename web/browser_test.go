package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/browsertest"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

// portalServer is the API with the portal registered on it, the fake
// gateway on /v1/invoke/, and an upstream function.
type portalServer struct {
	url      string
	upstream string
	gateway  *fakeGateway
	backends *fakeBackends
	billing  *fakeBilling  // nil unless metered
	webhooks *fakeWebhooks // nil unless webhooks
	keys     *fakeKeys     // nil unless keys
}

// startPortal serves the portal; metered says whether the usage and billing
// routes exist (they are wired by other parts, and may be missing).
func startPortal(t *testing.T, metered bool) *portalServer {
	t.Helper()
	return startPortalWith(t, portalOptions{metered: metered, stripe: true, standing: "active"})
}

// portalOptions choose the fake parts: with metered, usage, invoices, call
// positions and the consumer billing routes (fakeBilling, which starts new
// accounts in standing and has Stripe configured when stripe is set).
type portalOptions struct {
	metered  bool
	stripe   bool
	standing string
	// webhooks serves the webhook and audit routes and alert thresholds on
	// keys (fakeWebhooks).
	webhooks bool
	// keys adds expiry, scopes, per-key rate limits and rotation to the
	// key routes (fakeKeys).
	keys bool
}

func startPortalWith(t *testing.T, o portalOptions) *portalServer {
	t.Helper()
	metered := o.metered
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var in any
		_ = json.Unmarshal(body, &in)
		time.Sleep(3 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"tags": []string{"cat", "sofa"}, "echo": in})
	}))
	t.Cleanup(up.Close)

	db := testenv.DB(t, testenv.Backends()[0])
	clock := fnmarket.SystemClock{}
	acc := accounts.NewStore(db, clock, bcrypt.MinCost)
	cat := catalogstore.NewStore(db, clock)
	gw := newFakeGateway(acc, cat)
	backends := &fakeBackends{}
	deps := api.Deps{
		// wasm modules are checked by a fake; there is no FunctionLogs, so
		// the log route is missing (404) and the portal hides its viewer.
		// The http kind takes the tests' local functions.
		Backends: mustKinds(t, gateway.HTTPKind{AllowPrivate: true}, backends),
		Accounts: acc,
		Catalog:  cat,
		Sessions: api.NewSessions([]byte("browser-test-secret-browser-test-secret"), time.Hour, clock),
		// The fake billing answers onboarding as Stripe would.
		StripeEnabled: metered,
	}
	var bill *fakeBilling
	if metered {
		deps.Usage, deps.Billing, deps.CallPositions, deps.KeySpends = gw, gw, gw, gw
		bill = newFakeBilling(deps.Sessions, gw, o.stripe, o.standing)
	}
	var hooks *fakeWebhooks
	if o.webhooks {
		hooks = newFakeWebhooks(deps.Sessions)
	}
	deps.Pages = func(e *echo.Echo) {
		if bill != nil {
			bill.register(e)
		}
		if hooks != nil {
			hooks.register(e)
		}
		Register(e, Options{})
	}
	var srv http.Handler = api.NewServer(deps)
	if hooks != nil {
		srv = hooks.keysWithAlerts(srv)
	}
	var keys *fakeKeys
	if o.keys {
		keys = newFakeKeys(deps.Sessions, cat)
		srv = keys.wrap(srv)
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/invoke/", gw)
	mux.Handle("/", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return &portalServer{url: ts.URL, upstream: up.URL + "/tag", gateway: gw, backends: backends, billing: bill, webhooks: hooks, keys: keys}
}

// newBrowser starts Chromium for a portal test (see internal/browsertest);
// screenshots leave the transient toast out.
func newBrowser(t *testing.T) *browsertest.Browser {
	t.Helper()
	return browsertest.New(t, browsertest.Options{BeforeShot: hideToastJS})
}

// hideToastJS hides the portal's toast, which is transient, before a screenshot.
const hideToastJS = `document.getElementById('toast').classList.remove('show')`

// TestPortalInBrowser walks a vendor and a consumer through the portal in
// headless Chromium against the real API.
func TestPortalInBrowser(t *testing.T) {
	srv := startPortal(t, true)
	b := newBrowser(t)
	shots := map[string]string{}
	const vendorEmail, vendorPass = "ada@acme.test", "correct horse battery"

	// The catalog is empty; a vendor signs up.
	b.Do("open catalog", browsertest.Navigate(srv.url+"/"), browsertest.Visible("#catalog-results .empty"))
	b.Do("sign up vendor", browsertest.Click(`#nav a[href="/signup"]`), browsertest.Visible("#signup-form"),
		browsertest.TypeKeys(`#signup-form input[name="name"]`, "Ada Vendor"),
		browsertest.TypeKeys(`#signup-form input[name="email"]`, vendorEmail),
		browsertest.TypeKeys(`#signup-form input[name="password"]`, vendorPass),
		browsertest.TypeKeys(`#signup-form input[name="password"]`, "\r"), // submit by keyboard
		browsertest.Visible("#logout"), browsertest.WaitText("#nav .who", "Ada Vendor"))

	// Becoming a vendor: a bad slug shows the API's message next to the field.
	b.Do("bad slug", browsertest.Click(`#nav a[href="/vendor"]`), browsertest.Visible("#vendor-form"),
		browsertest.Fill("#vendor-slug", "A!"), browsertest.Fill("#vendor-name", "Acme Labs"), browsertest.Click("#become-vendor"),
		browsertest.WaitText(`#vendor-form [data-error-for="slug"]`, "3 to 40 characters"))
	if !b.EvalBool("slug invalid", `document.querySelector('#vendor-slug').getAttribute('aria-invalid') === 'true'`) {
		t.Error("the slug input is not marked aria-invalid")
	}
	b.Do("become vendor", browsertest.Fill("#vendor-slug", "acme"), browsertest.Click("#become-vendor"), browsertest.Visible("#new-function"))

	// Publishing a function: the live preview prices exactly.
	description := "Tags an image **fast** with *care*.\n\n- returns `tags`\n- [docs](https://example.com/docs)\n- [bad](javascript:alert(1))\n\n<img src=x onerror=alert(1)>\n\n```\ncurl -d @cat.jpg\n```"
	b.Do("new function form", browsertest.Click("#new-function"), browsertest.Visible("#function-form"),
		browsertest.Fill("#function-name", "image-tagger"), browsertest.Fill("#description", description), browsertest.Fill("#backend-url", srv.upstream), browsertest.Fill("#timeout-ms", "3000"),
		browsertest.WaitText("#description-preview strong", "fast"),
		// The backend type switches between a URL and a module upload.
		browsertest.Click("#backend-type-wasm"), browsertest.Visible("#backend-module"), browsertest.Click("#backend-type-http"), browsertest.Visible("#backend-url"))
	if !b.EvalBool("wasm inputs hidden again", `document.querySelector('#backend-wasm').hidden && document.querySelector('#backend-module').disabled && document.querySelector('#backend-module').accept === '.wasm'`) {
		t.Error("the wasm inputs show, or are enabled, for an http backend")
	}
	preview := func(calls, col string) string {
		return fmt.Sprintf(`#pricing-preview tr[data-calls="%s"] td.%s`, calls, col)
	}
	// The preview shows the API's quotes (POST /api/v1/pricing/quote).
	b.Do("preview flat", browsertest.WaitText(preview("10000", "billed"), "$1.99"), browsertest.WaitText(preview("1000000", "billed"), "$199.99"),
		browsertest.WaitText(`#pricing-preview tr[data-calls="10000"] th`, "(100 free)"))
	// 10k calls, 100 free, 12 ms each: 9,900 × 0.0001 + 120,000 × 0.000002 = 1.23.
	b.Do("preview avg ms", browsertest.Fill(".preview-assume input", "12"), browsertest.WaitText(preview("10000", "exact"), "$1.23"), browsertest.WaitText(preview("10000", "compute"), "$0.24"))
	// Whole milliseconds only: the API's problem shows in the preview.
	b.Do("preview bad ms", browsertest.Fill(".preview-assume input", "12.5"), browsertest.WaitText(".preview .hint", "Average compute-ms"), browsertest.WaitText(preview("10000", "exact"), "—"),
		browsertest.Fill(".preview-assume input", "12"), browsertest.WaitText(preview("10000", "exact"), "$1.23"))
	// Tiers: 100k calls at 0.0001 then 0.00005; 1M calls with 100 free and 12 ms
	// = 10 + 899,900 × 0.00005 + 24 = 78.995, billed half-even to $79.00.
	b.Do("preview tiers", browsertest.Click(`.radio-row input[value="tiers"]`), browsertest.WaitText(preview("1000000", "exact"), "$78.995"), browsertest.WaitText(preview("1000000", "billed"), "$79.00"))
	b.Do("preview back to flat", browsertest.Click(`.radio-row input[value="flat"]`), browsertest.WaitText(preview("1000000", "billed"), "$123.99"))
	// A price the API refuses is named next to its field.
	b.Do("preview bad price", browsertest.Fill(`#function-form input[name="pricing.per_call"]`, "-1"), browsertest.WaitText(`#function-form [data-error-for="pricing.per_call"]`, "non-negative decimal"),
		browsertest.WaitText(preview("10000", "billed"), "—"),
		browsertest.Fill(`#function-form input[name="pricing.per_call"]`, "0.0001"), browsertest.WaitText(preview("1000000", "billed"), "$123.99"))
	shots["vendor function editor"] = b.Shot("vendor-function-editor")
	b.Do("create function", browsertest.Click("#create-function"), browsertest.Visible("#versions-table"), browsertest.WaitText("#published-badge", "Unpublished"))

	// Versions: publish v1, add v2, publish it, unpublish, publish again.
	b.Do("publish v1", browsertest.Visible("#fn-calls"), browsertest.Click(`button[data-publish="1"]`), browsertest.WaitText("#published-badge", "Published v1"))
	b.Do("add v2", browsertest.Fill("#version-form #timeout-ms", "4000"), browsertest.Fill("#version-form #rate-limit", "-1"), browsertest.Click("#create-version"),
		browsertest.WaitText(`#version-form [data-error-for="rate_limit_per_second"]`, "between 0"),
		browsertest.Fill("#version-form #rate-limit", "25"), browsertest.Click("#create-version"), browsertest.Visible(`#versions-table tr[data-version="2"]`),
		browsertest.WaitText(`#versions-table tr[data-version="2"] td.rate-limit`, "25/s"), browsertest.WaitText(`#versions-table tr[data-version="1"] td.rate-limit`, "default"))
	b.Do("publish v2", browsertest.Visible("#fn-calls"), browsertest.Click(`button[data-publish="2"]`), browsertest.WaitText("#published-badge", "Published v2"))
	// The page keeps its scroll across the redraw after publishing, which
	// can leave #unpublish under the sticky header (where a click would hit
	// "Log out"): scroll to the top first.
	b.Do("unpublish", chromedp.Evaluate[chromedp.Void]("window.scrollTo(0, 0)"), browsertest.Click("#unpublish"), browsertest.WaitText("#published-badge", "Unpublished"))
	b.Do("republish v2", browsertest.Visible("#fn-calls"), browsertest.Click(`button[data-publish="2"]`), browsertest.WaitText("#published-badge", "Published v2"))

	// v3 runs a WebAssembly module uploaded from a file (larger than one
	// base64 chunk of the page's encoder); field errors show next to the
	// fields. It stays unpublished, so consumers still reach the upstream.
	dir := t.TempDir()
	module := wasmtest.MinimalModule(wasmtest.Spec{Msg: strings.Repeat("hello from wasm ", 5000), MinPages: 2})
	goodPath, badPath := filepath.Join(dir, "hello.wasm"), filepath.Join(dir, "notes.wasm")
	if err := os.WriteFile(goodPath, module, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badPath, []byte("just some text, not a module"), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(module)
	sha := hex.EncodeToString(sum[:])
	b.Do("wasm: no file", browsertest.Click("#version-form #backend-type-wasm"), browsertest.Visible("#version-form #backend-module"), browsertest.Click("#create-version"),
		browsertest.WaitText(`#version-form [data-error-for="backend.module_base64"]`, "required"))
	b.Do("wasm: bad file and memory", chromedp.SetUploadFiles(chromedp.CSS("#version-form #backend-module"), []string{badPath}),
		browsertest.WaitText("#backend-module-info", "notes.wasm"), browsertest.Fill("#version-form #backend-memory-pages", "5000"), browsertest.Click("#create-version"),
		browsertest.WaitText(`#version-form [data-error-for="backend.module_base64"]`, "not a WebAssembly binary"),
		browsertest.WaitText(`#version-form [data-error-for="backend.memory_pages"]`, "between 0"))
	b.Do("wasm: v3", chromedp.SetUploadFiles(chromedp.CSS("#version-form #backend-module"), []string{goodPath}), browsertest.Fill("#version-form #backend-memory-pages", "2"),
		browsertest.Click("#create-version"), browsertest.Visible(`#versions-table tr[data-version="3"]`),
		browsertest.WaitText(`#versions-table tr[data-version="3"]`, "wasm · sha256 "+sha[:12]+"…"), browsertest.WaitText(`#versions-table tr[data-version="3"]`, "2 pages (128.0 KiB)"),
		browsertest.WaitText("#published-badge", "Published v2"),
		chromedp.WaitReady(chromedp.CSS(`#log-panel[data-state="unavailable"]`)))
	if got := srv.backends.lastModule(); !bytes.Equal(got, module) {
		t.Errorf("the server got a module of %d bytes, want the %d bytes of the file", len(got), len(module))
	}
	if !b.EvalBool("wasm form state", `document.querySelector('#version-form #backend-type-wasm').checked && document.querySelector('#log-panel').hidden`) {
		t.Error("after a wasm version the new-version form is not on wasm, or the log viewer shows without a log route")
	}
	b.Do("log out vendor", browsertest.Click("#logout"), browsertest.Visible(`#nav a[href="/login"]`))

	// A wrong password shows the API's error on the form.
	b.Do("wrong password", browsertest.Click(`#nav a[href="/login"]`), browsertest.Visible("#login-form"),
		browsertest.TypeKeys(`#login-form input[name="email"]`, vendorEmail),
		browsertest.TypeKeys(`#login-form input[name="password"]`, "not the password"),
		browsertest.Click(`#login-form button[type="submit"]`), browsertest.WaitText("#login-form .form-error", "wrong email or password"))
	if !b.EvalBool("error visible", `!document.querySelector('#login-form .form-error').hidden && !document.querySelector('#logout')`) {
		t.Error("the login error is hidden, or the wrong password logged in")
	}

	// A consumer signs up and finds the function.
	b.Do("sign up consumer", browsertest.Click(`#login-form ~ p a[href^="/signup"]`), browsertest.Visible("#signup-form"),
		browsertest.Fill(`#signup-form input[name="name"]`, "Grace Consumer"), browsertest.Fill(`#signup-form input[name="email"]`, "grace@example.test"),
		browsertest.Fill(`#signup-form input[name="password"]`, "another long passphrase"), browsertest.Click(`#signup-form button[type="submit"]`), browsertest.Visible("#logout"))
	b.Do("search", browsertest.Click(`#nav a[href="/catalog"]`), browsertest.Visible("#catalog-q"), browsertest.Fill("#catalog-q", "tagger"), browsertest.WaitText("#catalog-count", "1 function"),
		browsertest.WaitText("#catalog-results .card-price", "$0.0001 / call"))
	shots["catalog"] = b.Shot("catalog")
	b.Do("open function", browsertest.Click(`#catalog-results a[href="/functions/acme/image-tagger"]`), browsertest.Visible("#try-it"), browsertest.WaitText("#fn-description strong", "fast"))
	// The cost box quotes the published version by name (POST /api/v1/pricing/quote):
	// 10k calls of 50 ms with 100 free = $1.99; 1M calls of 0 ms = 999,900 × 0.0001.
	quote := func(k string) string { return fmt.Sprintf(`#fn-quote td[data-quote="%s"]`, k) }
	b.Do("next call", browsertest.WaitText("#fn-next-call", "Your next call: free (100 free calls left this month) + 0.000002 USD per compute-ms"))
	b.Do("function quote", browsertest.WaitText(quote("total_rounded"), "$1.99"), browsertest.WaitText(quote("free_calls"), "100"), browsertest.WaitText(quote("compute_cost"), "$1.00"),
		browsertest.Fill("#quote-calls", "1000000"), browsertest.Fill("#quote-ms", "0"), browsertest.WaitText(quote("total"), "$99.99"), browsertest.WaitText(quote("billable_calls"), "999,900"),
		browsertest.Fill("#quote-calls", "-1"), browsertest.WaitText("#fn-quote-note", "Calls must be between 0"), browsertest.WaitText(quote("total"), "—"))
	checks := map[string]string{
		"markdown has no raw HTML":        `!document.querySelector('#fn-description img') && document.querySelector('#fn-description').textContent.includes('<img src=x onerror=alert(1)>')`,
		"http link is safe":               `(() => { const a = document.querySelector('#fn-description a'); return a && a.href === 'https://example.com/docs' && a.rel.includes('noopener'); })()`,
		"javascript: link is text only":   `[...document.querySelectorAll('#fn-description a')].every(a => a.protocol === 'https:') && document.querySelector('#fn-description').textContent.includes('bad')`,
		"code block is literal":           `document.querySelector('#fn-description pre code').textContent === 'curl -d @cat.jpg'`,
		"curl names the key placeholder":  `document.querySelector('#curl-example').textContent.includes('X-API-Key: $FNMARKET_API_KEY') && document.querySelector('#curl-example').textContent.includes(location.origin + '/v1/invoke/acme/image-tagger')`,
		"pricing table shows free calls":  `document.querySelector('#fn-pricing').textContent.includes('Free calls each month100')`,
		"no key yet, so paste is offered": `!document.querySelector('#try-key-choice') && !!document.querySelector('#try-key')`,
	}
	for name, js := range checks {
		if !b.EvalBool(name, js) {
			t.Errorf("function page: %s", name)
		}
	}

	// API keys: a bad cap is refused next to its field; a good key is shown once.
	b.Do("bad cap", browsertest.Click(`#nav a[href="/keys"]`), browsertest.Visible("#key-form"), browsertest.Fill("#key-name", "ci"), browsertest.Fill("#key-cap", "lots"), browsertest.Click("#create-key"),
		browsertest.WaitText(`#key-form [data-error-for="monthly_spend_cap"]`, "decimal"))
	b.Do("create key", browsertest.Fill("#key-cap", "25"), browsertest.Click("#create-key"), browsertest.Visible("#new-key-value"),
		browsertest.WaitText("#keys-table", "Active"), browsertest.WaitText("#keys-table", "$25.00"))
	key := b.Value("#new-key-value")
	if len(key) < 20 {
		t.Fatalf("new key %q looks wrong", key)
	}
	shots["keys"] = b.Shot("keys")

	// Try it with the key held in this tab's memory.
	b.Do("back to the function", browsertest.Click(`#nav a[href="/catalog"]`), browsertest.Visible(`#catalog-results a[href="/functions/acme/image-tagger"]`),
		browsertest.Click(`#catalog-results a[href="/functions/acme/image-tagger"]`), browsertest.Visible("#try-key-choice"))
	b.Do("try it", browsertest.Click("#try-send"))
	b.Do("try it answers", browsertest.WaitText("#try-status", "200"), browsertest.WaitText("#try-body", `"hello": "world"`),
		// The call took a free one: the next-call line says so.
		browsertest.WaitText("#fn-next-call", "free (99 free calls left this month)"))
	computeMs, invocation := b.Text("#try-compute-ms"), b.Text("#try-invocation-id")
	if n, err := strconv.Atoi(strings.TrimSpace(computeMs)); err != nil || n < 1 {
		t.Errorf("X-Compute-Ms shown as %q, want a whole number ≥ 1", computeMs)
	}
	if !strings.HasPrefix(invocation, "inv_test_") {
		t.Errorf("X-Invocation-Id shown as %q", invocation)
	}
	if got := len(srv.gateway.billed()); got != 1 {
		t.Errorf("the gateway billed %d calls, want 1", got)
	}
	shots["function page"] = b.Shot("function-page")

	// Revoking asks first; the revoked key then fails in "try it".
	b.Do("revoke", browsertest.Click(`#nav a[href="/keys"]`), browsertest.Visible("button[data-revoke]"), browsertest.Click("button[data-revoke]"), browsertest.Visible("#confirm-revoke"),
		browsertest.Click("#confirm-revoke"), browsertest.WaitText("#keys-table", "Revoked"))
	b.Do("try revoked", browsertest.Click(`#nav a[href="/catalog"]`), browsertest.Visible(`#catalog-results a[href="/functions/acme/image-tagger"]`),
		browsertest.Click(`#catalog-results a[href="/functions/acme/image-tagger"]`), browsertest.Visible("#try-key"), browsertest.Fill("#try-key", key), browsertest.Click("#try-send"),
		browsertest.WaitText("#try-status", "401"), browsertest.WaitText("#try-body", "unauthenticated"))
	if got := len(srv.gateway.billed()); got != 1 {
		t.Errorf("after the refused call the gateway billed %d calls, want still 1", got)
	}

	// Usage and the running invoice show the call.
	b.Do("usage", browsertest.Click(`#nav a[href="/usage"]`), browsertest.WaitText("#usage-calls", "1"), browsertest.Visible("#chart-calls svg rect"),
		browsertest.WaitText("#chart-cost-USD figcaption", "Cost per function (USD)"),
		browsertest.WaitText("#usage-table", "acme/image-tagger"), browsertest.WaitText("#upcoming", "acme/image-tagger"), browsertest.WaitText("#upcoming-total", "$0.00"))
	shots["usage"] = b.Shot("usage")
	b.Do("invoices", browsertest.Click(`#nav a[href="/invoices"]`), browsertest.Visible("details.invoice"), browsertest.Click("details.invoice summary"), browsertest.WaitText("details.invoice", "acme/legacy"),
		browsertest.WaitText(`details.invoice tr[data-kind="adjustment"]`, "late usage for "+adjustmentMonth().Format("January 2006")),
		browsertest.WaitText(`details.invoice tr[data-kind="usage"] .line-kind`, "usage"),
		browsertest.Click(`details.invoice a[href="/invoices/inv_past_1"]`), browsertest.WaitText("#invoice-total", "$12.34"),
		browsertest.WaitText(`.lines-table tr[data-kind="adjustment"] td.num`, "$0.50"))

	// Phone width: nothing overflows sideways.
	b.Do("phone", chromedp.EmulateViewport(390, 844), browsertest.Click(`#nav a[href="/catalog"]`), browsertest.Visible("#catalog-results .card"))
	if !b.EvalBool("no overflow", `document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		w := browsertest.Get(b, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		t.Errorf("the catalog is %d px wide at a 390 px viewport", w)
	}
	shots["catalog (phone)"] = b.Shot("catalog-phone")
	b.Do("desktop", chromedp.EmulateViewport(1280, 900), browsertest.Click("#logout"), browsertest.Visible(`#nav a[href="/login"]`))

	// The vendor logs in again and sees the call and the revenue.
	b.Do("vendor login", browsertest.Click(`#nav a[href="/login"]`), browsertest.Visible("#login-form"),
		browsertest.Fill(`#login-form input[name="email"]`, vendorEmail), browsertest.Fill(`#login-form input[name="password"]`, vendorPass),
		browsertest.Click(`#login-form button[type="submit"]`), browsertest.Visible("#logout"),
		browsertest.Click(`#nav a[href="/vendor"]`), browsertest.Visible("#functions-table"), browsertest.Click(`#functions-table a`), browsertest.Visible("#function-stats"),
		browsertest.WaitText("#fn-calls", "1"), browsertest.WaitText("#fn-errors", "0.0%"), browsertest.Visible("#chart-fn-latency circle"))
	revenue := b.Text("#fn-revenue")
	if !strings.HasPrefix(revenue, "$0.0") || revenue == "$0.00" {
		t.Errorf("revenue shows %q, want the exact compute charge of one free call", revenue)
	}
	b.Do("range day", browsertest.Click(`button[data-range="day"]`), browsertest.WaitText("#fn-calls", "1"))
	shots["vendor function"] = b.Shot("vendor-function")
	b.Do("statements", browsertest.Click(`#nav a[href="/statements"]`), browsertest.Visible("#statements-table"), browsertest.WaitText("#statements-table", "$96.00"), browsertest.Visible("#stripe-onboard"))
	shots["statements"] = b.Shot("statements")
	b.Do("stripe onboarding", browsertest.Click("#stripe-onboard"), browsertest.WaitLocation("/statements?stripe=connected"), browsertest.Visible("#statements-table"))

	// No page logged an error at any step (each step checked), and once more at the end.
	b.CheckConsole("end")
	for name, path := range shots {
		t.Logf("screenshot %s: %s", name, path)
	}
}

// TestFrontEndUnits runs the exact money formatting and the Markdown renderer in
// the browser, where they live.
func TestFrontEndUnits(t *testing.T) {
	srv := startPortal(t, true)
	b := newBrowser(t)
	b.Do("open", browsertest.Navigate(srv.url+"/"), browsertest.Visible("#catalog-results"))
	js := `(async () => {
	  const base = document.querySelector('script[type=module]').src.replace(/app\.js$/, '');
	  const m = await import(base + 'money.js');
	  const md = await import(base + 'markdown.js');
	  const fails = [];
	  const eq = (name, got, want) => { if (got !== want) fails.push(name + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want)); };
	  const flat = {per_call: '0.0001', per_compute_ms: '0.000002', free_calls_per_month: 100};
	  // The pricing rule is the server's alone (POST /api/v1/pricing/quote).
	  for (const gone of ['monthCost', 'callsCost', 'roundHalfEven', 'mul']) eq('money.js has no ' + gone, typeof m[gone], 'undefined');
	  eq('exact sum', m.toString(m.sum(['0.1', '0.2', 'x'])), '0.3');
	  eq('amounts keep their digits', m.moneyString('79.995', 'USD', 2), '$79.995');
	  eq('huge amounts stay exact', m.moneyString('900719925474.0993', 'EUR', 2), '€900,719,925,474.0993');
	  eq('other currencies', m.moneyString('1.5', 'CHF', 2), '1.50 CHF');
	  eq('parse rejects negatives', m.parseDec('-1'), null);
	  eq('parse rejects exponents', m.parseDec('1e3'), null);
	  eq('money', m.money(m.dec('1234.5'), 'USD', 2), '$1,234.50');
	  // Unit prices show in full (a $0.000002 price is not $0.00); only
	  // amounts are rounded to cents, where billing rounds them.
	  const pr = await import(base + 'pricing.js');
	  eq('summary keeps unit prices', pr.pricingSummary({currency: 'USD', ...flat}), '$0.0001 / call · $0.000002 / compute-ms · 100 free calls / month');
	  eq('rows keep unit prices', pr.pricingRows(flat).map((r) => r[1]).join(' | '), '$0.0001 | $0.000002 | 100');
	  eq('tiers keep unit prices', pr.pricingSummary({currency: 'EUR', per_compute_ms: '0.0000005', free_calls_per_month: 0, tiers: [{up_to: 10, per_call: '0.01'}, {up_to: 0, per_call: '0.00025'}]}), 'from €0.00025 / call · €0.0000005 / compute-ms');
	  eq('tiers count billable calls', pr.pricingRows({currency: 'EUR', per_compute_ms: '0', free_calls_per_month: 5, tiers: [{up_to: 10, per_call: '0.01'}, {up_to: 0, per_call: '0.00025'}]}).map((r) => r[0]).join(' | '), 'Billable calls 1–10 | Billable calls 11 and beyond | Per compute-millisecond | Free calls each month');
	  eq('whole prices show cents', m.moneyString('2', 'USD'), '$2.00');
	  const box = document.createElement('div');
	  box.appendChild(md.render('<script>alert(1)</script>\n\n**b** *e* _e_ snake_case ` + "`<b>`" + ` [x](javascript:alert(1)) [y](data:text/html,hi) [z](https://ok.example/a?b=1)\n\n1. one\n2. two'));
	  eq('no script element', box.querySelectorAll('script').length, 0);
	  eq('script shown as text', box.querySelector('p').textContent, '<script>alert(1)</script>');
	  eq('bold', box.querySelector('strong').textContent, 'b');
	  eq('em count', box.querySelectorAll('em').length, 2);
	  eq('snake_case untouched', box.textContent.includes('snake_case'), true);
	  eq('code literal', box.querySelector('code').textContent, '<b>');
	  eq('only the https link', [...box.querySelectorAll('a')].map(a => a.href).join(' '), 'https://ok.example/a?b=1');
	  eq('link rel', box.querySelector('a').rel, 'noopener noreferrer nofollow');
	  eq('ordered list', box.querySelectorAll('ol li').length, 2);
	  eq('plain text', md.plainText('# Title\n\n**Fast** [docs](https://x.y) and ` + "`code`" + `'), 'Title');
	  // base64 in chunks: the same as btoa of the whole, across chunk edges.
	  const files = await import(base + 'files.js');
	  eq('base64 empty', files.bytesToBase64(new Uint8Array(0)), '');
	  eq('base64 wasm magic', files.bytesToBase64(new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])), 'AGFzbQEAAAA=');
	  for (const n of [1, 2, 3, 24575, 24576, 24577, 3 * 24576 + 2, 200001]) {
	    const bytes = new Uint8Array(n);
	    for (let i = 0; i < n; i += 1) bytes[i] = (i * 7919 + (i >> 8)) & 255;
	    let bin = '';
	    for (let i = 0; i < n; i += 1) bin += String.fromCharCode(bytes[i]);
	    eq('base64 of ' + n + ' bytes', files.bytesToBase64(bytes), btoa(bin));
	  }
	  eq('read a blob', files.bytesToBase64(await files.readBytes(new Blob([new Uint8Array([1, 2, 3, 4])]))), 'AQIDBA==');
	  // Costs in different currencies are charted apart, never added.
	  const c = await import(base + 'consumer.js');
	  const ch = await import(base + 'charts.js');
	  const b = ch.buckets('week');
	  const day = new Date(b.list[6]).toISOString();
	  const rows = [
	    {function: 'acme/a', period_start: day, cost: '0.25', currency: 'USD'},
	    {function: 'acme/b', period_start: day, cost: '0.5', currency: 'EUR'},
	    {function: 'acme/c', period_start: day, cost: '0.125', currency: 'EUR'},
	    {function: 'acme/a', period_start: day, cost: '0.05', currency: 'USD'},
	  ];
	  const charts = c.costCharts(rows, b, {title: 'Cost per function', id: 'chart-cost'});
	  eq('one chart per currency', charts.map((f) => f.id).join(' '), 'chart-cost-USD chart-cost-EUR');
	  eq('chart titles', charts.map((f) => f.querySelector('figcaption').textContent).join(' | '), 'Cost per function (USD) | Cost per function (EUR)');
	  eq('USD series', [...charts[0].querySelectorAll('.chart-legend li')].map((li) => li.textContent).join(' '), '');
	  eq('USD tip', charts[0].querySelector('circle:last-of-type title').textContent.endsWith('acme/a: $0.30'), true);
	  eq('EUR series', [...charts[1].querySelectorAll('.chart-legend li')].map((li) => li.textContent).join(' '), 'acme/b acme/c');
	  eq('EUR tips', [...charts[1].querySelectorAll('circle title')].filter((t) => /: €0\.(50|125)$/.test(t.textContent)).length, 2);
	  eq('no currency is USD', c.costCharts([], b, {title: 'Revenue', id: 'r', placeholder: true}).map((f) => f.id + ' ' + f.querySelectorAll('polyline').length).join(), 'r-USD 1');
	  eq('totals per currency', c.costByCurrency(rows), '$0.30 + €0.625');
	  // Invoice lines say what they are.
	  eq('usage kind', c.lineKind({kind: 'usage'}).textContent, 'usage');
	  eq('no kind is usage', c.lineKind({}).textContent, 'usage');
	  eq('adjustment kind', c.lineKind({kind: 'adjustment', period_start: '2025-03-01T00:00:00Z'}).textContent, 'late usage for March 2025');
	  eq('negative adjustment', c.signedMoney('-0.10', 'EUR'), '−€0.10');
	  // Key spend per currency is shown, never added across currencies.
	  const bl = await import(base + 'billing.js');
	  eq('key spend per currency', bl.spendText({EUR: '0.5', USD: '0.000213'}), '$0.000213 + €0.50');
	  eq('no key spend', bl.spendText({}), '$0.00');
	  eq('key spend unknown', bl.spendText(null), '—');
	  // Alert thresholds: numbers go as numbers, the rest as typed (the
	  // server names it); a server without them is explained on the field.
	  const al = await import(base + 'alerts.js');
	  const api = await import(base + 'api.js');
	  eq('thresholds parsed', JSON.stringify(al.parseThresholds(' 50, 80 100%;')), '[50,80,100]');
	  eq('bad threshold kept', JSON.stringify(al.parseThresholds('50, lots, 1.5')), '[50,"lots","1.5"]');
	  eq('no thresholds', al.parseThresholds('  '), undefined);
	  eq('thresholds text', al.thresholdsText([50, 80, 100]), '50%, 80% and 100%');
	  eq('one threshold', al.thresholdsText([100]), '100%');
	  eq('no alerts', al.thresholdsText([]), 'None');
	  eq('thresholds unknown', al.thresholdsText(undefined), '—');
	  eq('thresholds input', al.thresholdsInput([80, 100]), '80, 100');
	  const unknown = al.explainUnknownThresholds(new api.Problem(400, {detail: 'unknown field alert_thresholds', errors: {alert_thresholds: 'is not a known field (names are case-sensitive)'}}));
	  eq('unknown field explained', unknown.fields.alert_thresholds.startsWith('alert thresholds are not available on this server yet'), true);
	  const other = al.explainUnknownThresholds(new api.Problem(400, {errors: {alert_thresholds: 'must be a whole percent'}}));
	  eq('other errors kept', other.fields.alert_thresholds, 'must be a whole percent');
	  // Keys: the expiry goes in UTC, whole numbers as numbers, times ahead
	  // and grace periods in words, new fields explained on old servers.
	  const k = await import(base + 'keys.js');
	  eq('expiry in UTC', k.localToRFC3339('2031-06-15T09:30'), new Date('2031-06-15T09:30').toISOString().replace('.000Z', 'Z'));
	  eq('no expiry', k.localToRFC3339(''), undefined);
	  eq('bad expiry kept', k.localToRFC3339('next week'), 'next week');
	  eq('local input round trip', k.localToRFC3339(k.localInput(new Date('2031-06-15T09:30'))), k.localToRFC3339('2031-06-15T09:30'));
	  eq('rate number', k.parseWhole(' 12 '), 12);
	  eq('rate as typed', k.parseWhole('1.5'), '1.5');
	  eq('no rate', k.parseWhole(''), undefined);
	  const now = Date.parse('2030-01-01T00:00:00Z');
	  eq('never', k.expiryState(null, now).text, 'Never');
	  eq('expired', k.expiryState('2029-12-31T23:59:59Z', now).state, 'expired');
	  eq('3 days', k.expiryState('2030-01-04T01:00:00Z', now).text, 'expires in 3 days');
	  eq('soon', k.expiryState('2030-01-04T01:00:00Z', now).state, 'soon');
	  eq('hours', k.expiryState('2030-01-01T05:30:00Z', now).text, 'expires in 5 hours');
	  eq('a minute', k.expiryState('2030-01-01T00:00:20Z', now).text, 'expires in 1 minute');
	  eq('later', k.expiryState('2030-03-01T00:00:00Z', now).state, 'later');
	  eq('grace on', k.graceActive('2030-01-01T01:00:00Z', now), true);
	  eq('grace over', k.graceActive('2029-12-31T23:00:00Z', now), false);
	  eq('no grace', k.graceActive(null, now), false);
	  eq('grace words', [0, 3600, 86400, 604800, 90, 120].map(k.graceText).join(' | '), 'none | 1 hour | 1 day | 7 days | 90 seconds | 2 minutes');
	  eq('scope all', k.scopeText([]), 'All functions');
	  eq('scope list', k.scopeText(['acme/a', 'acme/b']), 'acme/a, acme/b');
	  eq('rate default', k.rateText(null), 'Platform default');
	  eq('rate own', k.rateText(5), '5/s');
	  const old = k.explainKeyProblem(new api.Problem(400, {errors: {expires_at: 'is not a known field (names are case-sensitive)', rate_limit_per_second: 'is not a known field'}}));
	  eq('unknown expiry explained', old.fields.expires_at, 'key expiry is not available on this server yet; leave it empty');
	  eq('unknown rate explained', old.fields.rate_limit_per_second.startsWith('per-key rate limits are not available'), true);
	  const named = k.explainKeyProblem(new api.Problem(400, {errors: {'allowed_functions[1]': 'is not a published function'}}), ['acme/a', 'acme/gone']);
	  eq('scope error named', named.fields['allowed_functions[1]'], 'is not a published function: acme/gone');
	  const key = {name: 'ci', monthly_spend_cap: '25.00', rate_limit_per_second: 5, alert_thresholds: [80, 100], expires_at: null, allowed_functions: ['acme/b', 'acme/a']};
	  const same = {name: ' ci ', monthly_spend_cap: '25.00', rate_limit_per_second: '5', alert_thresholds: '80, 100', expires_at: '', allowed_functions: 'acme/a, acme/b'};
	  eq('edit: nothing changed', JSON.stringify(k.keyChanges(key, same)), '{}');
	  eq('edit: changes and clears', JSON.stringify(k.keyChanges(key, {...same, name: 'nightly', monthly_spend_cap: '', rate_limit_per_second: '', alert_thresholds: '50 100', allowed_functions: ''})),
	    '{"name":"nightly","monthly_spend_cap":null,"rate_limit_per_second":null,"alert_thresholds":[50,100],"allowed_functions":null}');
	  eq('edit: a typed rate goes as typed', JSON.stringify(k.keyChanges(key, {...same, rate_limit_per_second: 'ten'})), '{"rate_limit_per_second":"ten"}');
	  return fails;
	})()`
	failures := browsertest.Get(b, "units", chromedp.Evaluate[[]string](js, chromedp.EvalAwaitPromise))
	for _, f := range failures {
		t.Error(f)
	}
}

// TestMissingRoutesShowNotAvailable runs the portal on an API without usage
// and invoices: those pages say so instead of failing.
func TestMissingRoutesShowNotAvailable(t *testing.T) {
	srv := startPortal(t, false)
	b := newBrowser(t)
	b.Do("sign up", browsertest.Navigate(srv.url+"/signup"), browsertest.Visible("#signup-form"),
		browsertest.Fill(`#signup-form input[name="name"]`, "Lin"), browsertest.Fill(`#signup-form input[name="email"]`, "lin@example.test"),
		browsertest.Fill(`#signup-form input[name="password"]`, "a fine long passphrase"), browsertest.Click(`#signup-form button[type="submit"]`), browsertest.Visible("#logout"))
	b.Do("usage", browsertest.Click(`#nav a[href="/usage"]`), browsertest.WaitText("#usage-charts [data-unavailable]", "Usage: not available"),
		browsertest.WaitText("#upcoming [data-unavailable]", "upcoming invoice: not available"))
	b.Do("invoices", browsertest.Click(`#nav a[href="/invoices"]`), browsertest.WaitText("#invoices [data-unavailable]", "Invoices: not available"))
	// The account's billing comes from the accounts store, always there;
	// what needs usage says it is not available.
	b.Do("billing", browsertest.Click(`#nav a[href="/billing"]`), browsertest.WaitText("#billing-account", "Active"),
		browsertest.WaitText("#billing-functions [data-unavailable]", "Usage: not available"), browsertest.Visible("#billing-keys .empty"))
	// Without the webhook and audit routes, those pages say so.
	b.Do("webhooks", browsertest.Click(`#nav a[href="/webhook-endpoints"]`), browsertest.WaitText("main [data-unavailable]", "Webhooks: not available"))
	if b.EvalBool("no webhook form", `!!document.querySelector('#webhook-form')`) {
		t.Error("the webhook form shows although the routes are missing")
	}
	b.Do("audit", browsertest.Click(`#nav a[href="/audit"]`), browsertest.WaitText("main [data-unavailable]", "Audit log: not available"))
	// The key routes are the real API's (accounts), extended fields and
	// all: a key with an expiry is made and listed with it.
	b.Do("keys", browsertest.Click(`#nav a[href="/keys"]`), browsertest.Visible("#key-form"), browsertest.Fill("#key-name", "lin"),
		browsertest.Fill("#key-expires", "2031-06-15T09:30"), browsertest.Click("#create-key"), browsertest.Visible("#new-key-value"),
		browsertest.WaitText("#keys-table", "lin"), browsertest.WaitText("#keys-table thead", "Expires"))
	b.Do("vendor", browsertest.Click(`#nav a[href="/vendor"]`), browsertest.Visible("#vendor-form"), browsertest.Fill("#vendor-slug", "lin"), browsertest.Fill("#vendor-name", "Lin"),
		browsertest.Click("#become-vendor"), browsertest.Visible("#new-function"))
	b.Do("statements", browsertest.Click(`#nav a[href="/statements"]`), browsertest.WaitText("#statements [data-unavailable]", "Statements: not available"))
	if b.EvalBool("no onboarding", `!!document.querySelector('#stripe-onboard')`) {
		t.Error("the Stripe button shows although the billing routes are missing")
	}
	b.CheckConsole("end")
}

func mustKinds(t *testing.T, kinds ...backend.Kind) *backend.Registry {
	t.Helper()
	r, err := backend.NewRegistry(kinds...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
