package billing

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// signedEvent builds a Stripe event about a Stripe invoice, signed with the
// fixture's webhook secret at the fixture's time. Its API version is an old
// one on purpose: events are accepted whatever their version.
func signedEvent(f *fixture, id, typ, stripeInvoiceID, ourID string) ([]byte, string) {
	f.t.Helper()
	obj := map[string]any{"id": stripeInvoiceID, "object": "invoice"}
	if ourID != "" {
		obj["metadata"] = map[string]string{"fnm_invoice_id": ourID}
	}
	payload, err := json.Marshal(map[string]any{"id": id, "object": "event", "api_version": "2020-08-27", "type": typ,
		"created": f.clock.Now().Unix(), "data": map[string]any{"object": obj}})
	if err != nil {
		f.t.Fatal(err)
	}
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_test", Timestamp: f.clock.Now()})
	return sp.Payload, sp.Header
}

// webhookFixture bills January with Stripe configured but unreachable, then
// stores Stripe invoice ids as a finished sync would have.
func webhookFixture(t *testing.T, be testenv.Backend) (f *fixture, a, b Invoice) {
	f = stripeFixture(t, be, "http://127.0.0.1:1", &recorder{down: func(string) bool { return true }})
	alice, bob, _, _, _ := seedJanuary(f)
	f.bill(jan, Options{})
	for _, inv := range []Invoice{f.only(alice, jan), f.only(bob, jan)} {
		err := f.db.Table("invoices").Where("id = ?", inv.ID).Updates(map[string]any{"stripe_invoice_id": "in_" + inv.ID, "sync_status": SyncSynced}).Error
		if err != nil {
			t.Fatal(err)
		}
	}
	return f, f.only(alice, jan), f.only(bob, jan)
}

func TestWebhookMovesInvoices(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f, a, b := webhookFixture(t, be)
		send := func(id, typ, sid, ours string) error {
			p, h := signedEvent(f, id, typ, sid, ours)
			return f.biller.HandleWebhook(f.ctx, p, h)
		}
		if err := send("evt_1", "invoice.paid", a.StripeInvoiceID, a.ID); err != nil {
			t.Fatal(err)
		}
		if got := f.only(a.ConsumerID, jan); got.Status != StatusPaid {
			t.Fatalf("after invoice.paid = %s", got.Status)
		}
		events := f.count("invoice_events")
		// Redelivered, and a second event saying the same: no change.
		if err := send("evt_1", "invoice.paid", a.StripeInvoiceID, a.ID); err != nil {
			t.Errorf("duplicate: %v", err)
		}
		if err := send("evt_2", "invoice.paid", a.StripeInvoiceID, ""); err != nil {
			t.Errorf("same news again: %v", err)
		}
		if n := f.count("invoice_events"); n != events {
			t.Errorf("%d events after duplicates, want %d", n, events)
		}
		evs, _ := f.biller.Events(f.ctx, a.ConsumerID, a.ID)
		if last := evs[len(evs)-1]; last.From != StatusOpen || last.To != StatusPaid || last.Source != SourceStripe || !last.At.Equal(f.clock.Now()) || last.Detail != "stripe event evt_1" {
			t.Errorf("paid event = %+v", last)
		}

		if err := send("evt_3", "invoice.payment_failed", b.StripeInvoiceID, b.ID); err != nil {
			t.Fatal(err)
		}
		evs, _ = f.biller.Events(f.ctx, b.ConsumerID, b.ID)
		if got := f.only(b.ConsumerID, jan); got.Status != StatusOpen || evs[len(evs)-1].Kind != "payment_failed" {
			t.Errorf("after payment_failed: %s, %+v", got.Status, evs[len(evs)-1])
		}
		if err := send("evt_4", "invoice.voided", b.StripeInvoiceID, b.ID); err != nil {
			t.Fatal(err)
		}
		if got := f.only(b.ConsumerID, jan); got.Status != StatusVoid {
			t.Errorf("after invoice.voided = %s", got.Status)
		}
		// A paid invoice cannot be voided; Stripe is answered, nothing changes.
		if err := send("evt_5", "invoice.voided", a.StripeInvoiceID, a.ID); err != nil {
			t.Errorf("conflicting event: %v", err)
		}
		if got := f.only(a.ConsumerID, jan); got.Status != StatusPaid {
			t.Errorf("paid invoice became %s", got.Status)
		}
		// Unknown types and unknown invoices are accepted and ignored.
		if err := send("evt_6", "customer.created", "", ""); err != nil {
			t.Errorf("unknown type: %v", err)
		}
		if err := send("evt_7", "invoice.paid", "in_someone_elses", ""); err != nil {
			t.Errorf("unknown invoice: %v", err)
		}
		if n := f.count("stripe_events"); n != 7 {
			t.Errorf("%d processed events stored, want 7", n)
		}
	})
}

func TestWebhookRejectsBadSignatures(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f, a, _ := webhookFixture(t, be)
		payload, header := signedEvent(f, "evt_1", "invoice.paid", a.StripeInvoiceID, a.ID)

		wrongSecret := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: "whsec_other", Timestamp: f.clock.Now()})
		tampered := append([]byte{}, payload...)
		tampered[len(tampered)-2] = ' '
		for name, tc := range map[string]struct {
			payload []byte
			header  string
		}{
			"wrong secret":   {payload, wrongSecret.Header},
			"tampered":       {tampered, header},
			"no header":      {payload, ""},
			"garbage header": {payload, "nonsense"},
		} {
			t.Run(name, func(t *testing.T) {
				wantCode(t, f.biller.HandleWebhook(f.ctx, tc.payload, tc.header), fnmarket.EINVALID)
			})
		}
		// Signed correctly but long ago, or far in the future, by our clock.
		f.clock.Advance(10 * time.Minute)
		wantCode(t, f.biller.HandleWebhook(f.ctx, payload, header), fnmarket.EINVALID)
		f.clock.Advance(-20 * time.Minute)
		wantCode(t, f.biller.HandleWebhook(f.ctx, payload, header), fnmarket.EINVALID)
		if got := f.only(a.ConsumerID, jan); got.Status != StatusOpen || f.count("stripe_events") != 0 {
			t.Errorf("a rejected event changed something: %s", got.Status)
		}
		// Within tolerance it is applied.
		f.clock.Advance(12 * time.Minute)
		if err := f.biller.HandleWebhook(f.ctx, payload, header); err != nil {
			t.Errorf("event signed 2 minutes ago: %v", err)
		}
	})
}
