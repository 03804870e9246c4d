package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/webhooks"
)

// HandleWebhook verifies and applies one Stripe event: invoice.paid,
// invoice.payment_failed and invoice.voided move or annotate the matching
// invoice and tell gateways the account's standing may have changed;
// checkout.session.completed (and async_payment_succeeded) of fnmarket's own
// Checkout sessions puts a card on file or grants prepaid credit (once per
// session, whatever the event ids); other types and redeliveries are
// accepted and ignored. A bad signature is an EINVALID error and changes
// nothing; a Stripe request that fails while handling a card is EUNAVAILABLE,
// so Stripe delivers the event again.
func (b *Biller) HandleWebhook(ctx context.Context, payload []byte, signatureHeader string) error {
	if b.stripe == nil || b.stripe.webhookSecret == "" {
		return fnmarket.Errorf(fnmarket.ENOTFOUND, "Stripe webhooks are not configured on this server")
	}
	// The API version is not checked (see doc.go); the signature's age is
	// checked below against the injected clock.
	ev, err := webhook.ConstructEventWithOptions(payload, signatureHeader, b.stripe.webhookSecret,
		webhook.ConstructEventOptions{IgnoreTolerance: true, IgnoreAPIVersionMismatch: true})
	if err != nil {
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the Stripe signature does not verify", Err: err}
	}
	signed, ok := signatureTime(signatureHeader)
	if d := b.clock.Now().Sub(signed); !ok || d > b.stripe.tolerance || d < -b.stripe.tolerance {
		return fnmarket.Errorf(fnmarket.EINVALID, "the Stripe signature is too old or from the future")
	}
	if ev.ID == "" {
		return fnmarket.Errorf(fnmarket.EINVALID, "the Stripe event has no id")
	}
	var inv stripe.Invoice
	switch ev.Type {
	case "invoice.paid", "invoice.payment_failed", "invoice.voided":
		if ev.Data == nil || json.Unmarshal(ev.Data.Raw, &inv) != nil || inv.ID == "" {
			return fnmarket.Errorf(fnmarket.EINVALID, "the Stripe event %s carries no invoice", ev.ID)
		}
	}
	var checkout *checkoutEffect
	switch ev.Type {
	case "checkout.session.completed", "checkout.session.async_payment_succeeded":
		// A redelivery makes no Stripe calls; one racing this one may, and
		// is stopped by the claim below.
		done, err := b.eventClaimed(ctx, ev.ID)
		if err != nil {
			return err
		}
		if !done {
			if checkout, err = b.checkoutCompleted(ctx, ev); err != nil {
				return wrap("handle stripe event "+ev.ID, err)
			}
		}
	}
	now := b.clock.Now()
	var paidInvoice string
	err = b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The event id is claimed in the same transaction as its effect: a
		// redelivery finds it and does nothing, a failure leaves it unclaimed.
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&stripeEventRow{ID: ev.ID, Type: string(ev.Type), ProcessedAt: now})
		if res.Error != nil {
			return fmt.Errorf("claim stripe event %s: %w", ev.ID, res.Error)
		}
		if res.RowsAffected == 0 {
			b.log.DebugContext(ctx, "stripe event already handled", "event", ev.ID)
			return nil
		}
		if checkout != nil {
			return b.applyCheckout(ctx, tx, ev, checkout)
		}
		if inv.ID == "" {
			b.log.DebugContext(ctx, "stripe event type ignored", "event", ev.ID, "type", ev.Type)
			return nil
		}
		row, found, err := invoiceForStripe(tx, inv)
		if err != nil || !found {
			if !found {
				b.log.WarnContext(ctx, "stripe event for an invoice fnmarket does not know", "event", ev.ID, "stripe_invoice", inv.ID)
			}
			return err
		}
		// Paid, voided or failing, the account's standing may change: every
		// gateway reloads its keys.
		if err := accounts.TouchBilling(tx, row.ConsumerID, now); err != nil {
			return err
		}
		from := Status(row.Status)
		detail := "stripe event " + ev.ID
		switch ev.Type {
		case "invoice.paid", "invoice.voided":
			to := StatusPaid
			if ev.Type == "invoice.voided" {
				to = StatusVoid
			}
			if from == to {
				return nil
			}
			if !CanTransition(from, to) {
				// Stripe and fnmarket disagree; an operator must look, and
				// refusing the event would only make Stripe redeliver it.
				b.log.ErrorContext(ctx, "stripe event cannot apply", "event", ev.ID, "type", ev.Type, "invoice", row.ID, "status", from)
				return nil
			}
			if err := b.transitionTx(tx, row.ID, from, to, SourceStripe, detail, now); err != nil {
				return err
			}
			if to == StatusPaid {
				paidInvoice = row.ID
			}
			return nil
		default: // invoice.payment_failed: recorded, the invoice stays open
			if err := addEvent(tx, eventRow{InvoiceID: row.ID, Kind: "payment_failed", FromStatus: string(from), ToStatus: string(from), Source: SourceStripe, Detail: detail, At: now}); err != nil {
				return err
			}
			_, _, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: row.ConsumerID, Type: webhooks.TypePaymentFailed, DedupeKey: "payment_failed:" + ev.ID,
				Data: PaymentFailedData{InvoiceID: row.ID, StripeEventID: ev.ID, Currency: row.Currency, Total: row.Total, StripeInvoiceID: inv.ID}}, now)
			return err
		}
	})
	if err != nil {
		return wrap("handle stripe event "+ev.ID, err)
	}
	if paidInvoice != "" {
		if _, err := b.payInvoice(ctx, paidInvoice); err != nil {
			// The invoice is paid either way; SyncPending makes the transfers later.
			b.log.WarnContext(ctx, "vendor payouts deferred", "invoice", paidInvoice, "err", err)
		}
	}
	return nil
}

// invoiceForStripe finds our invoice for a Stripe invoice: by the stored
// Stripe id, narrowed by the fnm_invoice_id we put in its metadata.
func invoiceForStripe(tx *gorm.DB, inv stripe.Invoice) (invoiceRow, bool, error) {
	q := tx.Where("stripe_invoice_id = ?", inv.ID)
	if id := inv.Metadata["fnm_invoice_id"]; id != "" {
		q = q.Where("id = ?", id)
	}
	var rows []invoiceRow
	if err := q.Limit(2).Find(&rows).Error; err != nil {
		return invoiceRow{}, false, fmt.Errorf("find invoice for stripe invoice %s: %w", inv.ID, err)
	}
	if len(rows) != 1 {
		return invoiceRow{}, false, nil
	}
	return rows[0], true, nil
}

// signatureTime reads the t= timestamp of a Stripe-Signature header.
func signatureTime(header string) (time.Time, bool) {
	for _, part := range strings.Split(header, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "t="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.Unix(n, 0), true
		}
	}
	return time.Time{}, false
}
