package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestEmbeddedBurstIsExact is issue 14's finding: on the embedded default,
// 500 calls at once against a limit of 100/s let 141 to 180 through, because
// admission ran through the in-process Redis's Lua, missed its deadline and
// decided locally. Admission now runs in memory against leases: the burst
// admits the limit's burst, plus what refills while the calls run, and no
// call is decided locally.
func TestEmbeddedBurstIsExact(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer upstream.Close()
	env := map[string]string{
		"FNMARKET_DATA_DIR":                t.TempDir(),
		"FNMARKET_ALLOW_PRIVATE_UPSTREAMS": "true",
		"FNMARKET_JWT_SECRET":              "burst-test-secret-burst-test-secret",
		"FNMARKET_RATE_LIMIT_PER_KEY":      "100",
	}
	inst := start(t, "serve", env)
	c := client{t: t, base: inst.url}
	c.publishFunction("echo", map[string]any{"type": "http", "url": upstream.URL}, map[string]any{"per_call": "0.001", "per_compute_ms": "0"})
	consumer := c.signup("burst@example.com")
	secret := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "k"}, 201)["key"].(string)

	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	for range 500 {
		wg.Go(func() {
			res, _ := c.invoke("/v1/invoke/acme/echo", secret, "")
			switch res.StatusCode {
			case 200:
				ok.Add(1)
			case 429:
				limited.Add(1)
			default:
				t.Errorf("status %d", res.StatusCode)
			}
		})
	}
	wg.Wait()
	most := 100 + int64(time.Since(began).Seconds()*100) + 1
	if ok.Load() < 100 || ok.Load() > most {
		t.Fatalf("%d of 500 calls at once admitted under 100/s (%d limited), want 100 to %d", ok.Load(), limited.Load(), most)
	}
	if logs := inst.logs.String(); strings.Contains(logs, "deciding locally") {
		t.Fatalf("admission decided locally on the embedded default:\n%s", logs)
	}
}
