package billing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/migrations"
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
	// invoice.issued, invoice.paid or invoice.voided, with the transition.
	if err := invoiceEvent(tx, invoiceID, to, now); err != nil {
		return err
	}
	if from == StatusOpen {
		// An open invoice settled may end its account's suspension: every
		// gateway reloads the account's keys.
		var consumer []string
		if err := tx.Model(&invoiceRow{}).Where("id = ?", invoiceID).Pluck("consumer_id", &consumer).Error; err != nil {
			return fmt.Errorf("read consumer of %s: %w", invoiceID, err)
		}
		for _, c := range consumer {
			if err := accounts.TouchBilling(tx, c, now); err != nil {
				return err
			}
		}
	}
	switch to {
	case StatusPaid:
		if err := b.releaseShares(tx, invoiceID, now); err != nil {
			return err
		}
		// The invoices this one carried forward are collected with it.
		var carried []string
		if err := tx.Model(&invoiceRow{}).Where("carried_to = ? AND status = ?", invoiceID, StatusOpen).Order("id").Pluck("id", &carried).Error; err != nil {
			return fmt.Errorf("read invoices carried by %s: %w", invoiceID, err)
		}
		for _, id := range carried {
			if err := b.transitionTx(tx, id, StatusOpen, StatusPaid, source, "collected on invoice "+invoiceID, now); err != nil {
				return err
			}
		}
	case StatusVoid:
		err := tx.Model(&shareRow{}).Where("invoice_id = ? AND payout_status IN ?", invoiceID, []string{PayoutAwaitingPayment, PayoutPending}).
			Updates(map[string]any{"payout_status": PayoutCancelled, "updated_at": now}).Error
		if err != nil {
			return fmt.Errorf("cancel payouts of %s: %w", invoiceID, err)
		}
		// What it carried forward is still owed: carried to the next invoice.
		err = tx.Model(&invoiceRow{}).Where("carried_to = ? AND status = ?", invoiceID, StatusOpen).
			Updates(map[string]any{"carried_to": nil, "updated_at": now}).Error
		if err != nil {
			return fmt.Errorf("release invoices carried by %s: %w", invoiceID, err)
		}
	}
	return nil
}

// releaseShares fixes the platform fee and net of a paid invoice's vendor
// shares and makes them payable. The fee is rounded once per vendor, month
// and currency: a share's fee is what the month's fee on every share paid so
// far, this one included, adds to the fees already fixed,
// round(sum of gross x rate) - fees fixed, so once every invoice of the month
// is paid (or void) the fees add up to the statement's fee exactly, however
// small each invoice was. Shares of one vendor and month are released one at a
// time (an advisory lock on PostgreSQL; SQLite writes one transaction at a
// time anyway).
func (b *Biller) releaseShares(tx *gorm.DB, invoiceID string, now time.Time) error {
	var shares []shareRow
	if err := tx.Where("invoice_id = ? AND payout_status = ?", invoiceID, PayoutAwaitingPayment).Order("vendor_id").Find(&shares).Error; err != nil {
		return fmt.Errorf("read shares of %s: %w", invoiceID, err)
	}
	for _, s := range shares {
		if b.db.Dialect == migrations.Postgres {
			key := "fnm-fee:" + s.VendorID + ":" + s.Currency + ":" + strconv.FormatInt(s.PeriodStart, 10)
			if err := tx.Exec("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", key).Error; err != nil {
				return fmt.Errorf("lock fees of %s: %w", s.VendorID, err)
			}
		}
		var fixed []shareRow
		err := tx.Where("vendor_id = ? AND period_start = ? AND currency = ? AND payout_status IN ?", s.VendorID, s.PeriodStart, s.Currency,
			[]string{PayoutPending, PayoutTransferred, PayoutNothingDue}).Find(&fixed).Error
		if err != nil {
			return fmt.Errorf("read fixed fees of %s: %w", s.VendorID, err)
		}
		exact, fees := decimal.Zero, decimal.Zero
		for _, f := range append(fixed, s) {
			g, err1 := decimal.NewFromString(f.Gross)
			r, err2 := decimal.NewFromString(f.FeeRate)
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("vendor share of invoice %s: %w", f.InvoiceID, err)
			}
			exact = exact.Add(g.Mul(r))
		}
		for _, f := range fixed {
			fee, err := decimal.NewFromString(f.PlatformFee)
			if err != nil {
				return fmt.Errorf("vendor share of invoice %s: %w", f.InvoiceID, err)
			}
			fees = fees.Add(fee)
		}
		gross, err := decimal.NewFromString(s.Gross)
		if err != nil {
			return fmt.Errorf("vendor share of invoice %s: %w", s.InvoiceID, err)
		}
		fee := RoundCents(exact).Sub(fees)
		net := gross.Sub(fee)
		status := PayoutPending
		if !net.IsPositive() {
			status = PayoutNothingDue
		}
		err = tx.Model(&shareRow{}).Where("invoice_id = ? AND vendor_id = ? AND payout_status = ?", s.InvoiceID, s.VendorID, PayoutAwaitingPayment).
			Updates(map[string]any{"platform_fee": fee.StringFixed(2), "net": net.StringFixed(2), "net_cents": Money{net}.Cents(),
				"payout_status": status, "updated_at": now}).Error
		if err != nil {
			return fmt.Errorf("release payout of %s to %s: %w", s.InvoiceID, s.VendorID, err)
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
	if row.CarriedTo != nil {
		return fnmarket.Errorf(fnmarket.ECONFLICT, "invoice %s was carried forward to invoice %s and is settled with it", invoiceID, *row.CarriedTo)
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
