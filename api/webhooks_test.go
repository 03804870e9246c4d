package api_test

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/webhooks"
)

// webhookHarness is the API with outbound webhooks on b, private upstreams
// not allowed (URLs must be https and public).
func webhookHarness(t *testing.T, b testenv.Backend) *harness {
	db := testenv.DB(t, b)
	return newHarness(t, b, func(d *api.Deps) {
		d.Accounts = accounts.NewStore(db, d.Clock, bcrypt.MinCost)
		d.Catalog = catalogstore.NewStore(db, d.Clock)
		d.WebhookEndpoints = webhooks.NewStore(db, d.Clock, false)
	})
}

// TestWebhookRoutes: create (secret once), list, deliveries (cursor),
// test, retry and delete, input checks, the per-account limit, and every
// route answering 404 for another account's endpoint.
func TestWebhookRoutes(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			h := webhookHarness(t, b)
			alice, bob := h.signup("alice@example.com"), h.signup("bob@example.com")
			created := h.must(201, h.do("POST", "/api/v1/webhooks", alice, map[string]any{"url": "https://hooks.example.com/fnmarket", "events": []string{"invoice.paid", "key.revoked", "invoice.paid"}}))
			id, secret := created.str("id"), created.str("secret")
			if !strings.HasPrefix(secret, "whsec_") || len(secret) < 6+32 || created.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("create answered %s", created.raw)
			}
			if evs, _ := created.body["events"].([]any); len(evs) != 2 {
				t.Fatalf("events %v, want the two distinct types", created.body["events"])
			}
			listed := h.must(200, h.do("GET", "/api/v1/webhooks", alice, nil))
			if items := listed.items(); len(items) != 1 || items[0]["id"] != id || items[0]["secret"] != nil || items[0]["disabled_reason"] != nil {
				t.Fatalf("list %s", listed.raw)
			}
			if strings.Contains(listed.raw, secret) {
				t.Fatal("the list shows the secret")
			}

			for name, body := range map[string]map[string]any{
				"url":     {"url": "http://hooks.example.com/x", "events": []string{"*"}},
				"private": {"url": "https://127.0.0.1/x", "events": []string{"*"}},
				"meta":    {"url": "https://169.254.169.254/latest", "events": []string{"*"}},
				"events":  {"url": "https://hooks.example.com/x", "events": []string{"invoice.eaten"}},
				"none":    {"url": "https://hooks.example.com/x", "events": []string{}},
				"test":    {"url": "https://hooks.example.com/x", "events": []string{"webhook.test"}},
			} {
				a := h.do("POST", "/api/v1/webhooks", alice, body)
				if a.status != 400 || a.body["code"] != "invalid_input" {
					t.Fatalf("%s: %d %s, want 400 invalid_input", name, a.status, a.raw)
				}
			}

			// Another account: nothing listed, and every route 404.
			if items := h.must(200, h.do("GET", "/api/v1/webhooks", bob, nil)).items(); len(items) != 0 {
				t.Fatalf("bob sees %v", items)
			}
			tested := h.must(202, h.do("POST", "/api/v1/webhooks/"+id+"/test", alice, nil))
			ds := h.must(200, h.do("GET", "/api/v1/webhooks/"+id+"/deliveries", alice, nil)).items()
			if len(ds) != 1 || ds[0]["type"] != "webhook.test" || ds[0]["status"] != "pending" || ds[0]["event_id"] != tested.str("event_id") {
				t.Fatalf("deliveries %v", ds)
			}
			did := ds[0]["id"].(string)
			for _, r := range []struct{ method, path string }{
				{"DELETE", "/api/v1/webhooks/" + id},
				{"GET", "/api/v1/webhooks/" + id + "/deliveries"},
				{"POST", "/api/v1/webhooks/" + id + "/deliveries/" + did + "/retry"},
				{"POST", "/api/v1/webhooks/" + id + "/test"},
				{"POST", "/api/v1/webhooks/" + id + "/enable"},
			} {
				h.must(404, h.do(r.method, r.path, bob, nil))
			}
			// Enabling an endpoint that is not disabled changes nothing.
			if en := h.must(200, h.do("POST", "/api/v1/webhooks/"+id+"/enable", alice, nil)); en.str("id") != id || en.body["disabled_reason"] != nil || en.body["secret"] != nil {
				t.Fatalf("enable answered %s", en.raw)
			}
			h.must(401, h.do("GET", "/api/v1/webhooks", "", nil))

			h.must(202, h.do("POST", "/api/v1/webhooks/"+id+"/deliveries/"+did+"/retry", alice, nil))
			h.must(404, h.do("POST", "/api/v1/webhooks/"+id+"/deliveries/whd_nope/retry", alice, nil))

			// The log pages with a cursor.
			for range 2 {
				h.clock.Advance(1e9)
				h.must(202, h.do("POST", "/api/v1/webhooks/"+id+"/test", alice, nil))
			}
			p1 := h.must(200, h.do("GET", "/api/v1/webhooks/"+id+"/deliveries?limit=2", alice, nil))
			cur := p1.str("next_cursor")
			p2 := h.must(200, h.do("GET", "/api/v1/webhooks/"+id+"/deliveries?limit=2&cursor="+cur, alice, nil))
			if len(p1.items()) != 2 || cur == "" || len(p2.items()) != 1 || p2.str("next_cursor") != "" || p2.items()[0]["id"] != did {
				t.Fatalf("pages %s / %s", p1.raw, p2.raw)
			}
			h.must(400, h.do("GET", "/api/v1/webhooks/"+id+"/deliveries?limit=0", alice, nil))

			// At most 20 endpoints per account.
			for i := 1; i < webhooks.MaxEndpoints; i++ {
				h.must(201, h.do("POST", "/api/v1/webhooks", alice, map[string]any{"url": fmt.Sprintf("https://hooks.example.com/%d", i), "events": []string{"*"}}))
			}
			h.must(409, h.do("POST", "/api/v1/webhooks", alice, map[string]any{"url": "https://hooks.example.com/21", "events": []string{"*"}}))
			h.must(201, h.do("POST", "/api/v1/webhooks", bob, map[string]any{"url": "https://hooks.example.com/bob", "events": []string{"*"}}))

			h.must(204, h.do("DELETE", "/api/v1/webhooks/"+id, alice, nil))
			h.must(404, h.do("DELETE", "/api/v1/webhooks/"+id, alice, nil))
			h.must(404, h.do("GET", "/api/v1/webhooks/"+id+"/deliveries", alice, nil))
			if n := len(h.must(200, h.do("GET", "/api/v1/webhooks", alice, nil)).items()); n != webhooks.MaxEndpoints-1 {
				t.Fatalf("%d endpoints listed after a delete, want %d", n, webhooks.MaxEndpoints-1)
			}
			h.must(201, h.do("POST", "/api/v1/webhooks", alice, map[string]any{"url": "https://hooks.example.com/again", "events": []string{"*"}}))
		})
	}
}
