package billing

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/webhooks"
)

type outboxRow struct {
	AccountID, Type, DedupeKey string
	Data                       map[string]any
}

// outbox reads the outbox's events of typ, in dedupe-key order.
func (f *fixture) outbox(typ string) []outboxRow {
	f.t.Helper()
	var rows []struct{ AccountID, Type, Payload, DedupeKey string }
	if err := f.db.Table("webhook_events").Where("type = ?", typ).Order("dedupe_key").Find(&rows).Error; err != nil {
		f.t.Fatal(err)
	}
	out := make([]outboxRow, len(rows))
	for i, r := range rows {
		var body struct{ Data map[string]any }
		if err := json.Unmarshal([]byte(r.Payload), &body); err != nil {
			f.t.Fatal(err)
		}
		out[i] = outboxRow{AccountID: r.AccountID, Type: r.Type, DedupeKey: r.DedupeKey, Data: body.Data}
	}
	return out
}

// TestEventsWithTheirCauses: billing's events are written once per cause,
// in the cause's transaction: invoice.issued and statement.issued when a
// month is billed (re-billing adds none), invoice.paid / invoice.voided /
// payment.failed from Stripe events (redeliveries add none), credits.added
// with a grant (once per Checkout session, audited), key.revoked with the
// revocation; a transition rolled back leaves no event.
func TestEventsWithTheirCauses(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f, a, b := webhookFixture(t, be)
		issued := f.outbox(webhooks.TypeInvoiceIssued)
		if len(issued) != 2 {
			t.Fatalf("invoice.issued events %+v, want one per invoice", issued)
		}
		for _, e := range issued {
			inv := a
			if e.AccountID == b.ConsumerID {
				inv = b
			}
			if e.AccountID != inv.ConsumerID || e.Data["invoice_id"] != inv.ID || e.Data["total"] != inv.Total.StringFixed(2) ||
				e.Data["period_start"] != "2026-01-01T00:00:00Z" || e.Data["currency"] != "USD" || e.Data["status"] != "open" {
				t.Errorf("invoice.issued %+v for %+v", e, inv)
			}
		}
		st := f.outbox(webhooks.TypeStatementIssued)
		if len(st) != 1 || st[0].DedupeKey != "statement:"+st[0].Data["vendor_id"].(string)+":202601:USD" || st[0].Data["gross"] != a.Total.Add(b.Total.Decimal).StringFixed(2) {
			t.Fatalf("statement.issued %+v (invoices %s + %s)", st, a.Total, b.Total)
		}
		f.bill(jan, Options{})
		if n := len(f.outbox(webhooks.TypeInvoiceIssued)) + len(f.outbox(webhooks.TypeStatementIssued)); n != 3 {
			t.Fatalf("billing again wrote events: %d issued events in all", n)
		}

		// A transition that rolls back leaves no event.
		err := f.db.Transaction(func(tx *gorm.DB) error {
			if err := f.biller.transitionTx(tx, a.ID, StatusOpen, StatusVoid, SourceOperator, "", f.clock.Now()); err != nil {
				return err
			}
			return errors.New("roll back")
		})
		if err == nil || len(f.outbox(webhooks.TypeInvoiceVoided)) != 0 {
			t.Fatalf("rolled-back void: %v, events %+v", err, f.outbox(webhooks.TypeInvoiceVoided))
		}

		send := func(id, typ string, inv Invoice) {
			t.Helper()
			p, h := signedEvent(f, id, typ, inv.StripeInvoiceID, inv.ID)
			if err := f.biller.HandleWebhook(f.ctx, p, h); err != nil {
				t.Fatal(err)
			}
		}
		send("evt_paid", "invoice.paid", a)
		send("evt_paid", "invoice.paid", a)
		send("evt_paid_again", "invoice.paid", a)
		if ev := f.outbox(webhooks.TypeInvoicePaid); len(ev) != 1 || ev[0].AccountID != a.ConsumerID || ev[0].Data["invoice_id"] != a.ID || ev[0].Data["status"] != "paid" {
			t.Fatalf("invoice.paid %+v", ev)
		}
		send("evt_fail", "invoice.payment_failed", b)
		send("evt_fail", "invoice.payment_failed", b)
		if ev := f.outbox(webhooks.TypePaymentFailed); len(ev) != 1 || ev[0].AccountID != b.ConsumerID || ev[0].Data["invoice_id"] != b.ID ||
			ev[0].Data["stripe_event_id"] != "evt_fail" {
			t.Fatalf("payment.failed %+v", ev)
		}
		send("evt_void", "invoice.voided", b)
		send("evt_void", "invoice.voided", b)
		if ev := f.outbox(webhooks.TypeInvoiceVoided); len(ev) != 1 || ev[0].AccountID != b.ConsumerID || ev[0].Data["invoice_id"] != b.ID {
			t.Fatalf("invoice.voided %+v", ev)
		}

		// Credit: two events for one session credit it once.
		for _, id := range []string{"evt_c1", "evt_c2"} {
			if err := f.send(id, "checkout.session.completed", creditSession("cs_1", a.ConsumerID, 2000)); err != nil {
				t.Fatal(err)
			}
		}
		if ev := f.outbox(webhooks.TypeCreditsAdded); len(ev) != 1 || ev[0].AccountID != a.ConsumerID || ev[0].Data["amount"] != "20.00" ||
			ev[0].Data["currency"] != "USD" || ev[0].Data["source"] != "cs_1" {
			t.Fatalf("credits.added %+v", ev)
		}
		items, _, err := audit.NewLog(f.db, f.clock).List(f.ctx, a.ConsumerID, "", 10)
		if err != nil || len(items) != 1 || items[0].Action != audit.ActionCreditsGranted || items[0].Detail != "20.00 USD" {
			t.Fatalf("audit of the grant: %+v, %v", items, err)
		}

		// key.revoked, once however often the key is revoked.
		k, err := f.accounts.CreateKey(f.ctx, a.ConsumerID, "k", nil)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := f.accounts.RevokeKey(f.ctx, a.ConsumerID, k.ID); err != nil {
				t.Fatal(err)
			}
		}
		if ev := f.outbox(webhooks.TypeKeyRevoked); len(ev) != 1 || ev[0].AccountID != a.ConsumerID || ev[0].Data["key_id"] != k.ID || ev[0].Data["prefix"] != k.Prefix {
			t.Fatalf("key.revoked %+v", ev)
		}
	})
}

// TestPayoutSentOnce: a transfer to a vendor writes payout.sent with its
// record, once; later syncs write no more.
func TestPayoutSentOnce(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		alice, _, _, _, acme := seedJanuary(f)
		if _, err := f.biller.OnboardVendor(f.ctx, acme.ID, "https://portal.example/vendor"); err != nil {
			t.Fatal(err)
		}
		f.bill(jan, Options{})
		a := f.only(alice, jan)
		payload, sig := signedEvent(f, "evt_paid_a", "invoice.paid", a.StripeInvoiceID, a.ID)
		if err := f.biller.HandleWebhook(f.ctx, payload, sig); err != nil {
			t.Fatal(err)
		}
		if _, err := f.biller.SyncPending(f.ctx); err != nil {
			t.Fatal(err)
		}
		ev := f.outbox(webhooks.TypePayoutSent)
		if len(ev) != 1 || ev[0].AccountID != acme.AccountID || ev[0].Data["invoice_id"] != a.ID || ev[0].Data["net"] != "1.02" ||
			ev[0].Data["vendor_id"] != acme.ID || ev[0].Data["stripe_transfer_id"] == "" {
			t.Fatalf("payout.sent %+v", ev)
		}
	})
}
