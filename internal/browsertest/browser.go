package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium package installs the browser.
const ChromiumPath = "/usr/bin/chromium"

// StepTimeout bounds each step run by [Browser.Do] and [Get].
const StepTimeout = 20 * time.Second

// Options tune [New]. The zero value is a 1280×900 window writing
// screenshots to [ArtifactsDir] with no name prefix.
type Options struct {
	// ShotsDir is where screenshots go; "" means ArtifactsDir(t).
	ShotsDir string
	// Prefix starts every screenshot's file name, failure shots included
	// (e.g. "fullstack-").
	Prefix string
	// BeforeShot is JavaScript run before each screenshot, e.g. to hide a
	// transient toast; "" runs nothing.
	BeforeShot string
	// Width and Height size the window; 0 means 1280×900.
	Width, Height int
}

// Browser is headless Chromium with a fresh profile, driven step by step
// for one test. It records every console error, uncaught exception and
// non-network error log entry; each step fails the test on any of them.
type Browser struct {
	t    testing.TB
	ctx  context.Context
	opts Options

	mu     sync.Mutex
	errors []string
}

// New starts Chromium for t; it is stopped when t ends. When Chromium is
// not installed, New skips t, or fails it if the CI environment variable is
// set.
func New(t testing.TB, opts Options) *Browser {
	t.Helper()
	RequireChromium(t)
	if opts.ShotsDir == "" {
		opts.ShotsDir = ArtifactsDir(t)
	} else if err := os.MkdirAll(opts.ShotsDir, 0o755); err != nil {
		t.Fatalf("screenshot dir: %v", err)
	}
	if opts.Width == 0 || opts.Height == 0 {
		opts.Width, opts.Height = 1280, 900
	}
	alloc := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox, // containers run as root, without user namespaces
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // small /dev/shm in containers
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(opts.Width, opts.Height),
	}
	b := &Browser{t: t, opts: opts}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), alloc...)
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

// RequireChromium skips t when Chromium is not installed, or fails it when
// the CI environment variable is set (CI must run the browser tests).
func RequireChromium(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Chromium is required in CI: %s: %v (apt-get install chromium)", ChromiumPath, err)
		}
		t.Skipf("Chromium not found at %s; install it with `apt-get install chromium` to run the browser tests", ChromiumPath)
	}
}

// ArtifactsDir returns $FNMARKET_ARTIFACTS_DIR, or else
// <module root>/artifacts/screenshots (the module root being the nearest
// directory above the working directory with a go.mod), creating it.
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("FNMARKET_ARTIFACTS_DIR")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("screenshot dir: %v", err)
		}
		dir = filepath.Join(root, "artifacts", "screenshots")
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

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; set FNMARKET_ARTIFACTS_DIR")
		}
		dir = parent
	}
}

// Context is the browser tab's context, for chromedp calls the helpers do
// not cover. It has no deadline: add one.
func (b *Browser) Context() context.Context { return b.ctx }

// listen runs on the browser's read loop: it only records.
func (b *Browser) listen(ev any) {
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
		// Network errors (a 401 the page expects, say) are the server's
		// answers, not page faults; everything else at error level is.
		if ev.Entry.Level == cdplog.EntryLevelError && ev.Entry.Source != cdplog.EntrySourceNetwork {
			b.record(fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func (b *Browser) record(msg string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errors = append(b.errors, msg)
}

// CheckConsole fails the test (without stopping it) for each error the page
// logged since the last check. Every step checks; call it once more at the
// end of a test.
func (b *Browser) CheckConsole(step string) {
	b.t.Helper()
	b.mu.Lock()
	errs := b.errors
	b.errors = nil
	b.mu.Unlock()
	for _, e := range errs {
		b.t.Errorf("%s: browser error: %s", step, e)
	}
}

// Fail saves a screenshot ("<prefix>failed-<step>.png") and the page's text,
// then stops the test.
func (b *Browser) Fail(step string, err error) {
	b.t.Helper()
	sctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if buf, serr := chromedp.Run(sctx, chromedp.FullScreenshot(100)); serr == nil {
		_ = os.WriteFile(filepath.Join(b.opts.ShotsDir, b.opts.Prefix+"failed-"+fileSafe(step)+".png"), buf, 0o644)
	}
	text, _ := chromedp.Run(sctx, chromedp.Evaluate[string](`(document.querySelector('main') || document.body || {innerText: ''}).innerText`))
	b.CheckConsole(step)
	b.t.Fatalf("%s: %v\npage text: %.800s", step, err, text)
}

func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

// Do runs the actions of one named step within [StepTimeout], stopping the
// test (see [Browser.Fail]) if one fails, then checks the console.
func (b *Browser) Do(step string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.Fail(step, err)
	}
	b.CheckConsole(step)
}

// Get runs one action as a named step, like [Browser.Do], and returns its
// value.
func Get[T any](b *Browser, step string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.Fail(step, err)
	}
	b.CheckConsole(step)
	return v
}

// EvalBool evaluates a JavaScript expression that yields a boolean.
func (b *Browser) EvalBool(step, js string) bool {
	b.t.Helper()
	return Get(b, step, chromedp.Evaluate[bool](js))
}

// Text returns the visible text of the first element matching the CSS
// selector.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return Get(b, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// Value returns the value of the first input matching the CSS selector.
func (b *Browser) Value(sel string) string {
	b.t.Helper()
	return Get(b, "value of "+sel, chromedp.Value(chromedp.CSS(sel)))
}

// Shot writes a full-page PNG screenshot named <prefix><name>.png, after
// running Options.BeforeShot and scrolling to the top, and returns its path.
func (b *Browser) Shot(name string) string {
	b.t.Helper()
	js := "window.scrollTo(0, 0)"
	if b.opts.BeforeShot != "" {
		js = b.opts.BeforeShot + "; " + js
	}
	b.Do("prepare screenshot "+name, chromedp.Evaluate[chromedp.Void](js), chromedp.Sleep(300*time.Millisecond))
	buf := Get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(b.opts.ShotsDir, b.opts.Prefix+name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		b.t.Fatalf("write screenshot: %v", err)
	}
	return path
}
