package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// TestExpiredKey: a key is refused with 401 key_expired from its expires_at
// on, by the gateway's own clock, with no lookup (the cached key is not
// refreshed); an unknown key stays 401 unauthenticated. A rotated-out secret
// is refused the same way once its grace ends.
func TestExpiredKey(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := private()
	cfg.Clock = clock
	keys := newFakeKeys(clock)
	expires := clock.Now().Add(10 * time.Second)
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1", ExpiresAt: &expires})
	keys.add("fnm_old", gateway.Key{ID: "key-1", ConsumerID: "consumer-1", ExpiresAt: &expires, Rotated: true})
	e := newEnv(t, envOptions{cfg: cfg, keys: keys})
	e.routes.addVersion("acme", "greet", 1, up.URL, true)
	old := http.Header{"Authorization": {"Bearer fnm_old"}}

	if resp, _ := e.get("/v1/invoke/acme/greet"); resp.StatusCode != 200 {
		t.Fatalf("before expiry: status %d, want 200", resp.StatusCode)
	}
	if resp := e.do("GET", "/v1/invoke/acme/greet", nil, old); resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("old secret in its grace: status %d, want 200", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	lookups := keys.lookupCount()
	clock.Advance(10 * time.Second) // exactly at expires_at: expired
	wantProblem(t, e.do("GET", "/v1/invoke/acme/greet", nil, nil), 401, fnmarket.EKEYEXPIRED)
	wantProblem(t, e.do("GET", "/v1/invoke/acme/greet", nil, old), 401, fnmarket.EKEYEXPIRED)
	if n := keys.lookupCount() - lookups; n != 0 {
		t.Errorf("expiry looked keys up %d times, want 0 (the clock decides)", n)
	}
	wantProblem(t, e.do("GET", "/v1/invoke/acme/greet", nil, http.Header{"Authorization": {"Bearer fnm_unknown"}}), 401, fnmarket.EUNAUTHORIZED)
	if n := len(e.meter.recorded()); n != 2 {
		t.Errorf("recorded %d calls, want 2 (refusals are not billed)", n)
	}
	if n := e.admitter.admitted(); n != 2 {
		t.Errorf("admitted %d calls, want 2", n)
	}
}

// TestAllowedFunctions: a key limited to some functions gets 403 forbidden
// for any other, before admission (nothing held, nothing billed); an
// unknown function is still 404.
func TestAllowedFunctions(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	keys := newFakeKeys(fnmarket.SystemClock{})
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1", AllowedFunctions: []string{"acme/greet"}})
	e := newEnv(t, envOptions{cfg: private(), keys: keys})
	e.routes.addVersion("acme", "greet", 1, up.URL, true)
	e.routes.addVersion("acme", "other", 1, up.URL, true)
	e.routes.addVersion("other", "greet", 1, up.URL, true)

	if resp, _ := e.get("/v1/invoke/acme/greet"); resp.StatusCode != 200 {
		t.Fatalf("allowed function: status %d, want 200", resp.StatusCode)
	}
	if resp, _ := e.get("/v1/invoke/acme/greet@1/sub"); resp.StatusCode != 200 {
		t.Fatalf("allowed function, pinned version and path: status %d, want 200", resp.StatusCode)
	}
	wantProblem(t, e.do("GET", "/v1/invoke/acme/other", nil, nil), 403, fnmarket.EFORBIDDEN)
	wantProblem(t, e.do("GET", "/v1/invoke/other/greet", nil, nil), 403, fnmarket.EFORBIDDEN)
	wantProblem(t, e.do("GET", "/v1/invoke/acme/nope", nil, nil), 404, fnmarket.ENOTFOUND)
	if n := len(e.meter.recorded()); n != 2 {
		t.Errorf("recorded %d calls, want 2", n)
	}
	if n := e.admitter.admitted(); n != 2 {
		t.Errorf("admitted %d calls, want 2 (a forbidden call is never admitted)", n)
	}
}

// TestKeyRateLimit: the key's own limit lowers the effective one below the
// default and the version's, with the usual 429 headers; a key limit above
// the version's changes nothing.
func TestKeyRateLimit(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 1, 12, 0, 0, 250e6, time.UTC))
	cfg := private()
	cfg.Clock = clock
	cfg.DefaultRateLimitPerKey = 100
	keys := newFakeKeys(clock)
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1", RateLimitPerSecond: 2})
	keys.add("fnm_loose", gateway.Key{ID: "key-2", ConsumerID: "consumer-1", RateLimitPerSecond: 50})
	e := newEnv(t, envOptions{cfg: cfg, keys: keys})
	e.routes.addVersion("acme", "fn", 1, up.URL, true, func(v *catalog.Version) { v.RateLimitPerSecond = 5 })

	for i := range 2 {
		resp, _ := e.get("/v1/invoke/acme/fn")
		if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "2" {
			t.Fatalf("call %d: status %d, X-RateLimit-Limit %q; want 200 and 2", i, resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"))
		}
	}
	resp := e.do("GET", "/v1/invoke/acme/fn", nil, nil)
	if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-RateLimit-Limit") != "2" || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("429 headers = %v", resp.Header)
	}
	wantProblem(t, resp, 429, fnmarket.ERATELIMITED)

	loose := http.Header{"Authorization": {"Bearer fnm_loose"}}
	resp = e.do("GET", "/v1/invoke/acme/fn", nil, loose)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "5" {
		t.Errorf("key limit above the version's: status %d, X-RateLimit-Limit %q; want 200 and 5", resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"))
	}
}
