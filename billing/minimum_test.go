package billing

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestInvoiceUnderMinimumChargeIsCarriedForward runs against stripe-mock: an
// invoice under Stripe's 0.50 USD minimum is never pushed (Stripe would mark
// it paid without charging, and its vendor would be paid for money nobody
// collected); its total is a carried_forward line on the consumer's next
// invoice, and it is paid, and its vendor paid, only when that one is.
func TestInvoiceUnderMinimumChargeIsCarriedForward(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		acme := f.vendor("acme")
		fn := f.function(acme, "tiny", usd("0.01", "0", 0))
		if _, err := f.biller.OnboardVendor(f.ctx, acme.ID, "https://portal.example/statements"); err != nil {
			t.Fatal(err)
		}
		alice, bob, carol := f.consumer("alice"), f.consumer("bob"), f.consumer("carol")
		f.usage(jan.Add(time.Hour), alice, fn, 1, 20, 0) // 0.20: under the minimum
		f.usage(jan.Add(time.Hour), bob, fn, 1, 100, 0)  // 1.00
		f.usage(jan.Add(time.Hour), carol, fn, 1, 10, 0) // 0.10
		f.usage(feb.Add(time.Hour), alice, fn, 1, 40, 0) // 0.40 + 0.20 carried = 0.60
		f.usage(feb.Add(time.Hour), carol, fn, 1, 10, 0) // 0.10 + 0.10 carried = 0.20: carried again
		f.usage(mar.Add(time.Hour), carol, fn, 1, 30, 0) // 0.30 + 0.20 carried = 0.50
		rec.take()

		rep := f.bill(jan, Options{})
		if rep.CarriedForward != 2 || rep.Sync.Invoices != 1 {
			t.Errorf("January report = %+v, want 2 carried forward and 1 pushed", rep)
		}
		aJan, bJan := f.only(alice, jan), f.only(bob, jan)
		if aJan.Status != StatusOpen || aJan.SyncStatus != SyncCarriedForward || aJan.StripeInvoiceID != "" {
			t.Errorf("alice's 0.20 invoice = %+v, want open, carried forward, not in Stripe", aJan)
		}
		for _, c := range rec.take() {
			if strings.Contains(c.Key, aJan.ID) || c.Key == "fnm-cus-"+alice {
				t.Errorf("invoice under the minimum pushed to Stripe: %s %s", c.Path, c.Key)
			}
		}
		if bJan.SyncStatus != SyncSynced {
			t.Errorf("bob's invoice = %+v", bJan)
		}
		// Nothing is paid out for alice's January while it is not collected.
		f.clock.Set(feb.Add(24 * time.Hour))
		if _, err := f.biller.SyncPending(f.ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range rec.take() {
			if c.Path == "/v1/transfers" {
				t.Errorf("transfer before anything was collected: %+v", c)
			}
		}

		f.clock.Set(mar.Add(24 * time.Hour))
		f.bill(feb, Options{})
		aFeb := f.only(alice, feb)
		last := aFeb.Lines[len(aFeb.Lines)-1]
		if aFeb.Total.String() != "0.60" || aFeb.SyncStatus != SyncSynced || last.Kind != LineCarriedForward ||
			last.Amount.String() != "0.20" || last.CarriedInvoiceID != aJan.ID || !last.PeriodStart.Equal(jan) {
			t.Fatalf("alice's February invoice = %+v, want 0.40 usage + 0.20 carried, pushed", aFeb)
		}
		if got := f.only(alice, jan); got.CarriedTo != aFeb.ID || got.Status != StatusOpen {
			t.Errorf("alice's January after February was issued = %+v", got)
		}
		var items []stripeCall
		for _, c := range rec.take() {
			if c.Path == "/v1/invoiceitems" && strings.Contains(c.Key, aFeb.ID) {
				items = append(items, c)
			}
		}
		if len(items) != 2 || items[1].Form.Get("amount") != "20" || !strings.Contains(items[1].Form.Get("description"), aJan.ID) {
			t.Errorf("Stripe items of alice's February = %+v, want the usage and the 0.20 carried", items)
		}
		// The carried invoice is settled with the one that carries it.
		wantCode(t, f.biller.Transition(f.ctx, aJan.ID, StatusPaid, "wire"), fnmarket.ECONFLICT)

		// Stripe collects February: January is paid with it and acme is
		// paid for both.
		payload, sig := signedEvent(f, "evt_feb_paid", "invoice.paid", aFeb.StripeInvoiceID, aFeb.ID)
		if err := f.biller.HandleWebhook(f.ctx, payload, sig); err != nil {
			t.Fatal(err)
		}
		if got := f.only(alice, jan); got.Status != StatusPaid {
			t.Errorf("alice's January after February was paid = %+v", got)
		}
		transfers := map[string]string{}
		for _, c := range rec.take() {
			if c.Path == "/v1/transfers" {
				transfers[c.Key] = c.Form.Get("amount")
			}
		}
		// 0.20 gross, 0.04 fee; 0.40 gross, 0.08 fee.
		if transfers["fnm-pay-"+aJan.ID+"-"+acme.ID] != "16" || transfers["fnm-pay-"+aFeb.ID+"-"+acme.ID] != "32" || len(transfers) != 2 {
			t.Errorf("transfers = %v, want 16 cents for January and 32 for February", transfers)
		}

		// Carried twice: carol's 0.10 in January, 0.20 in February, then
		// March's 0.50 is pushed and pays all three.
		cFeb := f.only(carol, feb)
		if cFeb.SyncStatus != SyncCarriedForward || cFeb.Total.String() != "0.20" || f.only(carol, jan).CarriedTo != cFeb.ID {
			t.Fatalf("carol's February = %+v", cFeb)
		}
		f.clock.Set(mar.AddDate(0, 1, 1))
		f.bill(mar, Options{})
		cMar := f.only(carol, mar)
		if cMar.Total.String() != "0.50" || cMar.SyncStatus != SyncSynced {
			t.Fatalf("carol's March = %+v", cMar)
		}
		if up, err := f.biller.Upcoming(f.ctx, carol); err != nil || len(up[0].Lines) != 0 {
			t.Errorf("carol's upcoming invoice = %+v, %v: nothing is left to carry", up, err)
		}
		if err := f.biller.Transition(f.ctx, cMar.ID, StatusPaid, "wire"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []time.Time{jan, feb} {
			if got := f.only(carol, p); got.Status != StatusPaid {
				t.Errorf("carol's %s = %+v, want paid with March", p.Format("2006-01"), got)
			}
		}
		sts, err := f.biller.Statements(f.ctx, acme.ID)
		if err != nil || len(sts) != 3 {
			t.Fatalf("statements = %+v, %v", sts, err)
		}
		// Every month's statement counts only acme's own usage, never the
		// carried lines again: Jan 0.20+1.00+0.10, Feb 0.40+0.10, Mar 0.30.
		for i, want := range []string{"0.30", "0.50", "1.30"} {
			if sts[i].Gross.String() != want {
				t.Errorf("statement %s gross %s, want %s", sts[i].PeriodStart.Format("2006-01"), sts[i].Gross, want)
			}
		}
	})
}

