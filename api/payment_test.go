package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// fakePayments records the Checkout sessions the API asks for.
type fakePayments struct {
	mu    sync.Mutex
	calls []string
}

func (p *fakePayments) PaymentMethodCheckout(_ context.Context, account, success, cancel string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("setup %s %s %s", account, success, cancel))
	return "https://checkout.stripe.test/c/setup", nil
}

func (p *fakePayments) CreditCheckout(_ context.Context, account string, amount decimal.Decimal, success, cancel string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, fmt.Sprintf("credit %s %s %s %s", account, amount.StringFixed(2), success, cancel))
	return "https://checkout.stripe.test/c/credit", nil
}

func (p *fakePayments) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = nil
	return c
}

func TestBillingRoutes(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			pay := &fakePayments{}
			db := testenv.DB(t, b)
			store := accounts.NewStore(db, nil, bcrypt.MinCost)
			store.SetBillingPolicy(accounts.BillingPolicy{PaymentsEnabled: true, SuspendAfter: 14 * 24 * time.Hour})
			h := newHarness(t, b, func(d *api.Deps) {
				d.Accounts = store
				d.Billing = cannedBilling{}
				d.Payments = pay
				d.PublicURL = "https://portal.test/"
			})
			h.must(401, h.do("GET", "/api/v1/billing", "", nil))
			alice, bob := h.signup("alice@example.com"), h.signup("bob@example.com")
			aliceID := h.must(200, h.do("GET", "/api/v1/me", alice, nil)).str("id")

			got := h.must(200, h.do("GET", "/api/v1/billing", alice, nil))
			if got.str("standing") != "free_only" || got.body["payment_method"] != nil || got.str("balance") != "0.00" || got.str("currency") != "USD" ||
				got.body["monthly_spend_cap"] != nil || got.str("month_to_date") != "12.30" {
				t.Errorf("a new account's billing: %s", got.raw)
			}
			if a := h.must(200, h.do("PUT", "/api/v1/billing/spend-cap", alice, map[string]any{"monthly_spend_cap": "50.00"})); a.str("monthly_spend_cap") != "50.00" || a.str("standing") != "free_only" {
				t.Errorf("after setting the cap: %s", a.raw)
			}
			// Bob neither sees nor changes Alice's cap.
			if a := h.must(200, h.do("GET", "/api/v1/billing", bob, nil)); a.body["monthly_spend_cap"] != nil {
				t.Errorf("bob sees a cap: %s", a.raw)
			}
			h.must(200, h.do("PUT", "/api/v1/billing/spend-cap", bob, map[string]any{"monthly_spend_cap": "7.5"}))
			capOf := func(tok string) any {
				return h.must(200, h.do("GET", "/api/v1/billing", tok, nil)).body["monthly_spend_cap"]
			}
			if c := capOf(alice); c != "50.00" {
				t.Errorf("alice's cap after bob set his = %v", c)
			}
			if c := capOf(bob); c != "7.50" {
				t.Errorf("bob's cap = %v", c)
			}
			// Invalid caps are refused and change nothing.
			for _, body := range []string{`{"monthly_spend_cap":"0"}`, `{"monthly_spend_cap":"-1"}`, `{"monthly_spend_cap":"abc"}`,
				`{"monthly_spend_cap":"1.1234567"}`, `{"monthly_spend_cap":"1000000001"}`, `{"monthly_spend_cap":50}`, `{}`,
				`{"monthly_spend_cap":"5","extra":1}`, `{"monthly_spend_cap":["5"]}`} {
				a := h.do("PUT", "/api/v1/billing/spend-cap", alice, body)
				if a.status != 400 || a.str("code") != "invalid_input" {
					t.Errorf("PUT %s: %d %s, want 400 invalid_input", body, a.status, a.raw)
				}
			}
			if c := capOf(alice); c != "50.00" {
				t.Errorf("alice's cap after refused changes = %v", c)
			}
			if a := h.must(200, h.do("PUT", "/api/v1/billing/spend-cap", alice, `{"monthly_spend_cap":null}`)); a.body["monthly_spend_cap"] != nil {
				t.Errorf("after removing the cap: %s", a.raw)
			}
			if c := capOf(bob); c != "7.50" {
				t.Errorf("bob's cap after alice removed hers = %v", c)
			}

			// Checkout links, for the caller's own account, coming back to the
			// portal's billing page.
			if a := h.must(200, h.do("POST", "/api/v1/billing/payment-method", alice, nil)); a.str("url") != "https://checkout.stripe.test/c/setup" {
				t.Errorf("payment method: %s", a.raw)
			}
			if a := h.must(200, h.do("POST", "/api/v1/billing/credits", alice, map[string]any{"amount": "20.00"})); a.str("url") != "https://checkout.stripe.test/c/credit" {
				t.Errorf("credits: %s", a.raw)
			}
			want := []string{
				"setup " + aliceID + " https://portal.test/billing?payment_method=added https://portal.test/billing?payment_method=cancelled",
				"credit " + aliceID + " 20.00 https://portal.test/billing?credits=added https://portal.test/billing?credits=cancelled",
			}
			if c := pay.take(); fmt.Sprint(c) != fmt.Sprint(want) {
				t.Errorf("checkout requests = %q, want %q", c, want)
			}
			for _, body := range []string{`{"amount":"0"}`, `{"amount":"0.49"}`, `{"amount":"10000.01"}`, `{"amount":"1.234"}`, `{"amount":""}`,
				`{"amount":20}`, `{}`, `{"amount":"-5"}`} {
				a := h.do("POST", "/api/v1/billing/credits", alice, body)
				if a.status != 400 || a.str("code") != "invalid_input" {
					t.Errorf("POST credits %s: %d %s, want 400 invalid_input", body, a.status, a.raw)
				}
			}
			if c := pay.take(); len(c) != 0 {
				t.Errorf("refused amounts reached Stripe: %q", c)
			}
			h.must(401, h.do("POST", "/api/v1/billing/credits", "", map[string]any{"amount": "20.00"}))

			// What Stripe's events store shows: the card (never its Stripe id)
			// and the balance, exact.
			now := time.Now()
			if err := accounts.SetPaymentMethod(db.DB, aliceID, accounts.PaymentMethod{StripeID: "pm_secret", Brand: "visa", Last4: "4242"}, now); err != nil {
				t.Fatal(err)
			}
			if _, err := accounts.GrantCredit(db.DB, accounts.CreditGrant{AccountID: aliceID, Amount: decimal.RequireFromString("20.00"), Currency: "USD", Source: "cs_1"}, now); err != nil {
				t.Fatal(err)
			}
			err := db.Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors, credit_pico)
				VALUES (0, ?, 'key_1', 'fn_1', 1, 1, 1, 0, 0, 1500000000001)`, aliceID).Error
			if err != nil {
				t.Fatal(err)
			}
			got = h.must(200, h.do("GET", "/api/v1/billing", alice, nil))
			if got.str("standing") != "active" || got.str("payment_method", "brand") != "visa" || got.str("payment_method", "last4") != "4242" ||
				got.str("balance") != "18.499999999999" || strings.Contains(got.raw, "pm_secret") {
				t.Errorf("with a card and credit: %s", got.raw)
			}
			if a := h.must(200, h.do("GET", "/api/v1/billing", bob, nil)); a.body["payment_method"] != nil || a.str("balance") != "0.00" {
				t.Errorf("bob sees alice's card or credit: %s", a.raw)
			}
		})
	}
}

// TestBillingWithoutPayments: without Stripe every account is active, and
// asking to pay answers 409 conflict saying payments are not configured.
func TestBillingWithoutPayments(t *testing.T) {
	h := newHarness(t, testenv.Backends()[0])
	tok := h.signup("alice@example.com")
	got := h.must(200, h.do("GET", "/api/v1/billing", tok, nil))
	if got.str("standing") != "active" || got.str("month_to_date") != "0.00" {
		t.Errorf("billing without payments: %s", got.raw)
	}
	for _, r := range []struct{ path, body string }{{"/api/v1/billing/payment-method", ""}, {"/api/v1/billing/credits", `{"amount":"20.00"}`}} {
		var body any
		if r.body != "" {
			body = r.body
		}
		a := h.do("POST", r.path, tok, body)
		if a.status != 409 || a.str("code") != "conflict" || a.str("detail") == "" {
			t.Errorf("POST %s without Stripe: %d %s, want 409 conflict", r.path, a.status, a.raw)
		}
	}
}
