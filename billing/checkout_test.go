package billing

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/usage"
)

// signedObjectEvent builds a Stripe event carrying obj, signed as Stripe
// would at the fixture's time.
func signedObjectEvent(f *fixture, id, typ string, obj map[string]any) ([]byte, string) {
	f.t.Helper()
	payload, err := json.Marshal(map[string]any{"id": id, "object": "event", "api_version": "2023-10-16", "type": typ,
		"created": f.clock.Now().Unix(), "data": map[string]any{"object": obj}})
	if err != nil {
		f.t.Fatal(err)
	}
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_test", Timestamp: f.clock.Now()})
	return sp.Payload, sp.Header
}

func (f *fixture) send(id, typ string, obj map[string]any) error {
	p, h := signedObjectEvent(f, id, typ, obj)
	return f.biller.HandleWebhook(f.ctx, p, h)
}

// creditSession is a completed Checkout session that bought credit.
func creditSession(id, account string, cents int64) map[string]any {
	return map[string]any{"id": id, "object": "checkout.session", "mode": "payment", "payment_status": "paid", "status": "complete",
		"amount_total": cents, "currency": "usd", "customer": "cus_x", "metadata": map[string]string{metaAccount: account, metaPurpose: purposeCredit}}
}

func (f *fixture) billingOf(account string) accounts.Billing {
	f.t.Helper()
	b, err := f.accounts.Billing(f.ctx, account)
	if err != nil {
		f.t.Fatalf("billing of %s: %v", account, err)
	}
	return b
}

func payments(f *fixture) {
	f.accounts.SetBillingPolicy(accounts.BillingPolicy{PaymentsEnabled: true, SuspendAfter: 14 * 24 * time.Hour})
}

func TestCheckoutSessions(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		alice := f.consumer("alice")

		u, err := f.biller.PaymentMethodCheckout(f.ctx, alice, "https://portal.test/billing?payment_method=added", "https://portal.test/billing?payment_method=cancelled")
		if err != nil || u == "" {
			t.Fatalf("setup checkout: %q %v", u, err)
		}
		calls := rec.take()
		if len(calls) != 2 || calls[0].Path != "/v1/customers" || calls[0].Key != "fnm-cus-"+alice {
			t.Fatalf("calls = %+v, want the customer then the session", calls)
		}
		s := calls[1]
		if s.Path != "/v1/checkout/sessions" || s.Form.Get("mode") != "setup" || !strings.HasPrefix(s.Form.Get("customer"), "cus_") ||
			s.Form.Get("success_url") != "https://portal.test/billing?payment_method=added" || s.Form.Get("cancel_url") != "https://portal.test/billing?payment_method=cancelled" ||
			s.Form.Get("metadata[fnm_account_id]") != alice || s.Form.Get("client_reference_id") != alice || s.Key == "" {
			t.Errorf("setup session request = %+v", s)
		}

		u, err = f.biller.CreditCheckout(f.ctx, alice, dec("20.00"), "https://portal.test/billing?credits=added", "https://portal.test/billing?credits=cancelled")
		if err != nil || u == "" {
			t.Fatalf("credit checkout: %q %v", u, err)
		}
		calls = rec.take()
		if len(calls) != 1 {
			t.Fatalf("calls = %+v, want only the session (the customer exists)", calls)
		}
		s = calls[0]
		if s.Form.Get("mode") != "payment" || s.Form.Get("line_items[0][price_data][unit_amount]") != "2000" ||
			s.Form.Get("line_items[0][price_data][currency]") != "usd" || s.Form.Get("line_items[0][quantity]") != "1" ||
			s.Form.Get("metadata[fnm_account_id]") != alice || s.Form.Get("metadata[fnm_credit_amount]") != "20.00" ||
			s.Form.Get("payment_intent_data[metadata][fnm_account_id]") != alice || s.Form.Get("customer") == "" {
			t.Errorf("credit session request = %+v", s)
		}
		for _, bad := range []string{"0", "0.49", "-5", "10000.01", "1.234"} {
			_, err := f.biller.CreditCheckout(f.ctx, alice, dec(bad), "https://portal.test/a", "https://portal.test/b")
			wantCode(t, err, fnmarket.EINVALID)
		}
		if c := rec.take(); len(c) != 0 {
			t.Errorf("refused amounts reached Stripe: %+v", c)
		}
	})
}

