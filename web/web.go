package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

//go:embed static
var embedded embed.FS

// Options configure the portal.
type Options struct {
	// GatewayOrigin is the scheme://host[:port] of the gateway when it is
	// served from another origin than the portal; it is added to the
	// Content-Security-Policy's connect-src so the "try it" box may call it
	// (the gateway must then also answer CORS and expose X-Compute-Ms and
	// X-Invocation-Id). Empty, or anything but an http(s) origin, means the
	// gateway shares the portal's origin.
	GatewayOrigin string
}

// pagePaths are the portal's client-side routes; a GET of any of them answers
// index.html and the script draws the page. Paths under /api/, /v1/,
// /webhooks/, /assets/ and the operations routes are never among them.
var pagePaths = []string{
	"/",
	"/catalog",
	"/functions/:vendor/:name",
	"/login",
	"/signup",
	"/keys",
	"/usage",
	"/invoices",
	"/invoices/:id",
	"/billing",
	"/webhook-endpoints",
	"/audit",
	"/statements",
	"/vendor",
	"/vendor/new",
	"/vendor/functions/:id",
}

// reservedPrefixes belong to the API, the gateway and operations: the
// portal's catch-all never answers for them, so their 404s stay problem+json.
var reservedPrefixes = []string{"/api", "/v1", "/webhooks", "/assets", "/healthz", "/readyz", "/metrics"}

// contentTypes are the types of the embedded assets, set explicitly so the
// answer does not depend on the host's mime tables.
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".html": "text/html; charset=utf-8",
	".png":  "image/png",
}

type portal struct {
	csp     string
	version string
	index   []byte
	assets  map[string]asset // by path below static/assets
}

type asset struct {
	body []byte
	etag string
}

// Register adds the portal to e: index.html for every client-side route (and,
// with status 404, for other unreserved GET paths), the embedded assets under
// /assets/, and security headers on all of them.
func Register(e *echo.Echo, opts Options) {
	p := newPortal(opts)
	for _, pth := range pagePaths {
		e.GET(pth, p.page(http.StatusOK))
		e.HEAD(pth, p.page(http.StatusOK))
	}
	e.GET("/assets/:version/*", p.asset)
	e.HEAD("/assets/:version/*", p.asset)
	e.GET("/*", p.fallback)
}

func newPortal(opts Options) *portal {
	p := &portal{assets: map[string]asset{}}
	sub, err := fs.Sub(embedded, "static/assets")
	if err != nil {
		panic("web: embedded assets missing: " + err.Error()) // a build defect, never a runtime condition
	}
	var names []string
	_ = fs.WalkDir(sub, ".", func(name string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, name)
		}
		return err
	})
	sort.Strings(names)
	all := sha256.New()
	for _, name := range names {
		body, err := fs.ReadFile(sub, name)
		if err != nil {
			panic("web: read embedded asset " + name + ": " + err.Error())
		}
		sum := sha256.Sum256(body)
		p.assets[name] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		all.Write([]byte(name))
		all.Write(sum[:])
	}
	p.version = hex.EncodeToString(all.Sum(nil)[:6])
	index, err := embedded.ReadFile("static/index.html")
	if err != nil {
		panic("web: embedded index.html missing: " + err.Error())
	}
	p.index = bytes.ReplaceAll(index, []byte("{{ASSETS}}"), []byte("/assets/"+p.version+"/"))
	p.csp = contentSecurityPolicy(opts.GatewayOrigin)
	return p
}

// contentSecurityPolicy forbids inline script and style, framing and foreign
// connections; gatewayOrigin, when a valid http(s) origin, may be fetched.
func contentSecurityPolicy(gatewayOrigin string) string {
	connect := "'self'"
	if u, err := url.Parse(gatewayOrigin); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src " + connect +
		"; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
}

func (p *portal) secure(h http.Header) {
	h.Set("Content-Security-Policy", p.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (p *portal) page(status int) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		p.secure(h)
		// The page is tiny and names the current asset version: never cache it,
		// so a deploy is picked up on the next load.
		h.Set("Cache-Control", "no-cache")
		return c.Blob(status, "text/html; charset=utf-8", p.index)
	}
}

// fallback answers unknown portal paths with the page (the script shows "not
// found") and leaves reserved paths to the API's own 404.
func (p *portal) fallback(c echo.Context) error {
	rp := c.Request().URL.Path
	for _, pre := range reservedPrefixes {
		if rp == pre || strings.HasPrefix(rp, pre+"/") {
			return echo.ErrNotFound
		}
	}
	return p.page(http.StatusNotFound)(c)
}

// asset serves one embedded file. The current version is cached for a year
// (its URL changes with its content); any other version gets the current file
// uncached, so a page loaded before a deploy still works.
func (p *portal) asset(c echo.Context) error {
	name := strings.TrimPrefix(path.Clean("/"+c.Param("*")), "/")
	a, ok := p.assets[name]
	if !ok || !fs.ValidPath(name) {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	p.secure(h)
	if ct, ok := contentTypes[path.Ext(name)]; ok {
		h.Set("Content-Type", ct)
	} else {
		h.Set("Content-Type", "application/octet-stream")
	}
	if c.Param("version") == p.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", a.etag)
	http.ServeContent(c.Response(), c.Request(), name, time.Time{}, bytes.NewReader(a.body))
	return nil
}
