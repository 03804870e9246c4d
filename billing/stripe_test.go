package billing

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// startStripeMock runs stripe-mock for this test (see testenv.StripeMock).
func startStripeMock(t *testing.T) string { return testenv.StripeMock(t) }

// stripeCall is one request billing made to Stripe.
type stripeCall struct {
	Method, Path, Key string
	Form              url.Values
}

// recorder notes every Stripe request and can play an outage for requests
// whose path matches down.
type recorder struct {
	mu    sync.Mutex
	calls []stripeCall
	down  func(path string) bool
	next  http.RoundTripper
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	form, _ := url.ParseQuery(string(body))
	r.mu.Lock()
	r.calls = append(r.calls, stripeCall{req.Method, req.URL.Path, req.Header.Get("Idempotency-Key"), form})
	down := r.down
	r.mu.Unlock()
	if down != nil && down(req.URL.Path) {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: http.Header{"Content-Type": {"application/json"}}, Request: req,
			Body: io.NopCloser(strings.NewReader(`{"error":{"type":"api_error","message":"Stripe is down for this test"}}`))}, nil
	}
	if r.next == nil {
		return nil, fmt.Errorf("no stripe in this test")
	}
	return r.next.RoundTrip(req)
}

// take returns and forgets the calls recorded so far.
func (r *recorder) take() []stripeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recorder) setDown(f func(string) bool) {
	r.mu.Lock()
	r.down = f
	r.mu.Unlock()
}

func stripeFixture(t *testing.T, be testenv.Backend, base string, rec *recorder) *fixture {
	return newFixture(t, be, func(c *Config) {
		c.Stripe = StripeConfig{SecretKey: "sk_test_fnmarket", APIBase: base, WebhookSecret: "whsec_test", HTTPClient: &http.Client{Transport: rec, Timeout: 10 * time.Second}}
	})
}

func keys(calls []stripeCall) []string {
	out := make([]string, 0, len(calls))
	for _, c := range calls {
		out = append(out, c.Key)
	}
	return out
}

func TestStripeSyncsIssuedInvoices(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		alice, bob, _, fnB, _ := seedJanuary(f)
		rep := f.bill(jan, Options{})
		if rep.SyncFailures != 0 {
			t.Fatalf("report = %+v", rep)
		}
		calls := rec.take()
		byKey := map[string]stripeCall{}
		for _, c := range calls {
			if c.Method != http.MethodPost || c.Key == "" {
				t.Errorf("request without idempotency key: %+v", c)
			}
			if _, dup := byKey[c.Key]; dup {
				t.Errorf("idempotency key %s used twice in one sync", c.Key)
			}
			byKey[c.Key] = c
		}
		for _, consumer := range []string{alice, bob} {
			inv := f.only(consumer, jan)
			if inv.SyncStatus != SyncSynced || !strings.HasPrefix(inv.StripeInvoiceID, "in_") {
				t.Errorf("%s's invoice = %+v", consumer, inv)
			}
			cus, ok := byKey["fnm-cus-"+consumer]
			if !ok || cus.Path != "/v1/customers" || cus.Form.Get("metadata[fnm_consumer_id]") != consumer || !strings.Contains(cus.Form.Get("email"), "@example.com") {
				t.Errorf("customer call for %s = %+v", consumer, cus)
			}
			create := byKey["fnm-inv-"+inv.ID+"-create"]
			if create.Path != "/v1/invoices" || create.Form.Get("currency") != "usd" || create.Form.Get("pending_invoice_items_behavior") != "exclude" ||
				create.Form.Get("metadata[fnm_invoice_id]") != inv.ID || !strings.HasPrefix(create.Form.Get("customer"), "cus_") {
				t.Errorf("invoice create for %s = %+v", inv.ID, create)
			}
			var cents int64
			for i, l := range inv.Lines {
				item, ok := byKey[fmt.Sprintf("fnm-inv-%s-item-%d", inv.ID, i+1)]
				if l.Amount.IsZero() {
					if ok {
						t.Errorf("zero line %d pushed", i+1)
					}
					continue
				}
				if !ok || item.Path != "/v1/invoiceitems" || item.Form.Get("amount") != strconv.FormatInt(l.Amount.Cents(), 10) ||
					item.Form.Get("invoice") != inv.StripeInvoiceID || item.Form.Get("currency") != "usd" {
					t.Errorf("item for line %d = %+v (line %+v)", i+1, item, l)
				}
				cents += l.Amount.Cents()
			}
			if cents != inv.TotalCents {
				t.Errorf("items add up to %d cents, invoice %d", cents, inv.TotalCents)
			}
			if fin := byKey["fnm-inv-"+inv.ID+"-finalize"]; fin.Path != "/v1/invoices/"+inv.StripeInvoiceID+"/finalize" {
				t.Errorf("finalize = %+v", fin)
			}
		}
		if n := f.count("stripe_customers"); n != 2 {
			t.Errorf("%d stripe customers stored, want 2", n)
		}
		var unsynced int64
		f.db.Table("invoice_lines").Where("amount_cents <> 0 AND stripe_item_id IS NULL").Count(&unsynced)
		if unsynced != 0 {
			t.Errorf("%d lines without their stripe item id", unsynced)
		}

		// Nothing pending: another pass makes no calls.
		if res, err := f.biller.SyncPending(f.ctx); err != nil || res != (SyncResult{}) || len(rec.take()) != 0 {
			t.Errorf("idle sync = %+v, %v", res, err)
		}
		// Next month: the customer exists already.
		f.usage(feb.Add(time.Hour), alice, fnB, 1, 2, 0)
		f.clock.Set(mar)
		f.bill(feb, Options{})
		for _, c := range rec.take() {
			if c.Path == "/v1/customers" {
				t.Errorf("customer created again: %+v", c)
			}
		}
	})
}

