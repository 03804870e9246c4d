package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

const chromiumPath = "/usr/bin/chromium"

// portalServer is the API with the portal registered on it, the fake
// gateway on /v1/invoke/, and an upstream function.
type portalServer struct {
	url      string
	upstream string
	gateway  *fakeGateway
}

// startPortal serves the portal; metered says whether the usage and billing
// routes exist (they are wired by other parts, and may be missing).
func startPortal(t *testing.T, metered bool) *portalServer {
	t.Helper()
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
	cat := catalog.NewStore(db, clock)
	gw := newFakeGateway(acc, cat)
	deps := api.Deps{
		Accounts: acc,
		Catalog:  cat,
		Sessions: api.NewSessions([]byte("browser-test-secret-browser-test-secret"), time.Hour, clock),
	}
	if metered {
		deps.Usage, deps.Billing = gw, gw
	}
	srv := api.NewServer(deps)
	Register(srv.Echo(), Options{})
	mux := http.NewServeMux()
	mux.Handle("/v1/invoke/", gw)
	mux.Handle("/", srv)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return &portalServer{url: ts.URL, upstream: up.URL + "/tag", gateway: gw}
}

// browser is headless Chromium with a fresh profile. It collects every
// console error, uncaught exception and non-network error log entry (CSP
// violations among them), and each step fails the test on any of them.
type browser struct {
	t      *testing.T
	ctx    context.Context
	shots  string
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Chromium is required in CI: %s: %v (apt-get install chromium)", chromiumPath, err)
		}
		t.Skipf("Chromium not found at %s; install it with `apt-get install chromium` to run the browser tests", chromiumPath)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	b := &browser{t: t, shots: screenshotDir(t)}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b.ctx = ctx
	// The first run starts the browser; it gets no timeout, which would stop
	// the browser with it. Each later step has its own.
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{})
		return err
	})); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

// listen runs on the browser's read loop: it only records.
func (b *browser) listen(ev any) {
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				if len(a.Value) > 0 {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			b.record("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil {
			msg += " " + d.Exception.Description
		}
		b.record(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
	case *cdplog.EventEntryAdded:
		// Network errors (a 401 the page expects, say) are the API's
		// answers, not page faults; everything else at error level is.
		if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
			b.record(fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("FNMARKET_ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "artifacts", "screenshots")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatalf("screenshot dir: %v", err)
	}
	return abs
}

func (b *browser) record(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, msg)
}

// checkConsole fails the test when the page logged an error since the last check.
func (b *browser) checkConsole(step string) {
	b.t.Helper()
	b.mu.Lock()
	errs := b.errors
	b.errors = nil
	b.mu.Unlock()
	for _, e := range errs {
		b.t.Errorf("%s: browser error: %s", step, e)
	}
}

// fail saves a screenshot and the page's text, then stops the test.
func (b *browser) fail(step string, err error) {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if buf, serr := chromedp.Run(sctx, chromedp.FullScreenshot(100)); serr == nil {
		_ = os.WriteFile(filepath.Join(b.shots, "failed-"+strings.ReplaceAll(step, " ", "-")+".png"), buf, 0o644)
	}
	text, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`document.querySelector('main') ? document.querySelector('main').innerText : ''`))
	b.checkConsole(step)
	b.t.Fatalf("%s: %v\npage text: %.800s", step, err, text)
}

// do runs steps within 20 s.
func (b *browser) do(step string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(step, err)
	}
	b.checkConsole(step)
}

// get runs one action and returns its value.
func get[T any](b *browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fail(step, err)
	}
	b.checkConsole(step)
	return v
}

// shot writes a full-page PNG screenshot.
func (b *browser) shot(name string) string {
	b.t.Helper()
	// A toast is transient; keep it out of the picture.
	b.do("hide toast", chromedp.Evaluate[chromedp.Void](`document.getElementById('toast').classList.remove('show'); window.scrollTo(0, 0)`), chromedp.Sleep(300*time.Millisecond))
	buf := get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatalf("write screenshot: %v", err)
	}
	return path
}

func evalBool(b *browser, step, js string) bool {
	b.t.Helper()
	return get(b, step, chromedp.Evaluate[bool](js))
}

