package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// BenchmarkIdempotencyKey measures what an Idempotency-Key adds to a call
// through the whole handler (cached key and route, admission by the fake
// admitter, a trivial upstream over a pooled connection), with the Redis
// store on the embedded server and, when TEST_REDIS_URL is set, on real
// Redis: "plain" is the call without the header, "first" a new key each call
// (claim, run, keep the answer), "replay" the same key again (claim finds the
// answer, nothing runs). It reports the p50 and p99 of one call.
func BenchmarkIdempotencyKey(b *testing.B) {
	up := upstream(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	for _, be := range testenv.Backends() {
		if be.Name != "embedded" && be.RedisURL == "" {
			continue
		}
		b.Run(be.Name, func(b *testing.B) {
			conn, prefix := testenv.Redis(b, be)
			e := newEnv(b, envOptions{cfg: private()})
			e.gw.UseIdempotencyStore(redisx.NewIdempotency(conn, prefix))
			e.routes.addVersion("acme", "fn", 1, up.URL, true)
			n := 0
			for _, c := range []struct {
				name string
				key  func() string
			}{
				{"plain", func() string { return "" }},
				{"first", func() string { n++; return prefix + strconv.Itoa(n) }},
				{"replay", func() string { return prefix + "same" }},
			} {
				b.Run(c.name, func(b *testing.B) {
					serve := func() time.Duration {
						req := httptest.NewRequest(http.MethodPost, "/v1/invoke/acme/fn", strings.NewReader(`{"order":42}`))
						req.Header.Set("Authorization", "Bearer "+testKey)
						if k := c.key(); k != "" {
							req.Header.Set("Idempotency-Key", k)
						}
						w := httptest.NewRecorder()
						t0 := time.Now()
						e.gw.ServeHTTP(w, req)
						d := time.Since(t0)
						if w.Code != 200 {
							b.Fatalf("status %d: %s", w.Code, w.Body)
						}
						return d
					}
					serve() // warm the caches, the pool and, for replay, the kept answer
					var ds []time.Duration
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						ds = append(ds, serve())
					}
					b.StopTimer()
					slices.Sort(ds)
					b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
				})
			}
		})
	}
}
