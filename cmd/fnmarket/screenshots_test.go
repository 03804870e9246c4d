package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fnmarket/fnmarket/internal/browsertest"
)

// maxScreenshotBytes bounds each picture the README shows, so the
// repository stays small.
const maxScreenshotBytes = 300 << 10

// TestPortalScreenshots opens the main portal pages of a `serve --demo`
// marketplace in headless Chromium as a visitor, the demo consumer and the
// demo vendor, checks that unit prices show at full precision (a price of
// $0.000002 per compute-ms is not $0.00) and that the charts draw, and
// writes a screenshot of each page, each under 300 KB.
//
// The README's pictures are made with
//
//	FNMARKET_SCREENSHOTS=docs go test ./cmd/fnmarket -run TestPortalScreenshots
//
// (a directory relative to the repository root); without the variable they
// go to artifacts/screenshots/.
func TestPortalScreenshots(t *testing.T) {
	browsertest.RequireChromium(t)
	dir := os.Getenv("FNMARKET_SCREENSHOTS")
	switch {
	case dir == "":
		dir = browsertest.ArtifactsDir(t)
	case !filepath.IsAbs(dir):
		dir = filepath.Join("..", "..", dir) // the test runs in cmd/fnmarket
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The pages show the default address, not the test's random port.
	env := map[string]string{"FNMARKET_DATA_DIR": t.TempDir(), "FNMARKET_PUBLIC_URL": "http://127.0.0.1:8080"}
	inst := start(t, "serve", env, "--demo")
	waitDemoSeeded(t, inst)
	base := inst.url
	b := browsertest.New(t, browsertest.Options{Width: 1100, Height: 1000, ShotsDir: browsertest.ArtifactsDir(t), Prefix: "docs-"})
	var (
		click    = browsertest.Click
		fill     = browsertest.Fill
		visible  = browsertest.Visible
		waitText = browsertest.WaitText
		navigate = browsertest.Navigate
	)
	// shot writes the viewport, scrolled to put the panel holding sel (or
	// the top of the page) under the header.
	shot := func(name, sel string) {
		t.Helper()
		scroll := `window.scrollTo(0, 0)`
		if sel != "" {
			scroll = `{ const el = document.querySelector(` + strconv.Quote(sel) + `); window.scrollTo(0, (el.closest('.panel, section') || el).getBoundingClientRect().top + window.scrollY - 76); }`
		}
		b.Do("prepare "+name, chromedp.Evaluate[chromedp.Void](`document.getElementById('toast').classList.remove('show'); `+scroll), chromedp.Sleep(400*time.Millisecond))
		buf := browsertest.Get(b, "screenshot "+name, chromedp.CaptureScreenshot())
		if len(buf) > maxScreenshotBytes {
			t.Errorf("screenshot %s is %d KB, over %d KB", name, len(buf)>>10, maxScreenshotBytes>>10)
		}
		path := filepath.Join(dir, "portal-"+name+".png")
		if err := os.WriteFile(path, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %s (%d KB)", name, path, len(buf)>>10)
	}
	login := func(email string) {
		b.Do("log in "+email, navigate(base+"/login"), visible("#login-form"),
			fill(`#login-form input[name="email"]`, email), fill(`#login-form input[name="password"]`, demoPassword),
			click(`#login-form button[type="submit"]`), visible("#logout"))
	}

	// A visitor: the catalog and a function's page, unit prices in full.
	b.Do("catalog", navigate(base+"/"), visible("#catalog-results .card"),
		waitText("#catalog-results", "$0.000002 / compute-ms"), waitText("#catalog-results", "$0.00001 / compute-ms"))
	shot("catalog", "")
	b.Do("function page", navigate(base+"/functions/northwind/hello"), visible("#fn-pricing"),
		waitText("#fn-pricing", "$0.000002"), waitText("#fn-pricing", "$0.0001"))
	shot("function", "")

	// The demo consumer: a week of usage, charted, and what it costs so far.
	login(demoConsumerEmail)
	b.Do("usage", navigate(base+"/usage"), visible("#chart-calls svg rect"), visible("#usage-cost"))
	if !b.EvalBool("usage counted", `Number(document.querySelector('#usage-calls').textContent.replace(/,/g, '')) > 1000`) {
		t.Error("the demo consumer's usage page shows no week of calls")
	}
	shot("usage", `#usage-calls`)
	b.Do("log out consumer", click("#logout"), visible(`#nav a[href="/login"]`))

	// The demo vendor: its functions with their prices, and one function's
	// calls, errors, latency and revenue.
	login(demoVendors()[0].email)
	b.Do("vendor dashboard", navigate(base+"/vendor"), visible("#functions-table"),
		waitText("#functions-table", "$0.000002 / compute-ms"))
	b.Do("vendor function", clickJS(`[...document.querySelectorAll('#functions-table a')].find((a) => a.textContent === 'hello')`),
		waitText("#main h1", "hello"), visible("#function-stats"), visible("#chart-fn-latency circle"))
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`Number((document.querySelector('#fn-calls') || {textContent: '0'}).textContent.replace(/,/g, '')) > 1000`)); err != nil {
		t.Errorf("the demo vendor's function page shows no week of calls: %v", err)
	}
	shot("vendor-function", "")
	b.CheckConsole("end")
}
