package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkGatewayHit measures the cached path through the whole handler:
// key and route from the caches, admission, a call to a trivial upstream over
// a pooled connection, metering.
func BenchmarkGatewayHit(b *testing.B) {
	up := upstream(b, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	e := newEnv(b, envOptions{cfg: private()})
	e.routes.addVersion("acme", "fn", 1, up.URL, true)
	req := httptest.NewRequest(http.MethodGet, "/v1/invoke/acme/fn", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	serve := func() {
		w := httptest.NewRecorder()
		e.gw.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	serve() // warm the caches and the connection pool
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve()
	}
}
