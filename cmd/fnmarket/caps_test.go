package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestCapsHoldUnderConcurrency is issue 11's proof on the whole product, on
// each backend: 200 concurrent calls of a 0.10 function that takes its time,
// through two gateway replicas, against a key capped at 1.00: exactly 10 go
// through, each answered with its exact X-Cost, and the invoice is the cap.
func TestCapsHoldUnderConcurrency(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			env["FNMARKET_ROLLUP_INTERVAL"] = "300ms"
			inst := start(t, "serve", env)
			gateways := []string{inst.url}
			if b.RedisURL != "" && b.DatabaseURL != "" {
				// A second replica over the same services.
				gw := maps.Clone(env)
				gw["FNMARKET_DATA_DIR"] = t.TempDir()
				gateways = append(gateways, start(t, "gateway", gw).url)
			}
			vendor, _ := client{t: t, base: inst.url}.publishFunction("warmup",
				map[string]any{"type": "http", "url": "http://127.0.0.1:1"}, map[string]any{"per_call": "0", "per_compute_ms": "0"})
			capsHold(t, inst.url, gateways, vendor)
		})
	}
}

// capsHold publishes acme/slow (0.10 a call, 100 ms), fires 200 calls at
// once with a key capped at 1.00 over the gateways, and checks exactly 10
// pass, their X-Cost, and the upcoming invoice.
func capsHold(t *testing.T, api string, gateways []string, vendor string) {
	t.Helper()
	c := client{t: t, base: api}
	release := make(chan struct{})
	var releaseOnce sync.Once
	var arrived sync.WaitGroup
	arrived.Add(10)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release // every admitted call is in flight at once
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // runs first
	fn := c.call("POST", "/api/v1/functions", vendor, map[string]any{"name": "slow", "timeout_ms": 5000,
		"backend": map[string]any{"type": "http", "url": upstream.URL},
		"pricing": map[string]any{"per_call": "0.10", "per_compute_ms": "0", "free_calls_per_month": 0}}, 201)
	c.call("POST", "/api/v1/functions/"+fn["id"].(string)+"/publish", vendor, map[string]any{"version": 1}, 200)
	consumer := c.signup("capped@example.com")
	key := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "capped", "monthly_spend_cap": "1.00"}, 201)["key"].(string)

	type answer struct {
		status int
		cost   string
		code   string
	}
	answers := make(chan answer, 200)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			req, _ := http.NewRequest("GET", gateways[i%len(gateways)]+"/v1/invoke/acme/slow", nil)
			req.Header.Set("X-API-Key", key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer res.Body.Close()
			var p struct{ Code string }
			if res.StatusCode != 200 {
				_ = json.NewDecoder(res.Body).Decode(&p)
			}
			answers <- answer{res.StatusCode, res.Header.Get("X-Cost"), p.Code}
		})
	}
	// The 190 refusals come back while the 10 admitted calls are held.
	refused := 0
	for refused < 190 {
		select {
		case a := <-answers:
			if a.status != 402 || a.code != "spend_cap_reached" {
				t.Fatalf("while 10 calls are in flight, a call answered %d %q; want 402 spend_cap_reached", a.status, a.code)
			}
			refused++
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d refusals arrived", refused)
		}
	}
	arrived.Wait()
	releaseOnce.Do(func() { close(release) })
	wg.Wait()
	close(answers)
	var ok int
	for a := range answers {
		if a.status != 200 || a.cost != "0.1 USD" {
			t.Errorf("an admitted call answered %d with X-Cost %q, want 200 and 0.1 USD", a.status, a.cost)
		}
		ok++
	}
	if ok != 10 {
		t.Fatalf("%d calls went through, want exactly 10", ok)
	}
	eventually(t, 15*time.Second, "the capped calls rolled up", func() bool {
		up := c.call("GET", "/api/v1/invoices/upcoming", consumer, nil, 200)
		return fmt.Sprint(up["total"]) == "1.00"
	})
	if res, body := c.invoke("/v1/invoke/acme/slow", key, ""); res.StatusCode != 402 || !strings.Contains(body, "spend_cap_reached") {
		t.Fatalf("after the cap was spent: %d %s", res.StatusCode, body)
	}
}
