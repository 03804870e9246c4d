package main

import (
	"bytes"
	"context"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fnmarket/fnmarket/internal/browsertest"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

// TestPortalFullStack walks the portal's user story in headless Chromium
// against the whole program as `fnmarket serve` runs it: the real API, the
// real gateway in front of a real upstream, metering, the roll-up worker and
// billing. A vendor signs up, becomes a vendor and publishes functions (one
// priced in euros, one a WebAssembly module uploaded from a file); a wrong
// password is refused; a consumer signs up, creates a key, calls the
// functions with "try it", and sees the calls in usage (cost charted per
// currency) and in the upcoming invoice; a revoked key then fails in "try
// it"; the vendor logs back in, sees the calls and their revenue, and reads
// the wasm function's stderr in its log viewer. No page may log a console
// error.
func TestPortalFullStack(t *testing.T) {
	browsertest.RequireChromium(t)
	var upstreamCalls atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "" || r.Header.Get("Authorization") != "" {
			http.Error(w, "credentials leaked upstream", http.StatusInternalServerError)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var in any
		_ = json.Unmarshal(body, &in)
		upstreamCalls.Add(1)
		time.Sleep(3 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"tags": []string{"cat", "sofa"}, "path": r.URL.Path, "echo": in})
	}))
	t.Cleanup(upstream.Close)

	for i, be := range testenv.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			upstreamCalls.Store(0)
			env := baseEnv(t, be)
			env["FNMARKET_ROLLUP_INTERVAL"] = "300ms"
			inst := start(t, "serve", env)
			prefix := "fullstack-"
			if i > 0 {
				prefix += be.Name + "-"
			}
			b := browsertest.New(t, browsertest.Options{Prefix: prefix, BeforeShot: `document.getElementById('toast').classList.remove('show')`})
			portalStory(t, b, inst.url, upstream.URL+"/tag", upstreamCalls.Load)
		})
	}
}

const (
	fsVendorEmail, fsVendorPass     = "ada@acme.test", "correct horse battery"
	fsConsumerEmail, fsConsumerPass = "grace@example.test", "another long passphrase"
	fsFunction                      = "acme/image-tagger"
	fsFunctionPath                  = "/functions/acme/image-tagger"
	fsWasmFunction                  = "hello-wasm"
	fsWasmMsg                       = "hello from wasm"
	fsWasmLog                       = "note from wasm on stderr"
)

// stderrModule turns a wasmtest.MinimalModule into one that writes its
// message to stderr (fd 2) instead of stdout: _start's body begins with
// fd_write(1, iovs=0, 1, nwritten=8), and only that first i32.const changes.
func stderrModule(t *testing.T, code []byte) []byte {
	t.Helper()
	call := []byte{0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0}
	if bytes.Count(code, call) != 1 {
		t.Fatal("the minimal module's fd_write call is not where stderrModule expects it")
	}
	out := bytes.Clone(code)
	out[bytes.Index(out, call)+1] = 2
	return out
}

// invokeWith calls a function through the gateway with an API key and
// returns the call's X-Invocation-Id; the call must answer 200.
func invokeWith(t *testing.T, url, key string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, res.StatusCode, body)
	}
	id := res.Header.Get("X-Invocation-Id")
	if id == "" {
		t.Fatalf("POST %s answered no X-Invocation-Id", url)
	}
	return id
}

