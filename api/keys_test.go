package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestKeyFieldsAndRotation: expires_at, allowed_functions and
// rate_limit_per_second are validated (a bad request changes nothing),
// stored and listed; rotation keeps the id, shows a new secret once, is
// validated, and is refused for another account's key (404) and a revoked
// one (409); the audit log records each change.
func TestKeyFieldsAndRotation(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b, func(d *api.Deps) { d.DefaultKeyRateLimit = 100 })
			vTok, fnID := h.vendor("vendor@example.com", "acme")
			h.must(200, h.do("POST", "/api/v1/functions/"+fnID+"/publish", vTok, map[string]any{"version": 1}))
			h.must(201, h.do("POST", "/api/v1/functions", vTok, validFunction("hidden")))
			tok := h.signup("consumer@example.com")
			now := h.clock.Now()

			many := make([]string, 51)
			for i := range many {
				many[i] = "acme/scan"
			}
			bad := []struct {
				name  string
				body  map[string]any
				field string
			}{
				{"expiry not RFC 3339", map[string]any{"name": "k", "expires_at": "tomorrow"}, "expires_at"},
				{"expiry in the past", map[string]any{"name": "k", "expires_at": now.Add(-time.Second).Format(time.RFC3339)}, "expires_at"},
				{"expiry now", map[string]any{"name": "k", "expires_at": now.Format(time.RFC3339)}, "expires_at"},
				{"too many functions", map[string]any{"name": "k", "allowed_functions": many}, "allowed_functions"},
				{"function without vendor", map[string]any{"name": "k", "allowed_functions": []string{"scan"}}, "allowed_functions"},
				{"function with a path", map[string]any{"name": "k", "allowed_functions": []string{"acme/scan/x"}}, "allowed_functions"},
				{"unknown function", map[string]any{"name": "k", "allowed_functions": []string{"acme/scan", "acme/nope"}}, "allowed_functions"},
				{"unpublished function", map[string]any{"name": "k", "allowed_functions": []string{"acme/hidden"}}, "allowed_functions"},
				{"negative rate", map[string]any{"name": "k", "rate_limit_per_second": -1}, "rate_limit_per_second"},
				{"rate over the default", map[string]any{"name": "k", "rate_limit_per_second": 101}, "rate_limit_per_second"},
			}
			for _, tt := range bad {
				a := h.do("POST", "/api/v1/keys", tok, tt.body)
				if a.status != 400 || a.str("code") != "invalid_input" || !strings.Contains(a.raw, `"`+tt.field+`"`) {
					t.Errorf("%s: %d %s, want 400 invalid_input naming %s", tt.name, a.status, a.raw, tt.field)
				}
			}
			if a := h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "k", "alert_everything": true}); a.status != 400 {
				t.Errorf("unknown field: %d, want 400", a.status)
			}
			if n := len(h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()); n != 0 {
				t.Fatalf("%d keys after bad input, want 0", n)
			}

			expires := now.Add(72 * time.Hour).Format(time.RFC3339)
			k := h.must(201, h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "scoped", "expires_at": expires,
				"allowed_functions": []string{"acme/scan", "acme/scan"}, "rate_limit_per_second": 5}))
			if k.str("expires_at") != expires || fmt.Sprint(k.body["allowed_functions"]) != "[acme/scan]" || k.body["rate_limit_per_second"] != float64(5) ||
				k.body["previous_expires_at"] != nil || !strings.HasPrefix(k.str("key"), "fnm_") {
				t.Errorf("created key %s", k.raw)
			}
			plain := h.must(201, h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "plain"}))
			if plain.body["expires_at"] != nil || fmt.Sprint(plain.body["allowed_functions"]) != "[]" || plain.body["rate_limit_per_second"] != float64(0) {
				t.Errorf("plain key %s", plain.raw)
			}
			listed := h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()
			if len(listed) != 2 {
				t.Fatalf("%d keys listed, want 2", len(listed))
			}
			for _, it := range listed {
				if it["key"] != nil {
					t.Errorf("a listed key shows its secret: %v", it)
				}
				if it["id"] == k.str("id") && (it["expires_at"] != expires || fmt.Sprint(it["allowed_functions"]) != "[acme/scan]" || it["rate_limit_per_second"] != float64(5)) {
					t.Errorf("listed key %v", it)
				}
			}

			// Rotation.
			other := h.signup("other@example.com")
			id := k.str("id")
			for _, tt := range []struct {
				tok, id string
				body    any
				status  int
			}{
				{other, id, map[string]any{"grace_seconds": 60}, 404},
				{tok, "key_nope", map[string]any{"grace_seconds": 60}, 404},
				{tok, id, map[string]any{"grace_seconds": -1}, 400},
				{tok, id, map[string]any{"grace_seconds": 30*24*3600 + 1}, 400},
				{tok, id, map[string]any{"grace": 60}, 400},
				{tok, id, map[string]any{}, 400},
			} {
				if a := h.do("POST", "/api/v1/keys/"+tt.id+"/rotate", tt.tok, tt.body); a.status != tt.status {
					t.Errorf("rotate %s with %v: %d %s, want %d", tt.id, tt.body, a.status, a.raw, tt.status)
				}
			}
			listedAgain := h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()
			if fmt.Sprint(listedAgain) != fmt.Sprint(listed) {
				t.Errorf("refused rotations changed the keys: %v, was %v", listedAgain, listed)
			}
			r := h.must(201, h.do("POST", "/api/v1/keys/"+id+"/rotate", tok, map[string]any{"grace_seconds": 3600}))
			if r.str("id") != id || r.str("key") == "" || r.str("key") == k.str("key") || r.str("prefix") == k.str("prefix") ||
				r.str("previous_expires_at") != now.Add(time.Hour).Format(time.RFC3339) || r.str("expires_at") != expires ||
				r.body["rate_limit_per_second"] != float64(5) || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("rotated key %s", r.raw)
			}
			h.must(204, h.do("DELETE", "/api/v1/keys/"+id, tok, nil))
			for _, it := range h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items() {
				if it["id"] == id && (it["revoked_at"] == nil || it["previous_expires_at"] != nil) {
					t.Errorf("revoked key %v, want revoked_at and no grace", it)
				}
			}
			if a := h.do("POST", "/api/v1/keys/"+id+"/rotate", tok, map[string]any{"grace_seconds": 0}); a.status != 409 {
				t.Errorf("rotating a revoked key: %d, want 409", a.status)
			}
			want := map[string]bool{"key.create " + id: true, "key.create " + plain.str("id"): true, "key.rotate " + id: true, "key.revoke " + id: true}
			got := map[string]bool{}
			for _, it := range h.must(200, h.do("GET", "/api/v1/audit", tok, nil)).items() {
				if a := it["action"].(string); strings.HasPrefix(a, "key.") {
					got[a+" "+it["target"].(string)] = true
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("the audit log has %v, want %v", got, want)
			}
		})
	}
}

