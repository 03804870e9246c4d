package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// edge is the routing rule of deploy/edge.conf in Go: /v1/invoke/ to the
// gateway, everything else to the api.
func edge(api, gateway *url.URL) http.Handler {
	toAPI, toGateway := httputil.NewSingleHostReverseProxy(api), httputil.NewSingleHostReverseProxy(gateway)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/invoke/") {
			toGateway.ServeHTTP(w, r)
			return
		}
		toAPI.ServeHTTP(w, r)
	})
}

// TestSplitLayoutExamplesReachTheGateway runs the split layout of
// docker-compose.yml: `api` and `gateway` as separate processes over one
// PostgreSQL and Redis. The api alone does not serve /v1/invoke/, so the
// catalog's "how to call it" URL must be the gateway's public URL: the edge's
// address by default (the edge routes it to the gateway), or
// FNMARKET_GATEWAY_URL when the gateway is published elsewhere. A whole
// session (sign up, publish, key, invoke at the URL the catalog gives) works
// through the edge either way.
func TestSplitLayoutExamplesReachTheGateway(t *testing.T) {
	var backend testenv.Backend
	for _, b := range testenv.Backends() {
		if b.DatabaseURL != "" && b.RedisURL != "" {
			backend = b
		}
	}
	if backend.DatabaseURL == "" {
		t.Skip("needs DATABASE_URL and REDIS_URL: the processes share PostgreSQL and Redis")
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("echoed")) }))
	defer upstream.Close()

	// The edge's address must be known before the api starts: it is the
	// public URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var route atomic.Pointer[http.Handler]
	edgeSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*route.Load()).ServeHTTP(w, r) }))
	edgeSrv.Listener.Close()
	edgeSrv.Listener = ln
	edgeSrv.Start()
	defer edgeSrv.Close()

	env := baseEnv(t, backend)
	env["FNMARKET_JWT_SECRET"] = "edge-test-secret-edge-test-secret-edge"
	env["FNMARKET_PUBLIC_URL"] = edgeSrv.URL
	apiInst := start(t, "api", env)
	gw := start(t, "gateway", env)
	apiURL, _ := url.Parse(apiInst.url)
	gwURL, _ := url.Parse(gw.url)
	h := edge(apiURL, gwURL)
	route.Store(&h)

	c := client{t: t, base: edgeSrv.URL}
	c.publishFunction("echo", map[string]any{"type": "http", "url": upstream.URL}, map[string]any{"per_call": "0.001", "per_compute_ms": "0"})
	consumer := c.signup("c@example.com")
	secret := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "k"}, 201)["key"].(string)

	// The api on its own answers that it does not run functions.
	if res, _ := (client{t: t, base: apiInst.url}).invoke("/v1/invoke/acme/echo", secret, ""); res.StatusCode != http.StatusNotFound {
		t.Fatalf("the api process answered an invocation with %d", res.StatusCode)
	}
	listing := c.call("GET", "/api/v1/catalog/acme/echo", "", nil, 200)
	invokeURL := listing["invoke_url"].(string)
	if invokeURL != edgeSrv.URL+"/v1/invoke/acme/echo" || !strings.Contains(listing["curl"].(string), invokeURL) {
		t.Fatalf("catalog says call %q (curl %q), want the edge's %s/v1/invoke/acme/echo", invokeURL, listing["curl"], edgeSrv.URL)
	}
	if res, body := invokeAt(t, invokeURL, secret); res.StatusCode != 200 || body != "echoed" {
		t.Fatalf("invoking the catalog's URL through the edge: %d %q", res.StatusCode, body)
	}

	// The gateway published on its own address: FNMARKET_GATEWAY_URL puts it
	// in the examples, while the public URL stays the api's own.
	env2 := map[string]string{}
	for k, v := range env {
		env2[k] = v
	}
	delete(env2, "FNMARKET_PUBLIC_URL")
	env2["FNMARKET_GATEWAY_URL"] = gw.url
	api2 := start(t, "api", env2)
	listing = client{t: t, base: api2.url}.call("GET", "/api/v1/catalog/acme/echo", "", nil, 200)
	invokeURL = listing["invoke_url"].(string)
	if invokeURL != gw.url+"/v1/invoke/acme/echo" {
		t.Fatalf("with FNMARKET_GATEWAY_URL=%s the catalog says call %q", gw.url, invokeURL)
	}
	if res, body := invokeAt(t, invokeURL, secret); res.StatusCode != 200 || body != "echoed" {
		t.Fatalf("invoking the catalog's URL: %d %q", res.StatusCode, body)
	}
	// The portal's pages may call that other origin (the "try it" box).
	res, err := http.Get(api2.url + "/catalog")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' "+gw.url) {
		t.Errorf("portal page CSP %q does not let the page call the gateway at %s", csp, gw.url)
	}
}

// invokeAt calls an absolute invocation URL with an API key.
func invokeAt(t *testing.T, rawURL, key string) (*http.Response, string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return client{t: t, base: u.Scheme + "://" + u.Host}.invoke(u.Path, key, "{}")
}

func TestGatewayURLSetting(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		want    string
		wantErr bool
	}{
		{env: map[string]string{}, want: ""},
		{env: map[string]string{"FNMARKET_GATEWAY_URL": "https://run.example.com"}, want: "https://run.example.com"},
		{env: map[string]string{"FNMARKET_GATEWAY_URL": "gateway:8080"}, wantErr: true},
	} {
		c, err := parseConfig("api", nil, func(k string) string { return tc.env[k] }, io.Discard)
		if (err != nil) != tc.wantErr || (err == nil && c.GatewayURL != tc.want) {
			t.Errorf("%v: gateway URL %q, error %v; want %q, error %v", tc.env, c.GatewayURL, err, tc.want, tc.wantErr)
		}
	}
	for _, tc := range []struct{ public, gateway, want string }{
		{"http://localhost:8080", "http://localhost:8080", ""},
		{"https://portal.example.com", "https://run.example.com/base", "https://run.example.com"},
	} {
		if got := gatewayOrigin(tc.public, tc.gateway); got != tc.want {
			t.Errorf("gatewayOrigin(%s, %s) = %q, want %q", tc.public, tc.gateway, got, tc.want)
		}
	}
}
