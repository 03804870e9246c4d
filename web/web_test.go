package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

const wantCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// newTestEcho stands in for the API's router: a few of its routes, and its
// 404 for everything else.
func newTestEcho(opts Options) *echo.Echo {
	e := echo.New()
	e.GET("/api/v1/me", func(c echo.Context) error {
		return c.JSON(http.StatusUnauthorized, map[string]string{"code": "unauthenticated"})
	})
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.POST("/api/v1/auth/login", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	Register(e, opts)
	return e
}

func httpGet(t *testing.T, h http.Handler, path string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestPagesServeIndexWithStrictHeaders(t *testing.T) {
	t.Parallel()
	e := newTestEcho(Options{})
	for _, path := range []string{"/", "/catalog", "/catalog?q=x", "/functions/acme/scan", "/keys", "/usage", "/invoices", "/invoices/inv_1", "/billing", "/webhook-endpoints", "/audit",
		"/statements", "/login", "/signup", "/vendor", "/vendor/new", "/vendor/functions/fn_1"} {
		t.Run(path, func(t *testing.T) {
			rec := httpGet(t, e, path)
			if got, want := rec.Code, http.StatusOK; got != want {
				t.Fatalf("status %d, want %d", got, want)
			}
			if got := rec.Header().Get("Content-Type"); got != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			for k, want := range map[string]string{
				"Content-Security-Policy": wantCSP,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "same-origin",
				"X-Frame-Options":         "DENY",
				"Cache-Control":           "no-cache",
			} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if !strings.Contains(rec.Body.String(), `<script type="module" src="/assets/`) {
				t.Errorf("page does not load the app module:\n%s", rec.Body)
			}
		})
	}
}

func TestReservedPathsAreNotShadowed(t *testing.T) {
	t.Parallel()
	e := newTestEcho(Options{})
	tests := []struct {
		path string
		want int
	}{
		{"/api/v1/me", http.StatusUnauthorized},
		{"/api/v1/no-such-route", http.StatusNotFound},
		{"/api", http.StatusNotFound},
		{"/v1/invoke/acme/scan", http.StatusNotFound},
		{"/webhooks/stripe", http.StatusNotFound},
		{"/healthz", http.StatusOK},
		{"/readyz", http.StatusNotFound},
		{"/metrics", http.StatusNotFound},
		{"/assets/nope/app.js", http.StatusOK}, // any version serves the current file, uncached
		{"/assets/x/nope.js", http.StatusNotFound},
		{"/assets/x/../../web.go", http.StatusNotFound},
	}
	for _, tt := range tests {
		rec := httpGet(t, e, tt.path)
		if got := rec.Code; got != tt.want {
			t.Errorf("GET %s: status %d, want %d", tt.path, got, tt.want)
		}
		if strings.Contains(rec.Body.String(), "<!doctype html>") {
			t.Errorf("GET %s answered the portal page", tt.path)
		}
	}
	// POST routes keep working beside the portal's GET catch-all.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", nil)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Errorf("POST /api/v1/auth/login: %d", rec.Code)
	}
}

func TestUnknownPortalPathIsA404Page(t *testing.T) {
	t.Parallel()
	rec := httpGet(t, newTestEcho(Options{}), "/no/such/page")
	if got, want := rec.Code, http.StatusNotFound; got != want {
		t.Fatalf("status %d, want %d", got, want)
	}
	if rec.Header().Get("Content-Security-Policy") != wantCSP || !strings.Contains(rec.Body.String(), "<!doctype html>") {
		t.Errorf("want the page with its CSP, got %q", rec.Body.String()[:min(80, rec.Body.Len())])
	}
}

func TestAssetsAreVersionedAndCached(t *testing.T) {
	t.Parallel()
	e := newTestEcho(Options{})
	p := newPortal(Options{})
	cur := "/assets/" + p.version + "/"
	tests := []struct {
		path, contentType, cache string
	}{
		{cur + "app.js", "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
		{cur + "style.css", "text/css; charset=utf-8", "public, max-age=31536000, immutable"},
		{cur + "favicon.svg", "image/svg+xml", "public, max-age=31536000, immutable"},
		{"/assets/old/app.js", "text/javascript; charset=utf-8", "no-cache"},
	}
	for _, tt := range tests {
		rec := httpGet(t, e, tt.path)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", tt.path, rec.Code)
		}
		if got := rec.Header().Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.contentType)
		}
		if got := rec.Header().Get("Cache-Control"); got != tt.cache {
			t.Errorf("GET %s: Cache-Control %q, want %q", tt.path, got, tt.cache)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tt.path)
		}
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Fatalf("GET %s: no ETag", tt.path)
		}
		if again := httpGet(t, e, tt.path, "If-None-Match", etag); again.Code != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: %d, want 304", tt.path, again.Code)
		}
	}
	if !strings.Contains(httpGet(t, e, "/").Body.String(), `src="`+cur+`app.js"`) {
		t.Errorf("index.html does not name the current asset version %s", p.version)
	}
}

func TestGatewayOriginJoinsConnectSrc(t *testing.T) {
	t.Parallel()
	tests := []struct{ origin, want string }{
		{"", "connect-src 'self';"},
		{"https://gw.example.com", "connect-src 'self' https://gw.example.com;"},
		{"https://gw.example.com:8443/some/path", "connect-src 'self' https://gw.example.com:8443;"},
		{"javascript:alert(1)", "connect-src 'self';"},
		{"gw.example.com; script-src *", "connect-src 'self';"},
	}
	for _, tt := range tests {
		if got := contentSecurityPolicy(tt.origin); !strings.Contains(got, tt.want) {
			t.Errorf("origin %q: CSP %q, want it to contain %q", tt.origin, got, tt.want)
		}
	}
}

// TestSourcesStayInsideThePolicy reads the embedded front end and fails on
// anything that would parse HTML from strings, run strings as code, keep a
// secret in web storage, load from another origin, or need inline script or
// style.
func TestSourcesStayInsideThePolicy(t *testing.T) {
	t.Parallel()
	banned := []struct {
		re   *regexp.Regexp
		why  string
		exts string
	}{
		{regexp.MustCompile(`\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|DOMParser`), "parses HTML from strings", ".js"},
		{regexp.MustCompile(`\beval\(|new Function\(|setTimeout\(\s*['"]`), "runs strings as code", ".js"},
		{regexp.MustCompile(`localStorage|sessionStorage|indexedDB`), "keeps data in web storage", ".js"},
		{regexp.MustCompile(`https?://(?:[a-z0-9.-]+)\.(?:com|net|org|io|dev)/[^\s'"]*\.(?:js|css|woff2?)`), "loads from another origin", ".js.css.html"},
		{regexp.MustCompile(`(?i)<script(?:(?:\s+(?:type|src)="[^"]*")*)\s*>[^<\s]`), "has inline script", ".html"},
		{regexp.MustCompile(`(?i)\sstyle\s*=|\son[a-z]+\s*=|<style`), "has inline style or handlers", ".html"},
		{regexp.MustCompile(`@import\s+url\(\s*['"]?https?:|url\(\s*['"]?https?:`), "loads from another origin", ".css"},
	}
	err := fs.WalkDir(embedded, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(embedded, name)
		if err != nil {
			return err
		}
		ext := name[strings.LastIndex(name, "."):]
		for _, b := range banned {
			if !strings.Contains(b.exts, ext) {
				continue
			}
			if loc := b.re.FindIndex(body); loc != nil {
				t.Errorf("%s %s: %q", name, b.why, body[loc[0]:loc[1]])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