// fill sets an input's value as typing would, firing input and change.
func fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (!el) return false;
			el.focus(); el.value = %q; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, sel, value)
		ok, err := chromedp.Evaluate[bool](js)(ctx, t)
		if err == nil && !ok {
			err = fmt.Errorf("no element %s", sel)
		}
		return err
	})
}

// waitLocation waits for a full navigation to end at the URL's path and query.
func waitLocation(suffix string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		var loc string
		for {
			var err error
			if loc, err = chromedp.Location()(ctx, t); err == nil && strings.HasSuffix(loc, suffix) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for location %s (at %s): %w", suffix, loc, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// waitText waits until the element's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		js := fmt.Sprintf(`(() => { const el = document.querySelector(%q); return !!el && el.textContent.includes(%q); })()`, sel, want)
		if _, err := chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))(ctx, t); err != nil {
			got, _ := chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {textContent: '<no element>'}).textContent`, sel))(ctx, t)
			return fmt.Errorf("waiting for %q in %s: %w (text is %q)", want, sel, err, got)
		}
		return nil
	})
}

func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}
func typeKeys(sel, keys string) chromedp.Action[chromedp.Void] {
	return chromedp.SendKeys(chromedp.CSS(sel), keys)
}
func textOf(b *browser, sel string) string {
	return get(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// TestPortalInBrowser walks a vendor and a consumer through the portal in
// headless Chromium against the real API.
func TestPortalInBrowser(t *testing.T) {
	srv := startPortal(t, true)
	b := newBrowser(t)
	shots := map[string]string{}
	const vendorEmail, vendorPass = "ada@acme.test", "correct horse battery"

	// The catalog is empty; a vendor signs up.
	b.do("open catalog", chromedp.Navigate(srv.url+"/"), visible("#catalog-results .empty"))
	b.do("sign up vendor", click(`#nav a[href="/signup"]`), visible("#signup-form"),
		typeKeys(`#signup-form input[name="name"]`, "Ada Vendor"),
		typeKeys(`#signup-form input[name="email"]`, vendorEmail),
		typeKeys(`#signup-form input[name="password"]`, vendorPass),
		typeKeys(`#signup-form input[name="password"]`, "\r"), // submit by keyboard
		visible("#logout"), waitText("#nav .who", "Ada Vendor"))

	// Becoming a vendor: a bad slug shows the API's message next to the field.
	b.do("bad slug", click(`#nav a[href="/vendor"]`), visible("#vendor-form"),
		fill("#vendor-slug", "A!"), fill("#vendor-name", "Acme Labs"), click("#become-vendor"),
		waitText(`#vendor-form [data-error-for="slug"]`, "3 to 40 characters"))
	if !evalBool(b, "slug invalid", `document.querySelector('#vendor-slug').getAttribute('aria-invalid') === 'true'`) {
		t.Error("the slug input is not marked aria-invalid")
	}
	b.do("become vendor", fill("#vendor-slug", "acme"), click("#become-vendor"), visible("#new-function"))

	// Publishing a function: the live preview prices exactly.
	description := "Tags an image **fast** with *care*.\n\n- returns `tags`\n- [docs](https://example.com/docs)\n- [bad](javascript:alert(1))\n\n<img src=x onerror=alert(1)>\n\n```\ncurl -d @cat.jpg\n```"
	b.do("new function form", click("#new-function"), visible("#function-form"),
		fill("#function-name", "image-tagger"), fill("#description", description), fill("#backend-url", srv.upstream), fill("#timeout-ms", "3000"),
		waitText("#description-preview strong", "fast"))
	preview := func(calls, col string) string {
		return fmt.Sprintf(`#pricing-preview tr[data-calls="%s"] td.%s`, calls, col)
	}
	b.do("preview flat", waitText(preview("10000", "billed"), "$1.99"), waitText(preview("1000000", "billed"), "$199.99"))
	b.do("preview avg ms", fill(".preview-assume input", "12.5"), waitText(preview("10000", "exact"), "$1.24"))
	// Tiers: 100k calls at 0.0001 then 0.00005; 1M calls with 100 free and 12.5 ms
	// = 10 + 899,900 × 0.00005 + 25 = 79.995, billed half-even to $80.00.
	b.do("preview tiers", click(`.radio-row input[value="tiers"]`), waitText(preview("1000000", "exact"), "$79.995"), waitText(preview("1000000", "billed"), "$80.00"))
	b.do("preview back to flat", click(`.radio-row input[value="flat"]`), waitText(preview("1000000", "billed"), "$124.99"))
	shots["vendor function editor"] = b.shot("vendor-function-editor")
	b.do("create function", click("#create-function"), visible("#versions-table"), waitText("#published-badge", "Unpublished"))

	// Versions: publish v1, add v2, publish it, unpublish, publish again.
	b.do("publish v1", click(`button[data-publish="1"]`), waitText("#published-badge", "Published v1"))
	b.do("add v2", fill("#version-form #timeout-ms", "4000"), click("#create-version"), visible(`#versions-table tr[data-version="2"]`))
	b.do("publish v2", click(`button[data-publish="2"]`), waitText("#published-badge", "Published v2"))
	b.do("unpublish", click("#unpublish"), waitText("#published-badge", "Unpublished"))
	b.do("republish v2", click(`button[data-publish="2"]`), waitText("#published-badge", "Published v2"))
	b.do("log out vendor", click("#logout"), visible(`#nav a[href="/login"]`))

	// A wrong password shows the API's error on the form.
	b.do("wrong password", click(`#nav a[href="/login"]`), visible("#login-form"),
		typeKeys(`#login-form input[name="email"]`, vendorEmail),
		typeKeys(`#login-form input[name="password"]`, "not the password"),
		click(`#login-form button[type="submit"]`), waitText("#login-form .form-error", "wrong email or password"))
	if !evalBool(b, "error visible", `!document.querySelector('#login-form .form-error').hidden && !document.querySelector('#logout')`) {
		t.Error("the login error is hidden, or the wrong password logged in")
	}

	// A consumer signs up and finds the function.
	b.do("sign up consumer", click(`#login-form ~ p a[href^="/signup"]`), visible("#signup-form"),
		fill(`#signup-form input[name="name"]`, "Grace Consumer"), fill(`#signup-form input[name="email"]`, "grace@example.test"),
		fill(`#signup-form input[name="password"]`, "another long passphrase"), click(`#signup-form button[type="submit"]`), visible("#logout"))
	b.do("search", click(`#nav a[href="/catalog"]`), visible("#catalog-q"), fill("#catalog-q", "tagger"), waitText("#catalog-count", "1 function"),
		waitText("#catalog-results .card-price", "$0.0001 / call"))
	shots["catalog"] = b.shot("catalog")
	b.do("open function", click(`#catalog-results a[href="/functions/acme/image-tagger"]`), visible("#try-it"), waitText("#fn-description strong", "fast"))
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
		if !evalBool(b, name, js) {
			t.Errorf("function page: %s", name)
		}
	}

	// API keys: a bad cap is refused next to its field; a good key is shown once.
	b.do("bad cap", click(`#nav a[href="/keys"]`), visible("#key-form"), fill("#key-name", "ci"), fill("#key-cap", "lots"), click("#create-key"),
		waitText(`#key-form [data-error-for="monthly_spend_cap"]`, "decimal"))
	b.do("create key", fill("#key-cap", "25"), click("#create-key"), visible("#new-key-value"),
		waitText("#keys-table", "Active"), waitText("#keys-table", "$25.00"))
	key := get(b, "read key", chromedp.Value(chromedp.CSS("#new-key-value")))
	if len(key) < 20 {
		t.Fatalf("new key %q looks wrong", key)
	}
	shots["keys"] = b.shot("keys")

	// Try it with the key held in this tab's memory.
	b.do("back to the function", click(`#nav a[href="/catalog"]`), visible(`#catalog-results a[href="/functions/acme/image-tagger"]`),
		click(`#catalog-results a[href="/functions/acme/image-tagger"]`), visible("#try-key-choice"))
	b.do("try it", click("#try-send"))
	b.do("try it answers", waitText("#try-status", "200"), waitText("#try-body", `"hello": "world"`))
	computeMs, invocation := textOf(b, "#try-compute-ms"), textOf(b, "#try-invocation-id")
	if n, err := strconv.Atoi(strings.TrimSpace(computeMs)); err != nil || n < 1 {
		t.Errorf("X-Compute-Ms shown as %q, want a whole number ≥ 1", computeMs)
	}
	if !strings.HasPrefix(invocation, "inv_test_") {
		t.Errorf("X-Invocation-Id shown as %q", invocation)
	}
	if got := len(srv.gateway.billed()); got != 1 {
		t.Errorf("the gateway billed %d calls, want 1", got)
	}
	shots["function page"] = b.shot("function-page")

	// Revoking asks first; the revoked key then fails in "try it".
	b.do("revoke", click(`#nav a[href="/keys"]`), visible("button[data-revoke]"), click("button[data-revoke]"), visible("#confirm-revoke"),
		click("#confirm-revoke"), waitText("#keys-table", "Revoked"))
	b.do("try revoked", click(`#nav a[href="/catalog"]`), visible(`#catalog-results a[href="/functions/acme/image-tagger"]`),
		click(`#catalog-results a[href="/functions/acme/image-tagger"]`), visible("#try-key"), fill("#try-key", key), click("#try-send"),
		waitText("#try-status", "401"), waitText("#try-body", "unauthenticated"))
	if got := len(srv.gateway.billed()); got != 1 {
		t.Errorf("after the refused call the gateway billed %d calls, want still 1", got)
	}

	// Usage and the running invoice show the call.
	b.do("usage", click(`#nav a[href="/usage"]`), waitText("#usage-calls", "1"), visible("#chart-calls svg rect"),
		waitText("#usage-table", "acme/image-tagger"), waitText("#upcoming", "acme/image-tagger"), waitText("#upcoming-total", "$0.00"))
	shots["usage"] = b.shot("usage")
	b.do("invoices", click(`#nav a[href="/invoices"]`), visible("details.invoice"), click("details.invoice summary"), waitText("details.invoice", "acme/legacy"),
		click(`details.invoice a[href="/invoices/inv_past_1"]`), waitText("#invoice-total", "$12.34"))

	// Phone width: nothing overflows sideways.
	b.do("phone", chromedp.EmulateViewport(390, 844), click(`#nav a[href="/catalog"]`), visible("#catalog-results .card"))
	if !evalBool(b, "no overflow", `document.documentElement.scrollWidth <= window.innerWidth + 1`) {
		w := get(b, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`))
		t.Errorf("the catalog is %d px wide at a 390 px viewport", w)
	}
	shots["catalog (phone)"] = b.shot("catalog-phone")
	b.do("desktop", chromedp.EmulateViewport(1280, 900), click("#logout"), visible(`#nav a[href="/login"]`))

	// The vendor logs in again and sees the call and the revenue.
	b.do("vendor login", click(`#nav a[href="/login"]`), visible("#login-form"),
		fill(`#login-form input[name="email"]`, vendorEmail), fill(`#login-form input[name="password"]`, vendorPass),
		click(`#login-form button[type="submit"]`), visible("#logout"),
		click(`#nav a[href="/vendor"]`), visible("#functions-table"), click(`#functions-table a`), visible("#function-stats"),
		waitText("#fn-calls", "1"), waitText("#fn-errors", "0.0%"), visible("#chart-fn-latency circle"))
	revenue := textOf(b, "#fn-revenue")
	if !strings.HasPrefix(revenue, "$0.0") || revenue == "$0.00" {
		t.Errorf("revenue shows %q, want the exact compute charge of one free call", revenue)
	}
	b.do("range day", click(`button[data-range="day"]`), waitText("#fn-calls", "1"))
	shots["vendor function"] = b.shot("vendor-function")
	b.do("statements", click(`#nav a[href="/statements"]`), visible("#statements-table"), waitText("#statements-table", "$96.00"), visible("#stripe-onboard"))
	shots["statements"] = b.shot("statements")
	b.do("stripe onboarding", click("#stripe-onboard"), waitLocation("/statements?stripe=connected"), visible("#statements-table"))

	// No page logged an error at any step (each step checked), and once more at the end.
	b.checkConsole("end")
	for name, path := range shots {
		t.Logf("screenshot %s: %s", name, path)
	}
}

// TestFrontEndUnits runs the exact money math and the Markdown renderer in
// the browser, where they live.
func TestFrontEndUnits(t *testing.T) {
	srv := startPortal(t, true)
	b := newBrowser(t)
	b.do("open", chromedp.Navigate(srv.url+"/"), visible("#catalog-results"))
	js := `(async () => {
	  const base = document.querySelector('script[type=module]').src.replace(/app\.js$/, '');
	  const m = await import(base + 'money.js');
	  const md = await import(base + 'markdown.js');
	  const fails = [];
	  const eq = (name, got, want) => { if (got !== want) fails.push(name + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want)); };
	  const flat = {per_call: '0.0001', per_compute_ms: '0.000002', free_calls_per_month: 100};
	  const cases = [
	    ['no calls', flat, 0n, '50', '0', '0.00'],
	    ['all free', flat, 100n, '50', '0.01', '0.01'],
	    ['10k', flat, 10000n, '50', '1.99', '1.99'],
	    ['1M', flat, 1000000n, '50', '199.99', '199.99'],
	    ['0.1 + 0.2 stays exact', {per_call: '0.1', per_compute_ms: '0.2', free_calls_per_month: 0}, 1n, '1', '0.3', '0.30'],
	    ['half-even down', {per_call: '0.125', per_compute_ms: '0', free_calls_per_month: 0}, 1n, '0', '0.125', '0.12'],
	    ['half-even up', {per_call: '0.135', per_compute_ms: '0', free_calls_per_month: 0}, 1n, '0', '0.135', '0.14'],
	    ['tiny prices', {per_call: '0.000000000001', per_compute_ms: '0.000000000001', free_calls_per_month: 0}, 3n, '2', '0.000000000009', '0.00'],
	    ['huge volume', {per_call: '0.0001', per_compute_ms: '0', free_calls_per_month: 0}, 9007199254740993n, '0', '900719925474.0993', '900719925474.10'],
	    ['tiers', {per_compute_ms: '0', free_calls_per_month: 10, tiers: [{up_to: 100, per_call: '0.01'}, {up_to: 0, per_call: '0.001'}]}, 1010n, '0', '1.9', '1.90'],
	  ];
	  for (const [name, p, calls, ms, exact, billed] of cases) {
	    const c = m.monthCost(p, calls, ms);
	    eq(name + ' exact', m.toString(c.total).replace(/,/g, ''), exact);
	    eq(name + ' billed', m.toString(c.rounded, 2).replace(/,/g, ''), billed);
	  }
	  eq('parse rejects negatives', m.parseDec('-1'), null);
	  eq('parse rejects exponents', m.parseDec('1e3'), null);
	  eq('money', m.money(m.dec('1234.5'), 'USD', 2), '$1,234.50');
	  eq('callsCost continues tiers', m.toString(m.add(m.callsCost({tiers: [{up_to: 2, per_call: '1'}, {up_to: 0, per_call: '0.5'}]}, 0, 3), m.callsCost({tiers: [{up_to: 2, per_call: '1'}, {up_to: 0, per_call: '0.5'}]}, 3, 2))), '3.5');
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
	  return fails;
	})()`
	failures := get(b, "units", chromedp.Evaluate[[]string](js, chromedp.EvalAwaitPromise))
	for _, f := range failures {
		t.Error(f)
	}
}

// TestMissingRoutesShowNotAvailable runs the portal on an API without usage
// and billing: those pages say so instead of failing.
func TestMissingRoutesShowNotAvailable(t *testing.T) {
	srv := startPortal(t, false)
	b := newBrowser(t)
	b.do("sign up", chromedp.Navigate(srv.url+"/signup"), visible("#signup-form"),
		fill(`#signup-form input[name="name"]`, "Lin"), fill(`#signup-form input[name="email"]`, "lin@example.test"),
		fill(`#signup-form input[name="password"]`, "a fine long passphrase"), click(`#signup-form button[type="submit"]`), visible("#logout"))
	b.do("usage", click(`#nav a[href="/usage"]`), waitText("#usage-charts [data-unavailable]", "Usage: not available"),
		waitText("#upcoming [data-unavailable]", "upcoming invoice: not available"))
	b.do("invoices", click(`#nav a[href="/invoices"]`), waitText("#invoices [data-unavailable]", "Invoices: not available"))
	b.do("vendor", click(`#nav a[href="/vendor"]`), visible("#vendor-form"), fill("#vendor-slug", "lin"), fill("#vendor-name", "Lin"),
		click("#become-vendor"), visible("#new-function"))
	b.do("statements", click(`#nav a[href="/statements"]`), waitText("#statements [data-unavailable]", "Statements: not available"))
	if evalBool(b, "no onboarding", `!!document.querySelector('#stripe-onboard')`) {
		t.Error("the Stripe button shows although the billing routes are missing")
	}
	b.checkConsole("end")
}