func TestCheckoutWithoutStripe(t *testing.T) {
	f := newFixture(t, testenv.Backends()[0], nil)
	alice := f.consumer("alice")
	_, err := f.biller.PaymentMethodCheckout(f.ctx, alice, "https://p/a", "https://p/b")
	wantCode(t, err, fnmarket.ECONFLICT)
	_, err = f.biller.CreditCheckout(f.ctx, alice, dec("20"), "https://p/a", "https://p/b")
	wantCode(t, err, fnmarket.ECONFLICT)
	if f.biller.PaymentsEnabled() || f.billingOf(alice).Standing != usage.StandingActive {
		t.Errorf("without Stripe: enabled %v, standing %s", f.biller.PaymentsEnabled(), f.billingOf(alice).Standing)
	}
}

// TestSetupCompletedPutsCardOnFile: a completed setup session stores the
// card Stripe reports, makes it the customer's default for invoices, and
// turns the account from free_only to active; a redelivery asks Stripe
// nothing.
func TestSetupCompletedPutsCardOnFile(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		payments(f)
		alice, bob := f.consumer("alice"), f.consumer("bob")
		if _, err := f.biller.PaymentMethodCheckout(f.ctx, alice, "https://p/a", "https://p/b"); err != nil {
			t.Fatal(err)
		}
		var cus string
		if err := f.db.Raw("SELECT stripe_customer_id FROM stripe_customers WHERE consumer_id = ?", alice).Scan(&cus).Error; err != nil || cus == "" {
			t.Fatalf("customer of alice: %q %v", cus, err)
		}
		rec.take()
		if b := f.billingOf(alice); b.Standing != usage.StandingFreeOnly || b.PaymentMethod != nil {
			t.Fatalf("before: %+v", b)
		}
		session := map[string]any{"id": "cs_setup_1", "object": "checkout.session", "mode": "setup", "status": "complete", "customer": cus,
			"setup_intent": "seti_1", "metadata": map[string]string{metaAccount: alice, metaPurpose: purposeCard}}
		if err := f.send("evt_setup_1", "checkout.session.completed", session); err != nil {
			t.Fatal(err)
		}
		b := f.billingOf(alice)
		if b.Standing != usage.StandingActive || b.PaymentMethod == nil || b.PaymentMethod.Brand == "" || len(b.PaymentMethod.Last4) != 4 ||
			!strings.HasPrefix(b.PaymentMethod.StripeID, "pm_") {
			t.Fatalf("after setup: %+v %+v", b, b.PaymentMethod)
		}
		var defaulted bool
		for _, c := range rec.take() {
			if c.Path == "/v1/customers/"+cus && c.Form.Get("invoice_settings[default_payment_method]") == b.PaymentMethod.StripeID {
				defaulted = true
			}
		}
		if !defaulted {
			t.Error("the card was not made the customer's default for invoices")
		}
		if err := f.send("evt_setup_1", "checkout.session.completed", session); err != nil {
			t.Fatal(err)
		}
		if c := rec.take(); len(c) != 0 {
			t.Errorf("a redelivery called Stripe: %+v", c)
		}
		// A session naming another account than its customer's changes nothing.
		forged := map[string]any{"id": "cs_setup_2", "object": "checkout.session", "mode": "setup", "status": "complete", "customer": cus,
			"setup_intent": "seti_2", "metadata": map[string]string{metaAccount: bob, metaPurpose: purposeCard}}
		if err := f.send("evt_setup_2", "checkout.session.completed", forged); err != nil {
			t.Fatal(err)
		}
		if b := f.billingOf(bob); b.PaymentMethod != nil || b.Standing != usage.StandingFreeOnly {
			t.Errorf("bob after a session of alice's customer: %+v", b)
		}
	})
}