// TestUpdateKey: PATCH /api/v1/keys/{id} is a merge patch of a key's
// settings, validated as at creation (bad input changes nothing); null
// clears a setting; the secret keeps working; another account's key is 404,
// a revoked one 409; the audit log records which settings changed.
func TestUpdateKey(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, b, func(d *api.Deps) { d.DefaultKeyRateLimit = 100 })
			vTok, fnID := h.vendor("vendor@example.com", "acme")
			h.must(200, h.do("POST", "/api/v1/functions/"+fnID+"/publish", vTok, map[string]any{"version": 1}))
			tok := h.signup("consumer@example.com")
			other := h.signup("other@example.com")
			now := h.clock.Now()
			k := h.must(201, h.do("POST", "/api/v1/keys", tok, map[string]any{"name": "ci", "monthly_spend_cap": "25.00"}))
			id, secret := k.str("id"), k.str("key")
			path := "/api/v1/keys/" + id

			bad := []struct {
				name  string
				body  map[string]any
				field string
			}{
				{"nothing", map[string]any{}, "body"},
				{"empty name", map[string]any{"name": ""}, "name"},
				{"null name", map[string]any{"name": nil}, "name"},
				{"zero cap", map[string]any{"monthly_spend_cap": "0"}, "monthly_spend_cap"},
				{"cap of the wrong type", map[string]any{"monthly_spend_cap": 5}, "monthly_spend_cap"},
				{"expiry in the past", map[string]any{"expires_at": now.Add(-time.Second).Format(time.RFC3339)}, "expires_at"},
				{"unknown function", map[string]any{"allowed_functions": []string{"acme/nope"}}, "allowed_functions"},
				{"rate over the default", map[string]any{"rate_limit_per_second": 101}, "rate_limit_per_second"},
				{"bad thresholds", map[string]any{"alert_thresholds": []int{80, 50}}, "alert_thresholds"},
			}
			for _, tt := range bad {
				if a := h.do("PATCH", path, tok, tt.body); a.status != 400 || !strings.Contains(a.raw, `"`+tt.field+`"`) {
					t.Errorf("%s: %d %s, want 400 naming %s", tt.name, a.status, a.raw, tt.field)
				}
			}
			if a := h.do("PATCH", path, tok, map[string]any{"name": "x", "secret": "mine"}); a.status != 400 {
				t.Errorf("unknown member: %d, want 400", a.status)
			}
			if got := h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()[0]; got["name"] != "ci" || got["monthly_spend_cap"] != "25.00" {
				t.Fatalf("bad input changed the key: %v", got)
			}

			expires := now.Add(48 * time.Hour).Format(time.RFC3339)
			u := h.must(200, h.do("PATCH", path, tok, map[string]any{"name": " nightly ", "monthly_spend_cap": "5.5",
				"expires_at": expires, "allowed_functions": []string{"acme/scan"}, "rate_limit_per_second": 7, "alert_thresholds": []int{50, 100}}))
			if u.str("id") != id || u.str("name") != "nightly" || u.str("monthly_spend_cap") != "5.50" || u.str("expires_at") != expires ||
				fmt.Sprint(u.body["allowed_functions"]) != "[acme/scan]" || u.body["rate_limit_per_second"] != float64(7) ||
				fmt.Sprint(u.body["alert_thresholds"]) != "[50 100]" || u.body["key"] != nil || u.str("prefix") != k.str("prefix") {
				t.Errorf("updated key %s", u.raw)
			}
			// Only what is named changes; null clears.
			u = h.must(200, h.do("PATCH", path, tok, map[string]any{"monthly_spend_cap": nil, "expires_at": nil, "allowed_functions": nil,
				"rate_limit_per_second": nil, "alert_thresholds": nil}))
			if u.str("name") != "nightly" || u.body["monthly_spend_cap"] != nil || u.body["expires_at"] != nil ||
				fmt.Sprint(u.body["allowed_functions"]) != "[]" || u.body["rate_limit_per_second"] != float64(0) ||
				fmt.Sprint(u.body["alert_thresholds"]) != "[80 100]" {
				t.Errorf("cleared key %s", u.raw)
			}
			if got := h.must(200, h.do("GET", "/api/v1/keys", tok, nil)).items()[0]; got["name"] != "nightly" || got["monthly_spend_cap"] != nil {
				t.Errorf("listed after the change: %v", got)
			}
			store := accounts.NewStore(h.db, h.clock, bcrypt.MinCost)
			if gk, err := store.KeyByHash(context.Background(), fnmarket.HashAPIKey(secret)); err != nil || gk.ID != id {
				t.Errorf("the secret no longer finds the key after an update: %+v %v", gk, err)
			}

			if a := h.do("PATCH", path, other, map[string]any{"name": "mine now"}); a.status != 404 {
				t.Errorf("another account's PATCH: %d, want 404", a.status)
			}
			h.must(204, h.do("DELETE", path, tok, nil))
			if a := h.do("PATCH", path, tok, map[string]any{"name": "again"}); a.status != 409 {
				t.Errorf("PATCH of a revoked key: %d, want 409", a.status)
			}
			audit := h.must(200, h.do("GET", "/api/v1/audit", tok, nil))
			if !strings.Contains(audit.raw, `"key.update"`) || !strings.Contains(audit.raw, "name,monthly_spend_cap,expires_at,allowed_functions,rate_limit_per_second,alert_thresholds") {
				t.Errorf("audit log lacks the update: %s", audit.raw)
			}
		})
	}
}