// TestVoidReleasesWhatItCarried: voiding the invoice that carries an
// earlier one leaves that amount owed; it is carried to the next invoice.
func TestVoidReleasesWhatItCarried(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := stripeFixture(t, be, "http://127.0.0.1:1", &recorder{down: func(string) bool { return true }})
		acme := f.vendor("acme")
		fn := f.function(acme, "tiny", usd("0.01", "0", 0))
		alice := f.consumer("alice")
		f.usage(jan.Add(time.Hour), alice, fn, 1, 20, 0)
		f.usage(feb.Add(time.Hour), alice, fn, 1, 100, 0)
		f.usage(mar.Add(time.Hour), alice, fn, 1, 100, 0)
		f.bill(jan, Options{})
		f.clock.Set(mar.Add(time.Hour))
		f.bill(feb, Options{})
		aJan, aFeb := f.only(alice, jan), f.only(alice, feb)
		if err := f.biller.Transition(f.ctx, aFeb.ID, StatusVoid, "wrong usage"); err != nil {
			t.Fatal(err)
		}
		if got := f.only(alice, jan); got.CarriedTo != "" || got.Status != StatusOpen || got.SyncStatus != SyncCarriedForward {
			t.Fatalf("January after its carrier was voided = %+v", got)
		}
		f.clock.Set(mar.AddDate(0, 1, 1))
		f.bill(mar, Options{})
		aMar := f.only(alice, mar)
		if aMar.Total.String() != "1.20" || f.only(alice, jan).CarriedTo != aMar.ID {
			t.Errorf("March = %+v, want 1.00 + the 0.20 of %s carried", aMar, aJan.ID)
		}
	})
}
