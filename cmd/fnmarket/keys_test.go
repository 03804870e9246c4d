package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestKeyLimitsOnEveryReplica is issue 13's proof on the whole product, on
// each backend (with two gateway replicas over PostgreSQL and Redis): a key
// past its expires_at gets 401 key_expired, a key scoped to another function
// 403 forbidden, and a rotated key keeps its month's spend: capped at three
// calls, one with the key, one with the old secret in its grace and one
// with the new secret pass, the fourth gets 402; after the grace the old
// secret gets 401.
func TestKeyLimitsOnEveryReplica(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			inst := start(t, "serve", env)
			gateways := []string{inst.url}
			if b.RedisURL != "" && b.DatabaseURL != "" {
				gw := maps.Clone(env)
				gw["FNMARKET_DATA_DIR"] = t.TempDir()
				gateways = append(gateways, start(t, "gateway", gw).url)
			}
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
			t.Cleanup(upstream.Close)
			c := client{t: t, base: inst.url}
			pricing := map[string]any{"per_call": "0.10", "per_compute_ms": "0", "free_calls_per_month": 0}
			vendor, _ := c.publishFunction("paid", map[string]any{"type": "http", "url": upstream.URL}, pricing)
			other := c.call("POST", "/api/v1/functions", vendor, map[string]any{"name": "other", "timeout_ms": 5000,
				"backend": map[string]any{"type": "http", "url": upstream.URL}, "pricing": pricing}, 201)
			c.call("POST", "/api/v1/functions/"+other["id"].(string)+"/publish", vendor, map[string]any{"version": 1}, 200)
			consumer := c.signup("keys@example.com")

			call := func(gw, fn, key string) (int, string) {
				t.Helper()
				res, body := client{t: t, base: gw}.invoke("/v1/invoke/acme/"+fn, key, "")
				var p struct{ Code string }
				if res.StatusCode != 200 {
					_ = json.Unmarshal([]byte(body), &p)
				}
				return res.StatusCode, p.Code
			}
			wantOn := func(what, fn, key string, status int, code string) {
				t.Helper()
				for i, gw := range gateways {
					if s, c := call(gw, fn, key); s != status || c != code {
						t.Errorf("%s on replica %d: %d %q, want %d %q", what, i, s, c, status, code)
					}
				}
			}

			// Scope: refused on every replica, the allowed function runs.
			scoped := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "scoped", "allowed_functions": []string{"acme/other"}}, 201)["key"].(string)
			wantOn("a scoped key calling another function", "paid", scoped, 403, "forbidden")
			wantOn("a scoped key calling its function", "other", scoped, 200, "")

			// Expiry: 3 s ahead; refused by every replica once it passes.
			expiresAt := time.Now().Add(3 * time.Second)
			expiring := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "expiring", "expires_at": expiresAt.Format(time.RFC3339Nano)}, 201)["key"].(string)
			wantOn("a key before its expiry", "other", expiring, 200, "")
			time.Sleep(time.Until(expiresAt))
			for i, gw := range gateways {
				eventually(t, 2*time.Second, fmt.Sprintf("replica %d refuses the expired key", i), func() bool {
					s, c := call(gw, "other", expiring)
					return s == 401 && c == "key_expired"
				})
			}
			wantOn("an unknown key", "other", "fnm_unknown", 401, "unauthenticated")

			// Edits (PATCH): a new scope and a lowered cap hold on every
			// replica once it has seen the change (within 2 s). A replica
			// that keeps admitting through the change gives its leases
			// under the old cap back first: metering's
			// TestLoweredCapHoldsAtOnce; here the replicas are idle by then.
			edited := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "edited", "monthly_spend_cap": "100.00"}, 201)
			ek := edited["key"].(string)
			made := 0
			for _, gw := range gateways {
				for range 30 {
					if s, code := call(gw, "paid", ek); s != 200 {
						t.Fatalf("call %d under the high cap: %d %q", made, s, code)
					}
					made++
				}
			}
			newCap := 10*made + 20 // cents: two more calls of 0.10 fit
			c.call("PATCH", "/api/v1/keys/"+edited["id"].(string), consumer, map[string]any{
				"monthly_spend_cap": fmt.Sprintf("%d.%02d", newCap/100, newCap%100), "allowed_functions": []string{"acme/paid"}}, 200)
			// No call until every replica must have seen the change: a call
			// admitted before that spends under the old scope and cap.
			time.Sleep(2*time.Second + 200*time.Millisecond)
			wantOn("an edited key calling a function its new scope leaves out", "other", ek, 403, "forbidden")
			allowed := 0
			for i := range 10 {
				if s, code := call(gateways[i%len(gateways)], "paid", ek); s == 200 {
					allowed++
				} else if s != 402 || code != "spend_cap_reached" {
					t.Errorf("call past the lowered cap: %d %q, want 402 spend_cap_reached", s, code)
				}
			}
			if allowed != 2 {
				t.Errorf("%d calls admitted after the cap was lowered to 0.20 above the spend, want 2", allowed)
			}

			// Rotation keeps the month's spend and cap.
			k := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "rotated", "monthly_spend_cap": "0.30"}, 201)
			oldKey := k["key"].(string)
			if s, code := call(gateways[0], "paid", oldKey); s != 200 {
				t.Fatalf("first call: %d %q", s, code)
			}
			r := c.call("POST", "/api/v1/keys/"+k["id"].(string)+"/rotate", consumer, map[string]any{"grace_seconds": 3}, 201)
			graceEnd := time.Now().Add(3 * time.Second)
			newKey := r["key"].(string)
			if r["id"] != k["id"] || newKey == oldKey {
				t.Fatalf("rotation answered %v", r)
			}
			if s, code := call(gateways[len(gateways)-1], "paid", oldKey); s != 200 {
				t.Fatalf("the old secret in its grace: %d %q, want 200", s, code)
			}
			if s, code := call(gateways[0], "paid", newKey); s != 200 {
				t.Fatalf("the new secret: %d %q, want 200", s, code)
			}
			wantOn("the new secret past the cap the old one spent", "paid", newKey, 402, "spend_cap_reached")
			time.Sleep(time.Until(graceEnd))
			for i, gw := range gateways {
				eventually(t, 2*time.Second, fmt.Sprintf("replica %d refuses the old secret after the grace", i), func() bool {
					s, c := call(gw, "other", oldKey)
					return s == 401 && c == "key_expired"
				})
			}
			wantOn("the new secret after the grace", "paid", newKey, 402, "spend_cap_reached")
		})
	}
}
