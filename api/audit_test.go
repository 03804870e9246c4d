package api_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestAuditLog: each audited action leaves one entry with the client
// address, in the acting account's log only; failed logins show in the log
// of the account whose email was tried; the log has no route that edits or
// deletes; alert thresholds are taken on keys and the spend cap and shown.
func TestAuditLog(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			h := newHarness(t, b)
			tokA := h.signup("a@example.com")
			h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "a@example.com", "password": "wrong password here"}))
			h.must(401, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "nobody@example.com", "password": "wrong password here"}))
			h.must(200, h.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "a@example.com", "password": "correct horse battery"}))

			k := h.must(201, h.do("POST", "/api/v1/keys", tokA, map[string]any{"name": "k", "monthly_spend_cap": "5.00", "alert_thresholds": []int{50, 80, 100}}))
			if fmt.Sprint(k.body["alert_thresholds"]) != "[50 80 100]" {
				t.Fatalf("created key's thresholds: %v", k.body["alert_thresholds"])
			}
			for _, bad := range [][]int{{}, {80, 50}, {0}, {101}, {10, 20, 30, 40, 50, 60}, {50, 50}} {
				a := h.must(400, h.do("POST", "/api/v1/keys", tokA, map[string]any{"name": "bad", "alert_thresholds": bad}))
				if a.str("errors", "alert_thresholds") == "" {
					t.Errorf("thresholds %v: %s", bad, a.raw)
				}
			}
			plain := h.must(201, h.do("POST", "/api/v1/keys", tokA, map[string]any{"name": "plain"}))
			keys := h.must(200, h.do("GET", "/api/v1/keys", tokA, nil)).items()
			for _, it := range keys {
				want := "[80 100]"
				if it["id"] == k.str("id") {
					want = "[50 80 100]"
				}
				if fmt.Sprint(it["alert_thresholds"]) != want {
					t.Errorf("key %v lists thresholds %v, want %s", it["name"], it["alert_thresholds"], want)
				}
			}
			h.must(204, h.do("DELETE", "/api/v1/keys/"+plain.str("id"), tokA, nil))
			bl := h.must(200, h.do("GET", "/api/v1/billing", tokA, nil))
			if fmt.Sprint(bl.body["alert_thresholds"]) != "[80 100]" {
				t.Fatalf("default account thresholds: %v", bl.body["alert_thresholds"])
			}
			h.must(400, h.do("PUT", "/api/v1/billing/spend-cap", tokA, map[string]any{"monthly_spend_cap": "20.00", "alert_thresholds": []int{90, 20}}))
			bl = h.must(200, h.do("PUT", "/api/v1/billing/spend-cap", tokA, map[string]any{"monthly_spend_cap": "20.00", "alert_thresholds": []int{25, 90}}))
			if fmt.Sprint(bl.body["alert_thresholds"]) != "[25 90]" || bl.str("monthly_spend_cap") != "20.00" {
				t.Fatalf("spend cap answer: %s", bl.raw)
			}
			if bl = h.must(200, h.do("GET", "/api/v1/billing", tokA, nil)); fmt.Sprint(bl.body["alert_thresholds"]) != "[25 90]" {
				t.Fatalf("billing after setting thresholds: %s", bl.raw)
			}

			h.must(201, h.do("POST", "/api/v1/vendor", tokA, map[string]any{"slug": "acme", "display_name": "Acme"}))
			fn := h.must(201, h.do("POST", "/api/v1/functions", tokA, validFunction("scan"))).str("id")
			h.must(201, h.do("POST", "/api/v1/functions/"+fn+"/versions", tokA, map[string]any{
				"backend": map[string]any{"type": "http", "url": "https://scan.example.com/v2"}, "pricing": map[string]any{"per_call": "0", "per_compute_ms": "0"}}))
			h.must(200, h.do("POST", "/api/v1/functions/"+fn+"/publish", tokA, map[string]any{"version": 2}))
			h.must(200, h.do("POST", "/api/v1/functions/"+fn+"/unpublish", tokA, nil))
			h.must(400, h.do("PUT", "/api/v1/functions/"+fn+"/error-rate-alert", tokA, map[string]any{"percent": 0, "window_minutes": 90}))
			h.must(404, h.do("GET", "/api/v1/functions/"+fn+"/error-rate-alert", tokA, nil))
			al := h.must(200, h.do("PUT", "/api/v1/functions/"+fn+"/error-rate-alert", tokA, map[string]any{"percent": 5, "window_minutes": 60}))
			if al.body["percent"] != float64(5) || al.body["window_minutes"] != float64(60) {
				t.Fatalf("alert answer %s", al.raw)
			}
			h.must(200, h.do("GET", "/api/v1/functions/"+fn+"/error-rate-alert", tokA, nil))
			ep := h.must(201, h.do("POST", "/api/v1/webhooks", tokA, map[string]any{"url": "https://hooks.example.com/a", "events": []string{"*"}})).str("id")
			h.must(204, h.do("DELETE", "/api/v1/webhooks/"+ep, tokA, nil))

			// Another account: its own log only, and no way at A's function.
			tokB := h.signup("b@example.com")
			h.must(403, h.do("PUT", "/api/v1/functions/"+fn+"/error-rate-alert", tokB, map[string]any{"percent": 5, "window_minutes": 60}))
			bItems := h.must(200, h.do("GET", "/api/v1/audit", tokB, nil)).items()
			if len(bItems) != 1 || bItems[0]["action"] != "account.signup" || bItems[0]["target"] != "b@example.com" {
				t.Fatalf("B's log: %v", bItems)
			}

			// A's log, paged two at a time, newest first.
			var actions []string
			cursor := ""
			for range 20 {
				a := h.must(200, h.do("GET", "/api/v1/audit?limit=2&cursor="+cursor, tokA, nil))
				for _, it := range a.items() {
					if it["actor"] == "" || it["ip"] != "127.0.0.1" || it["at"] == "" {
						t.Errorf("entry %v", it)
					}
					actions = append(actions, it["action"].(string))
				}
				if cursor = a.str("next_cursor"); cursor == "" {
					break
				}
			}
			// The test clock stands still: entries of one instant come in id
			// order (audit's own test checks newest first).
			slices.Sort(actions)
			want := []string{"account.signup", "account.login_failed", "account.login", "key.create", "key.create", "key.revoke",
				"billing.spend_cap_set", "function.create", "function.version", "function.publish", "function.unpublish", "function.error_rate_alert_set",
				"webhook.create", "webhook.delete"}
			slices.Sort(want)
			if fmt.Sprint(actions) != fmt.Sprint(want) {
				t.Fatalf("A's log:\n got %v\nwant %v", actions, want)
			}
			// No route changes or removes entries.
			for _, m := range []string{"PUT", "PATCH", "DELETE", "POST"} {
				if a := h.do(m, "/api/v1/audit", tokA, map[string]any{}); a.status != 405 && a.status != 404 {
					t.Errorf("%s /api/v1/audit answered %d", m, a.status)
				}
			}
			h.must(401, h.do("GET", "/api/v1/audit", "", nil))
			h.must(400, h.do("GET", "/api/v1/audit?cursor=zzz", tokA, nil))
		})
	}
}