func TestStripeDownLeavesInvoicesIssuedAndRetriesWithSameKeys(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		alice, _, _, _, _ := seedJanuary(f)

		rec.setDown(func(string) bool { return true })
		rep := f.bill(jan, Options{})
		if rep.SyncFailures != 2 || rep.Finalized != 2 {
			t.Fatalf("report while Stripe is down = %+v", rep)
		}
		inv := f.only(alice, jan)
		if inv.Status != StatusOpen || inv.SyncStatus != SyncPending || inv.StripeInvoiceID != "" {
			t.Fatalf("invoice while Stripe is down = %+v", inv)
		}
		down := keys(rec.take())

		// Stripe comes back but finalizing still fails: what was created is
		// stored and not created again.
		rec.setDown(func(p string) bool { return strings.HasSuffix(p, "/finalize") })
		res, err := f.biller.SyncPending(f.ctx)
		if err != nil || res.InvoiceFailures != 2 {
			t.Fatalf("half-down sync = %+v, %v", res, err)
		}
		half := keys(rec.take())
		for _, k := range down {
			if !slices.Contains(half, k) {
				t.Errorf("retry did not reuse key %s", k)
			}
		}
		var attempts int
		f.db.Table("invoices").Where("id = ?", inv.ID).Select("sync_attempts").Scan(&attempts)
		if attempts != 2 {
			t.Errorf("sync attempts = %d, want 2", attempts)
		}

		rec.setDown(nil)
		res, err = f.biller.SyncPending(f.ctx)
		if err != nil || res.Invoices != 2 || res.InvoiceFailures != 0 {
			t.Fatalf("recovered sync = %+v, %v", res, err)
		}
		for _, c := range rec.take() {
			if !strings.HasSuffix(c.Path, "/finalize") {
				t.Errorf("after recovery, repeated a finished step: %+v", c)
			}
			if !slices.Contains(half, c.Key) {
				t.Errorf("finalize used a new key %s", c.Key)
			}
		}
		if got := f.only(alice, jan); got.SyncStatus != SyncSynced || got.StripeInvoiceID == "" {
			t.Errorf("after recovery = %+v", got)
		}
	})
}

