package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestPaymentsEndToEnd runs the program with Stripe (stripe-mock) and drives
// a consumer from free_only to active with a card, then buys credit, through
// the portal's routes and signed events at POST /webhooks/stripe.
func TestPaymentsEndToEnd(t *testing.T) {
	mock := testenv.StripeMock(t)
	env := baseEnv(t, testenv.Backends()[0])
	env["STRIPE_SECRET_KEY"] = "sk_test_fnmarket"
	env["STRIPE_API_BASE"] = mock
	env["STRIPE_WEBHOOK_SECRET"] = "whsec_e2e"
	inst := start(t, "serve", env)
	c := client{t: t, base: inst.url}
	tok := c.signup("payer@example.com")
	id := c.call("GET", "/api/v1/me", tok, nil, 200)["id"].(string)
	if b := c.call("GET", "/api/v1/billing", tok, nil, 200); b["standing"] != "free_only" || b["balance"] != "0.00" {
		t.Fatalf("a new account with Stripe configured: %v", b)
	}
	if u, _ := c.call("POST", "/api/v1/billing/payment-method", tok, nil, 200)["url"].(string); u == "" {
		t.Fatal("no checkout URL")
	}
	event := func(id, typ string, obj map[string]any) {
		t.Helper()
		payload, _ := json.Marshal(map[string]any{"id": id, "object": "event", "type": typ, "created": time.Now().Unix(), "data": map[string]any{"object": obj}})
		sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_e2e", Timestamp: time.Now()})
		req, _ := http.NewRequest("POST", inst.url+"/webhooks/stripe", strings.NewReader(string(sp.Payload)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", sp.Header)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("event %s: %d %s", id, res.StatusCode, raw)
		}
	}
	event("evt_setup", "checkout.session.completed", map[string]any{"id": "cs_setup", "object": "checkout.session", "mode": "setup", "status": "complete",
		"setup_intent": "seti_1", "metadata": map[string]string{"fnm_account_id": id, "fnm_purpose": "payment_method"}})
	b := c.call("GET", "/api/v1/billing", tok, nil, 200)
	pm, _ := b["payment_method"].(map[string]any)
	if b["standing"] != "active" || pm == nil || pm["brand"] == "" || len(pm["last4"].(string)) != 4 {
		t.Errorf("after the card was added: %v", b)
	}
	credit := map[string]any{"id": "cs_credit", "object": "checkout.session", "mode": "payment", "payment_status": "paid", "status": "complete",
		"amount_total": 2000, "currency": "usd", "metadata": map[string]string{"fnm_account_id": id, "fnm_purpose": "credit"}}
	event("evt_credit", "checkout.session.completed", credit)
	event("evt_credit", "checkout.session.completed", credit)
	if b := c.call("GET", "/api/v1/billing", tok, nil, 200); b["balance"] != "20.00" || b["currency"] != "USD" {
		t.Errorf("after 20.00 of credit, delivered twice: %v", b)
	}
}