// TestCreditGrantedOnce: prepaid credit is granted once per event id and
// once per Checkout session, sequentially and when deliveries race.
func TestCreditGrantedOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := stripeFixture(t, be, "http://127.0.0.1:1", &recorder{down: func(string) bool { return true }})
		payments(f)
		alice, bob := f.consumer("alice"), f.consumer("bob")
		for i := 0; i < 2; i++ { // the same event twice
			if err := f.send("evt_c1", "checkout.session.completed", creditSession("cs_1", alice, 2000)); err != nil {
				t.Fatal(err)
			}
		}
		// The same session under another event id (a different event type
		// reporting it, or Stripe's own duplicate).
		if err := f.send("evt_c2", "checkout.session.async_payment_succeeded", creditSession("cs_1", alice, 2000)); err != nil {
			t.Fatal(err)
		}
		if b := f.billingOf(alice); !b.CreditGranted.Equal(dec("20")) || !b.Balance().Equal(dec("20")) || b.CreditCurrency != "USD" {
			t.Fatalf("after one session reported three times: granted %s balance %s", b.CreditGranted, b.Balance())
		}
		// Unpaid, foreign or other-currency sessions grant nothing.
		unpaid := creditSession("cs_2", alice, 1000)
		unpaid["payment_status"] = "unpaid"
		eur := creditSession("cs_3", alice, 1000)
		eur["currency"] = "eur"
		foreign := creditSession("cs_4", alice, 1000)
		foreign["metadata"] = map[string]string{}
		for i, s := range []map[string]any{unpaid, eur, foreign} {
			if err := f.send(fmt.Sprintf("evt_n%d", i), "checkout.session.completed", s); err != nil {
				t.Fatal(err)
			}
		}
		if b := f.billingOf(alice); !b.CreditGranted.Equal(dec("20")) {
			t.Fatalf("sessions that bought nothing granted credit: %s", b.CreditGranted)
		}

		// Concurrent: one event delivered to eight replicas at once, and one
		// session reported under eight event ids at once.
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := 0; i < 8; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				errs <- f.send("evt_race", "checkout.session.completed", creditSession("cs_race_1", bob, 1234))
			}()
			go func(i int) {
				defer wg.Done()
				errs <- f.send(fmt.Sprintf("evt_race_%d", i), "checkout.session.completed", creditSession("cs_race_2", bob, 500))
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("concurrent delivery: %v", err)
			}
		}
		if b := f.billingOf(bob); !b.CreditGranted.Equal(dec("17.34")) {
			t.Errorf("bob was granted %s, want 17.34 (12.34 + 5.00, once each)", b.CreditGranted)
		}
		var grants int64
		f.db.Table("credit_grants").Where("account_id = ?", bob).Count(&grants)
		if grants != 2 {
			t.Errorf("%d grants for bob, want 2", grants)
		}
		// Credit does not make standing active: without a card it stays
		// free_only (admission lets covered calls through).
		if s := f.billingOf(bob).Standing; s != usage.StandingFreeOnly {
			t.Errorf("bob with credit, no card: %s", s)
		}
	})
}