// portalStory is the user story, in one browser, against the server at
// base; upstreamCalls counts the calls the upstream at upstreamURL got.
func portalStory(t *testing.T, b *browsertest.Browser, base, upstreamURL string, upstreamCalls func() int64) {
	var (
		click    = browsertest.Click
		fill     = browsertest.Fill
		visible  = browsertest.Visible
		waitText = browsertest.WaitText
	)
	shots := map[string]string{}

	// A vendor signs up on an empty catalog and becomes a vendor.
	b.Do("open catalog", browsertest.Navigate(base+"/"), visible("#catalog-results .empty"))
	shots["catalog (empty)"] = b.Shot("catalog-empty")
	b.Do("sign up vendor", click(`#nav a[href="/signup"]`), visible("#signup-form"),
		fill(`#signup-form input[name="name"]`, "Ada Vendor"), fill(`#signup-form input[name="email"]`, fsVendorEmail),
		fill(`#signup-form input[name="password"]`, fsVendorPass), click(`#signup-form button[type="submit"]`),
		visible("#logout"), waitText("#nav .who", "Ada Vendor"))
	b.Do("become vendor", click(`#nav a[href="/vendor"]`), visible("#vendor-form"),
		fill("#vendor-slug", "acme"), fill("#vendor-name", "Acme Labs"), click("#become-vendor"), visible("#new-function"))

	// Publishing a function that points at the test upstream, at a price that
	// makes one call cost exactly $0.25 (no free calls, no compute price).
	price := func(name string) string { return fmt.Sprintf(`#function-form input[name="pricing.%s"]`, name) }
	b.Do("new function", click("#new-function"), visible("#function-form"),
		fill("#function-name", "image-tagger"), fill("#description", "Tags an image **fast**."),
		fill("#backend-url", upstreamURL), fill("#timeout-ms", "5000"),
		fill(price("per_call"), "0.25"), fill(price("per_compute_ms"), "0"), fill(price("free_calls_per_month"), "0"),
		waitText(`#pricing-preview tr[data-calls="10000"] td.billed`, "$2,500.00"))
	shots["vendor function editor"] = b.Shot("vendor-function-editor")
	b.Do("create function", click("#create-function"), visible("#versions-table"), waitText("#published-badge", "Unpublished"))
	// The function page loads its charts after the versions table: wait for
	// them, so the page has stopped moving before a button is clicked.
	b.Do("publish v1", visible("#fn-calls"), click(`button[data-publish="1"]`), waitText("#published-badge", "Published v1"))

	// A second function is priced in euros, so the consumer's month spans two
	// currencies: €0.50 a call.
	b.Do("new euro function", click(`#nav a[href="/vendor"]`), visible("#new-function"), click("#new-function"), visible("#function-form"),
		fill("#function-name", "geo-lookup"), fill("#description", "Finds a place."), fill("#backend-url", upstreamURL),
		fill(price("currency"), "EUR"), fill(price("per_call"), "0.50"), fill(price("per_compute_ms"), "0"), fill(price("free_calls_per_month"), "0"),
		click("#create-function"), visible("#versions-table"), visible("#fn-calls"), click(`button[data-publish="1"]`), waitText("#published-badge", "Published v1"))

	// A third function runs WebAssembly: the form uploads the module file
	// and the real wasm runtime checks it, with errors next to the fields.
	// v1 answers on stdout; v2 writes only to stderr (its log). v2 is
	// published first, then v1, so v1 is live and v2 can still be pinned.
	dir := t.TempDir()
	module := wasmtest.MinimalModule(wasmtest.Spec{Msg: fsWasmMsg})
	modPath, logPath, badPath := filepath.Join(dir, "hello.wasm"), filepath.Join(dir, "hello-log.wasm"), filepath.Join(dir, "no-start.wasm")
	for path, code := range map[string][]byte{
		modPath: module,
		logPath: stderrModule(t, wasmtest.MinimalModule(wasmtest.Spec{Msg: fsWasmLog + "\n"})),
		badPath: wasmtest.MinimalModule(wasmtest.Spec{Msg: "x", StartName: "main"}),
	} {
		if err := os.WriteFile(path, code, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(module)
	sha := hex.EncodeToString(sum[:])
	upload := func(form, path string) chromedp.Action[chromedp.Void] {
		return chromedp.SetUploadFiles(chromedp.CSS(form+" #backend-module"), []string{path})
	}
	b.Do("new wasm function", click(`#nav a[href="/vendor"]`), visible("#new-function"), click("#new-function"), visible("#function-form"),
		fill("#function-name", fsWasmFunction), fill("#description", "Says hello from WebAssembly."),
		click("#backend-type-wasm"), visible("#backend-module"), upload("#function-form", badPath), fill("#backend-memory-pages", "100000"),
		fill(price("per_call"), "0"), fill(price("per_compute_ms"), "0"), fill(price("free_calls_per_month"), "0"),
		click("#create-function"), waitText(`#function-form [data-error-for="backend.memory_pages"]`, "between 0"))
	b.Do("wasm module without _start", fill("#backend-memory-pages", ""), click("#create-function"),
		waitText(`#function-form [data-error-for="backend.module_base64"]`, "does not export a _start function"))
	b.Do("create wasm function", upload("#function-form", modPath), fill("#backend-memory-pages", "4"), click("#create-function"),
		visible("#versions-table"), waitText(`#versions-table tr[data-version="1"]`, "wasm · sha256 "+sha[:12]+"…"),
		waitText(`#versions-table tr[data-version="1"]`, "4 pages"), visible("#log-panel"), waitText("#log-empty", "No log lines yet"))
	b.Do("wasm v2 logs to stderr", waitText("#version-form #backend-module-hint", sha[:12]), upload("#version-form", logPath), click("#create-version"),
		visible(`#versions-table tr[data-version="2"]`), visible("#fn-calls"), click(`button[data-publish="2"]`), waitText("#published-badge", "Published v2"),
		click(`button[data-publish="1"]`), waitText("#published-badge", "Published v1"), waitText("#log-version", "v1 (live)"))
	shots["vendor wasm function"] = b.Shot("vendor-wasm-function")
	b.Do("log out vendor", click("#logout"), visible(`#nav a[href="/login"]`))

	// A wrong password shows the API's error and does not log in.
	b.Do("wrong password", click(`#nav a[href="/login"]`), visible("#login-form"),
		fill(`#login-form input[name="email"]`, fsVendorEmail), fill(`#login-form input[name="password"]`, "not the password"),
		click(`#login-form button[type="submit"]`))
	// A wrong password costs a full bcrypt comparison and the login
	// throttle's bookkeeping: slow under -race on a busy machine, so the
	// answer gets a step of its own.
	b.Do("wrong password answered", waitText("#login-form .form-error", "wrong email or password"))
	if !b.EvalBool("login error shown", `!document.querySelector('#login-form .form-error').hidden && !document.querySelector('#logout')`) {
		t.Error("the login error is hidden, or the wrong password logged in")
	}
	shots["wrong password"] = b.Shot("login-wrong-password")

	// A consumer signs up, finds the function and creates a key.
	b.Do("sign up consumer", click(`#login-form ~ p a[href^="/signup"]`), visible("#signup-form"),
		fill(`#signup-form input[name="name"]`, "Grace Consumer"), fill(`#signup-form input[name="email"]`, fsConsumerEmail),
		fill(`#signup-form input[name="password"]`, fsConsumerPass), click(`#signup-form button[type="submit"]`), visible("#logout"))
	b.Do("search", click(`#nav a[href="/catalog"]`), visible("#catalog-q"), fill("#catalog-q", "tagger"),
		waitText("#catalog-count", "1 function"), waitText("#catalog-results .card-price", "$0.25 / call"),
		fill("#catalog-q", ""), waitText("#catalog-count", "3 functions"))
	shots["catalog"] = b.Shot("catalog")
	b.Do("create key", click(`#nav a[href="/keys"]`), visible("#key-form"), fill("#key-name", "ci"), click("#create-key"),
		visible("#new-key-value"), waitText("#keys-table", "Active"))
	key := b.Value("#new-key-value")
	if len(key) < 20 {
		t.Fatalf("new key %q looks wrong", key)
	}
	shots["keys"] = b.Shot("keys")

	// Try it: a real call through the real gateway to the upstream.
	openFunction := browsertest.Steps(click(`#nav a[href="/catalog"]`), visible(`#catalog-results a[href="`+fsFunctionPath+`"]`),
		click(`#catalog-results a[href="`+fsFunctionPath+`"]`), visible("#try-it"))
	b.Do("open function", openFunction, waitText("#fn-description strong", "fast"), visible("#try-key-choice"),
		// No free calls: the next call's price, from the next-call route.
		waitText("#fn-next-call", "Your next call: 0.25 USD per call + 0 USD per compute-ms"))
	if !b.EvalBool("curl example", `document.querySelector('#curl-example').textContent.includes(location.origin + '/v1/invoke/acme/image-tagger')`) {
		t.Errorf("the curl example does not name this server's gateway: %q", b.Text("#curl-example"))
	}
	b.Do("try it", click("#try-send"), waitText("#try-status", "200"),
		waitText("#try-body", `"hello": "world"`), waitText("#try-body", `"path": "/tag"`), waitText("#try-body", `"sofa"`))
	computeMs, invocation := b.Text("#try-compute-ms"), strings.TrimSpace(b.Text("#try-invocation-id"))
	if n, err := strconv.Atoi(strings.TrimSpace(computeMs)); err != nil || n < 1 {
		t.Errorf("X-Compute-Ms shown as %q, want a whole number ≥ 1", computeMs)
	}
	if len(invocation) != 32 || strings.Trim(invocation, "0123456789abcdef") != "" {
		t.Errorf("X-Invocation-Id shown as %q, want 32 hex digits", invocation)
	}
	shots["function page"] = b.Shot("function-page")
	b.Do("try the euro function", click(`#nav a[href="/catalog"]`), click(`#catalog-results a[href="/functions/acme/geo-lookup"]`),
		visible("#try-key-choice"), waitText("#fn-pricing", "€0.50"), waitText(`#fn-quote td[data-quote="total_rounded"]`, "€5,000.00"), click("#try-send"), waitText("#try-status", "200"))
	b.Do("try the wasm function", click(`#nav a[href="/catalog"]`), click(`#catalog-results a[href="/functions/acme/`+fsWasmFunction+`"]`),
		visible("#try-key-choice"), click("#try-send"), waitText("#try-status", "200"), waitText("#try-body", fsWasmMsg))
	if got := strings.TrimSpace(b.Text("#try-body")); got != fsWasmMsg {
		t.Errorf("the wasm function answered %q, want %q", got, fsWasmMsg)
	}
	// v2, pinned, writes only to its log; the vendor reads it below.
	logInvocation := invokeWith(t, base+"/v1/invoke/acme/"+fsWasmFunction+"@2", key)

	// Usage and the upcoming invoice show both calls once the meter has
	// flushed (200 ms) and the worker has rolled them up (300 ms here). The
	// upcoming invoice answers USD first and other currencies under
	// other_currencies: the page shows each, and never adds dollars to euros.
	reloadUsage := click(`#nav a[href="/usage"]`)
	eventuallyShows(b, "usage shows the calls", 15*time.Second, reloadUsage, `(() => {
		const q = (s) => (document.querySelector(s) || {textContent: ''}).textContent;
		return q('#usage-calls') === '4' && q('#usage-table').includes('`+fsFunction+`') &&
			q('#upcoming-total') === '$0.25' && q('#upcoming-total-EUR') === '€0.50';
	})()`)
	b.Do("usage details", visible("#chart-calls svg rect"), waitText("#usage-cost", "$0.25 + €0.50"),
		waitText(`#upcoming [data-currency="USD"] .lines-table tbody`, fsFunction),
		waitText(`#upcoming [data-currency="EUR"] .lines-table tbody`, "acme/geo-lookup"),
		waitText("#usage-table", "acme/geo-lookup"), waitText("#usage-table", "acme/"+fsWasmFunction),
		// Costs per function are charted per currency, never summed across.
		waitText("#chart-cost-USD figcaption", "Cost per function (USD)"), waitText("#chart-cost-EUR figcaption", "Cost per function (EUR)"),
		waitText(`#upcoming [data-currency="EUR"] .lines-table tbody .line-kind`, "usage"))
	shots["usage"] = b.Shot("usage")
	b.Do("invoices", click(`#nav a[href="/invoices"]`), waitText("#invoices", "No invoices yet"))
	// The billing page: the key's spend per currency (priced as usage rows
	// are) and the next call of each function used this month.
	b.Do("billing", click(`#nav a[href="/billing"]`),
		waitText(`#billing-price-list li[data-function="`+fsFunction+`"]`, "0.25 USD per call + 0 USD per compute-ms"),
		waitText(`#billing-price-list li[data-function="acme/geo-lookup"]`, "0.5 EUR per call"),
		waitText("#billing-keys-table .key-spend", "$0.25 + €0.50"))

	if n := upstreamCalls(); n != 2 {
		t.Errorf("the upstream got %d calls, want exactly the two from try it", n)
	}

	// Revoking asks first; the revoked key then fails in "try it" (the
	// gateway drops revoked keys from its cache within 2 s, so a try in that
	// window may still get through).
	b.Do("revoke", click(`#nav a[href="/keys"]`), visible("button[data-revoke]"), click("button[data-revoke]"),
		visible("#confirm-revoke"), click("#confirm-revoke"), waitText("#keys-table", "Revoked"))
	b.Do("open function again", openFunction, visible("#try-key"), fill("#try-key", key))
	eventuallyShows(b, "revoked key refused", 10*time.Second, click("#try-send"),
		`(document.querySelector('#try-status') || {textContent: ''}).textContent.startsWith('401')`)
	b.Do("revoked answer", waitText("#try-body", "revoked"))
	shots["revoked key"] = b.Shot("try-revoked")
	b.Do("log out consumer", click("#logout"), visible(`#nav a[href="/login"]`))

	// The vendor logs back in and sees the call and its revenue.
	openVendorFunction := func(name string) chromedp.Action[chromedp.Void] {
		return browsertest.Steps(click(`#nav a[href="/vendor"]`), visible("#functions-table"),
			clickJS(fmt.Sprintf(`[...document.querySelectorAll('#functions-table a')].find((a) => a.textContent === %q)`, name)),
			waitText("#main h1", name), visible("#function-stats"))
	}
	b.Do("vendor login", click(`#nav a[href="/login"]`), visible("#login-form"),
		fill(`#login-form input[name="email"]`, fsVendorEmail), fill(`#login-form input[name="password"]`, fsVendorPass),
		click(`#login-form button[type="submit"]`), visible("#logout"), openVendorFunction("image-tagger"))
	eventuallyShows(b, "vendor sees the call", 10*time.Second, click(`button[data-range="week"]`),
		`(document.querySelector('#fn-calls') || {}).textContent === '1'`)
	b.Do("vendor stats", waitText("#fn-errors", "0.0%"), waitText("#fn-revenue", "$0.25"), visible("#chart-fn-latency circle"))
	shots["vendor function"] = b.Shot("vendor-function")
	b.Do("range day", click(`button[data-range="day"]`), waitText("#fn-calls", "1"), waitText("#fn-revenue", "$0.25"))
	b.Do("euro function revenue", openVendorFunction("geo-lookup"), waitText("#fn-calls", "1"), waitText("#fn-revenue", "€0.50"),
		visible("#chart-fn-revenue-EUR"))
	if b.EvalBool("no log viewer for http", `!!document.querySelector('#log-panel')`) {
		t.Error("an http-only function shows the log viewer")
	}

	// The wasm function's log: v1 (live) wrote nothing to stderr; v2's line
	// shows with its source and invocation id once the gateway stored it.
	b.Do("wasm log v1", openVendorFunction(fsWasmFunction), visible("#log-panel"), waitText("#log-version", "v1 (live)"), waitText("#log-empty", "No log lines yet"))
	b.Do("wasm log v2", fill("#log-version", "2"), visible("#log-lines"))
	eventuallyShows(b, "wasm log line", 10*time.Second, click("#log-refresh"), `(() => {
		const li = document.querySelector('#log-lines .log-line');
		return !!li && li.dataset.source === 'stderr' && li.querySelector('.log-text').textContent === '`+fsWasmLog+`' &&
			li.querySelector('.log-inv').textContent === '`+logInvocation+`' && li.querySelector('.log-source').textContent === 'stderr';
	})()`)
	shots["wasm log"] = b.Shot("vendor-wasm-log")

	// Statements come from issued invoices; the running month has none yet.
	// Payouts need Stripe, which this server lacks: the button says so.
	b.Do("statements", click(`#nav a[href="/statements"]`), waitText("#statements", "No statements yet"),
		waitText("#payouts-unavailable", "not configured"))
	shots["statements"] = b.Shot("statements")

	b.CheckConsole("end")
	for name, path := range shots {
		t.Logf("screenshot %s: %s", name, path)
	}
}

// eventuallyShows repeats reload (a click that redraws the page) until the
// JavaScript condition holds, within the given time: the page shows data
// that the server produces in the background.
func eventuallyShows(b *browsertest.Browser, step string, within time.Duration, reload chromedp.Action[chromedp.Void], cond string) {
	deadline := time.Now().Add(within)
	for {
		b.Do(step+": reload", reload)
		ctx, cancel := context.WithTimeout(b.Context(), time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond)))
		cancel()
		b.CheckConsole(step)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fail(step, fmt.Errorf("not within %s: %w", within, err))
		}
	}
}

// clickJS clicks the element a JavaScript expression finds, for elements CSS
// cannot select (by their text, say).
func clickJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		ok, err := chromedp.Evaluate[bool](`(() => { const el = `+expr+`; if (!el) return false; el.click(); return true; })()`)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("nothing to click: %s", expr)
		}
		return err
	})
}
