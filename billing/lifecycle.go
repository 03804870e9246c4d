package billing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
)

// addEvent appends an event to an invoice's history, numbering it after the
// ones before.
func addEvent(tx *gorm.DB, e eventRow) error {
	var last int
	if err := tx.Model(&eventRow{}).Where("invoice_id = ?", e.InvoiceID).Select("COALESCE(MAX(seq), 0)").Scan(&last).Error; err != nil {
		return fmt.Errorf("number event of %s: %w", e.InvoiceID, err)
	}
	e.Seq = last + 1
	if err := tx.Create(&e).Error; err != nil {
		return fmt.Errorf("record event of %s: %w", e.InvoiceID, err)
	}
	return nil
}

// transitionTx moves an invoice from one status to another, records the
// event, and carries the vendor shares' payout status along. The update is
// conditional on from, so two racing transitions cannot both win.
func (b *Biller) transitionTx(tx *gorm.DB, invoiceID string, from, to Status, source, detail string, now time.Time) error {
	if !CanTransition(from, to) {
		return fnmarket.Errorf(fnmarket.ECONFLICT, "an invoice cannot go from %s to %s", from, to)
	}
	updates := map[string]any{"status": string(to), "updated_at": now}
	if to == StatusVoid || to == StatusPaid {
		// An invoice settled before it reached Stripe must never be pushed
		// (and charged) afterwards.
		updates["sync_status"] = gorm.Expr("CASE WHEN sync_status = ? THEN ? ELSE ? END", SyncSynced, SyncSynced, SyncNone)
	}
	res := tx.Model(&invoiceRow{}).Where("id = ? AND status = ?", invoiceID, string(from)).Updates(updates)
	if res.Error != nil {
		return fmt.Errorf("move invoice %s to %s: %w", invoiceID, to, res.Error)
	}
	if res.RowsAffected != 1 {
		return fnmarket.Errorf(fnmarket.ECONFLICT, "invoice %s is no longer %s", invoiceID, from)
	}
	if err := addEvent(tx, eventRow{InvoiceID: invoiceID, Kind: "transition", FromStatus: string(from), ToStatus: string(to), Source: source, Detail: detail, At: now}); err != nil {
		return err
	}
	switch to {
	case StatusPaid:
		err := tx.Model(&shareRow{}).Where("invoice_id = ? AND payout_status = ?", invoiceID, PayoutAwaitingPayment).
			Updates(map[string]any{"payout_status": PayoutPending, "updated_at": now}).Error
		if err != nil {
			return fmt.Errorf("release payouts of %s: %w", invoiceID, err)
		}
	case StatusVoid:
		err := tx.Model(&shareRow{}).Where("invoice_id = ? AND payout_status IN ?", invoiceID, []string{PayoutAwaitingPayment, PayoutPending}).
			Updates(map[string]any{"payout_status": PayoutCancelled, "updated_at": now}).Error
		if err != nil {
			return fmt.Errorf("cancel payouts of %s: %w", invoiceID, err)
		}
	}
	return nil
}

// Transition moves an invoice as an operator asks: open -> paid (paid out of
// band) or open -> void. Drafts are finalized only by BillPeriod once their
// month is over. Moving to the status it already has is a no-op; any move
// the lifecycle does not allow is an ECONFLICT error. When the invoice is
// already in Stripe, Stripe is told first, so the two never disagree about
// whether the consumer is still being charged.
func (b *Biller) Transition(ctx context.Context, invoiceID string, to Status, detail string) error {
	var row invoiceRow
	err := b.db.WithContext(ctx).Where("id = ?", invoiceID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fnmarket.Errorf(fnmarket.ENOTFOUND, "no invoice %q", invoiceID)
	}
	if err != nil {
		return fmt.Errorf("read invoice %s: %w", invoiceID, err)
	}
	from := Status(row.Status)
	if from == to {
		return nil
	}
	if to == StatusOpen {
		return fnmarket.Errorf(fnmarket.ECONFLICT, "drafts are finalized by billing once their month is over")
	}
	if !CanTransition(from, to) {
		return fnmarket.Errorf(fnmarket.ECONFLICT, "invoice %s is %s and cannot become %s", invoiceID, from, to)
	}
	if b.stripe != nil && row.StripeInvoiceID != nil {
		if err := b.stripe.mirror(ctx, row, to); err != nil {
			return fmt.Errorf("tell stripe invoice %s is %s: %w", invoiceID, to, err)
		}
	}
	err = b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		return b.transitionTx(tx, invoiceID, from, to, SourceOperator, detail, b.clock.Now())
	})
	if err != nil {
		return wrap("transition invoice "+invoiceID, err)
	}
	if to == StatusPaid && b.stripe != nil {
		if _, err := b.payInvoice(ctx, invoiceID); err != nil {
			b.log.WarnContext(ctx, "vendor payouts deferred", "invoice", invoiceID, "err", err)
		}
	}
	return nil
}

// Events lists an invoice's history, oldest first. Another consumer's invoice
// is reported as not found.
func (b *Biller) Events(ctx context.Context, consumerID, invoiceID string) ([]InvoiceEvent, error) {
	if _, err := b.Invoice(ctx, consumerID, invoiceID); err != nil {
		return nil, err
	}
	var rows []eventRow
	if err := b.db.WithContext(ctx).Where("invoice_id = ?", invoiceID).Order("seq").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read events of %s: %w", invoiceID, err)
	}
	out := make([]InvoiceEvent, len(rows))
	for i, r := range rows {
		out[i] = InvoiceEvent{InvoiceID: r.InvoiceID, Kind: r.Kind, From: Status(r.FromStatus), To: Status(r.ToStatus), Source: r.Source, Detail: r.Detail, At: r.At.UTC()}
	}
	return out, nil
}