func TestStripeConnectOnboardingAndPayouts(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		alice, bob, _, _, acme := seedJanuary(f)

		_, err := f.biller.OnboardVendor(f.ctx, acme.ID, "javascript:alert(1)")
		wantCode(t, err, fnmarket.EINVALID)
		_, err = f.biller.OnboardVendor(f.ctx, "ven_nope", "https://portal.example/vendor")
		wantCode(t, err, fnmarket.ENOTFOUND)
		rec.take()
		link, err := f.biller.OnboardVendor(f.ctx, acme.ID, "https://portal.example/vendor")
		if err != nil || !strings.HasPrefix(link, "https://") {
			t.Fatalf("onboard = %q, %v", link, err)
		}
		calls := rec.take()
		if len(calls) != 2 || calls[0].Path != "/v1/accounts" || calls[0].Key != "fnm-ven-"+acme.ID+"-account" || calls[0].Form.Get("type") != "express" ||
			calls[1].Path != "/v1/account_links" || calls[1].Form.Get("return_url") != "https://portal.example/vendor" || calls[1].Form.Get("type") != "account_onboarding" {
			t.Errorf("onboarding calls = %+v", calls)
		}
		vs, _ := f.catalog.VendorsByID(f.ctx, []string{acme.ID})
		acct := vs[acme.ID].StripeAccountID
		if !strings.HasPrefix(acct, "acct_") || calls[1].Form.Get("account") != acct {
			t.Fatalf("stored connect account %q, link for %q", acct, calls[1].Form.Get("account"))
		}
		if _, err := f.biller.OnboardVendor(f.ctx, acme.ID, "https://portal.example/vendor"); err != nil {
			t.Fatal(err)
		}
		if calls := rec.take(); len(calls) != 1 || calls[0].Path != "/v1/account_links" {
			t.Errorf("second onboarding made %+v", calls)
		}

		f.bill(jan, Options{})
		a, b := f.only(alice, jan), f.only(bob, jan)
		rec.take()
		// Stripe says alice paid: acme gets its net of her invoice.
		payload, sig := signedEvent(f, "evt_paid_a", "invoice.paid", a.StripeInvoiceID, a.ID)
		if err := f.biller.HandleWebhook(f.ctx, payload, sig); err != nil {
			t.Fatal(err)
		}
		calls = rec.take()
		// 1.28 gross, 0.26 fee (20%, half-even), 1.02 net.
		if len(calls) != 1 || calls[0].Path != "/v1/transfers" || calls[0].Key != "fnm-pay-"+a.ID+"-"+acme.ID || calls[0].Form.Get("amount") != "102" ||
			calls[0].Form.Get("destination") != acct || calls[0].Form.Get("currency") != "usd" {
			t.Errorf("payout calls = %+v", calls)
		}
		sts, _ := f.biller.Statements(f.ctx, acme.ID)
		if len(sts) != 1 || sts[0].PayoutStatus != StatementPartial {
			t.Errorf("statement after one payout = %+v", sts)
		}
		// An operator records bob's payment made outside Stripe: Stripe is
		// told first, then acme is paid.
		if err := f.biller.Transition(f.ctx, b.ID, StatusPaid, "wire"); err != nil {
			t.Fatal(err)
		}
		calls = rec.take()
		if len(calls) != 2 || calls[0].Path != "/v1/invoices/"+b.StripeInvoiceID+"/pay" || calls[0].Form.Get("paid_out_of_band") != "true" ||
			calls[1].Path != "/v1/transfers" || calls[1].Key != "fnm-pay-"+b.ID+"-"+acme.ID {
			t.Errorf("operator payment calls = %+v", calls)
		}
		sts, _ = f.biller.Statements(f.ctx, acme.ID)
		if len(sts) != 1 || sts[0].PayoutStatus != StatementPaid {
			t.Errorf("statement after both payouts = %+v", sts)
		}
		// Nothing is paid twice.
		if res, err := f.biller.SyncPending(f.ctx); err != nil || res.Payouts != 0 || len(rec.take()) != 0 {
			t.Errorf("sync after payouts = %+v, %v", res, err)
		}
	})
}

func TestStripeOffByDefault(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, nil)
		_, _, _, _, acme := seedJanuary(f)
		f.bill(jan, Options{})
		_, err := f.biller.OnboardVendor(f.ctx, acme.ID, "https://portal.example/")
		wantCode(t, err, fnmarket.ECONFLICT)
		wantCode(t, f.biller.HandleWebhook(f.ctx, []byte(`{}`), "t=1,v1=00"), fnmarket.ENOTFOUND)
		if res, err := f.biller.SyncPending(f.ctx); err != nil || res != (SyncResult{}) {
			t.Errorf("sync without stripe = %+v, %v", res, err)
		}
		var pending int64
		f.db.Table("invoices").Where("sync_status <> ?", SyncNone).Count(&pending)
		if pending != 0 {
			t.Errorf("%d invoices waiting for a Stripe that is not configured", pending)
		}
	})
}