// TestStandingFollowsInvoices: an account with a card is suspended once an
// invoice Stripe holds stays open past FNMARKET_SUSPEND_AFTER_DAYS from its
// issue, the gateways' poll reports its keys as that happens, and paying
// the invoice makes it active again (and is reported too).
func TestStandingFollowsInvoices(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f, a, b := webhookFixture(t, be)
		payments(f)
		alice, bob := a.ConsumerID, b.ConsumerID
		key, err := f.accounts.CreateKey(f.ctx, alice, "app", nil)
		if err != nil {
			t.Fatal(err)
		}
		hash := fnmarket.HashAPIKey(key.Secret)
		if err := accounts.SetPaymentMethod(f.db.DB, alice, accounts.PaymentMethod{StripeID: "pm_1", Brand: "visa", Last4: "4242"}, f.clock.Now()); err != nil {
			t.Fatal(err)
		}
		if s := f.billingOf(alice).Standing; s != usage.StandingActive {
			t.Fatalf("alice with a card and a fresh invoice: %s", s)
		}
		if s := f.billingOf(bob).Standing; s != usage.StandingFreeOnly {
			t.Fatalf("bob without a card: %s", s)
		}
		reported := func(since time.Time) bool {
			t.Helper()
			hs, err := f.accounts.KeysChangedSince(f.ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hs {
				if h == hash {
					return true
				}
			}
			return false
		}
		// webhookFixture issued January's invoices at the clock's time.
		f.clock.Advance(14*24*time.Hour - time.Second)
		if s := f.billingOf(alice).Standing; s != usage.StandingActive {
			t.Fatalf("a second before the grace ends: %s", s)
		}
		since := f.clock.Now()
		if reported(since) {
			t.Error("alice's key reported before anything changed")
		}
		f.clock.Advance(time.Second)
		if s := f.billingOf(alice).Standing; s != usage.StandingSuspended {
			t.Fatalf("14 days after issue, unpaid: %s", s)
		}
		if s := f.billingOf(bob).Standing; s != usage.StandingSuspended {
			t.Errorf("bob, unpaid: %s", s)
		}
		if !reported(since) {
			t.Error("the poll does not report alice's key when her invoice becomes past due")
		}
		gk, err := f.accounts.KeyByHash(f.ctx, hash)
		if err != nil || gk.Account.Standing != usage.StandingSuspended || gk.Account.Admission().Standing != usage.StandingSuspended {
			t.Errorf("key lookup of a suspended account: %+v %v", gk.Account, err)
		}
		f.clock.Advance(time.Minute)
		if reported(f.clock.Now()) {
			t.Error("the crossing is reported again a minute later")
		}

		// A failed payment leaves it suspended, but gateways reload.
		since = f.clock.Now()
		if err := f.send("evt_fail", "invoice.payment_failed", map[string]any{"id": a.StripeInvoiceID, "object": "invoice"}); err != nil {
			t.Fatal(err)
		}
		if !reported(since) || f.billingOf(alice).Standing != usage.StandingSuspended {
			t.Error("invoice.payment_failed is not reported to gateways")
		}
		f.clock.Advance(time.Second)
		since = f.clock.Now()
		if err := f.send("evt_paid", "invoice.paid", map[string]any{"id": a.StripeInvoiceID, "object": "invoice"}); err != nil {
			t.Fatal(err)
		}
		if s := f.billingOf(alice).Standing; s != usage.StandingActive {
			t.Errorf("after invoice.paid: %s", s)
		}
		if !reported(since) {
			t.Error("invoice.paid is not reported to gateways")
		}
		// Voiding bob's invoice lifts his suspension too.
		if err := f.send("evt_void", "invoice.voided", map[string]any{"id": b.StripeInvoiceID, "object": "invoice"}); err != nil {
			t.Fatal(err)
		}
		if s := f.billingOf(bob).Standing; s != usage.StandingFreeOnly {
			t.Errorf("bob after his invoice was voided: %s", s)
		}
	})
}

// TestCarriedInvoicesSuspendNoOne: an open invoice Stripe does not hold (one
// under the minimum charge, carried forward) never suspends its account.
func TestCarriedInvoicesSuspendNoOne(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f, a, _ := webhookFixture(t, be)
		payments(f)
		if err := f.db.Table("invoices").Where("id = ?", a.ID).Update("sync_status", SyncCarriedForward).Error; err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(60 * 24 * time.Hour)
		if s := f.billingOf(a.ConsumerID).Standing; s != usage.StandingFreeOnly {
			t.Errorf("with only a carried invoice open: %s", s)
		}
	})
}
