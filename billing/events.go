package billing

import (
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket/webhooks"
)

// Outbound webhook events billing causes (README, "Events"). Each is
// enqueued with webhooks.Enqueue in the transaction of its cause, so it
// exists if and only if the cause was committed, and carries a DedupeKey
// naming its cause, so it happens once however often the cause is retried.

// InvoiceEventData is the data of invoice.issued, invoice.paid and
// invoice.voided.
type InvoiceEventData struct {
	InvoiceID   string `json:"invoice_id"`
	Status      string `json:"status"`
	PeriodStart string `json:"period_start"`
	Currency    string `json:"currency"`
	Total       string `json:"total"`
}

// PaymentFailedData is the data of payment.failed.
type PaymentFailedData struct {
	InvoiceID       string `json:"invoice_id"`
	StripeEventID   string `json:"stripe_event_id"`
	Currency        string `json:"currency"`
	Total           string `json:"total"`
	StripeInvoiceID string `json:"stripe_invoice_id"`
}

// CreditsAddedData is the data of credits.added.
type CreditsAddedData struct {
	Amount   string `json:"amount"`
	Currency string `json:"currency"`
	// Source is what paid for it (the Stripe Checkout session id).
	Source string `json:"source"`
}

// StatementIssuedData is the data of statement.issued: the vendor's
// statement for a month and currency, as of when the month was billed.
type StatementIssuedData struct {
	VendorID    string `json:"vendor_id"`
	PeriodStart string `json:"period_start"`
	Currency    string `json:"currency"`
	Gross       string `json:"gross"`
}

// PayoutSentData is the data of payout.sent: one share transferred.
type PayoutSentData struct {
	VendorID         string `json:"vendor_id"`
	InvoiceID        string `json:"invoice_id"`
	PeriodStart      string `json:"period_start"`
	Currency         string `json:"currency"`
	Net              string `json:"net"`
	StripeTransferID string `json:"stripe_transfer_id"`
}

func periodLabel(unix int64) string { return time.Unix(unix, 0).UTC().Format(time.RFC3339) }

// invoiceEvent enqueues the event of an invoice that just became to.
func invoiceEvent(tx *gorm.DB, invoiceID string, to Status, now time.Time) error {
	typ := map[Status]string{StatusOpen: webhooks.TypeInvoiceIssued, StatusPaid: webhooks.TypeInvoicePaid, StatusVoid: webhooks.TypeInvoiceVoided}[to]
	if typ == "" {
		return nil
	}
	var r invoiceRow
	if err := tx.Where("id = ?", invoiceID).Take(&r).Error; err != nil {
		return fmt.Errorf("read invoice %s for its event: %w", invoiceID, err)
	}
	_, _, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: r.ConsumerID, Type: typ, DedupeKey: "invoice:" + r.ID + ":" + string(to),
		Data: InvoiceEventData{InvoiceID: r.ID, Status: string(to), PeriodStart: periodLabel(r.PeriodStart), Currency: r.Currency, Total: r.Total}}, now)
	return err
}

// vendorAccounts maps vendor ids to the accounts that own them.
func vendorAccounts(tx *gorm.DB, vendorIDs []string) (map[string]string, error) {
	var rows []struct{ ID, AccountID string }
	if len(vendorIDs) > 0 {
		if err := tx.Table("vendors").Select("id, account_id").Where("id IN ?", vendorIDs).Scan(&rows).Error; err != nil {
			return nil, fmt.Errorf("read vendors' accounts: %w", err)
		}
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.ID] = r.AccountID
	}
	return out, nil
}

// statementEvents enqueues statement.issued for every vendor with a share in
// the month (one per vendor, month and currency), in the transaction that
// closes the month.
func statementEvents(tx *gorm.DB, period int64, now time.Time) error {
	var shares []shareRow
	err := tx.Joins("JOIN invoices ON invoices.id = vendor_shares.invoice_id").
		Where("vendor_shares.period_start = ? AND invoices.status <> ?", period, StatusVoid).
		Order("vendor_shares.vendor_id, vendor_shares.currency").Find(&shares).Error
	if err != nil {
		return fmt.Errorf("read the month's vendor shares: %w", err)
	}
	type vc struct{ vendor, currency string }
	gross := map[vc]Money{}
	var order []vc
	var vendors []string
	for _, s := range shares {
		k := vc{s.VendorID, s.Currency}
		g, err := parseMoney(s.Gross)
		if err != nil {
			return fmt.Errorf("vendor share of invoice %s: %w", s.InvoiceID, err)
		}
		if _, ok := gross[k]; !ok {
			order = append(order, k)
			vendors = append(vendors, s.VendorID)
		}
		gross[k] = Money{gross[k].Add(g.Decimal)}
	}
	owners, err := vendorAccounts(tx, vendors)
	if err != nil {
		return err
	}
	month := time.Unix(period, 0).UTC().Format("200601")
	for _, k := range order {
		acct := owners[k.vendor]
		if acct == "" {
			continue
		}
		_, _, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: acct, Type: webhooks.TypeStatementIssued,
			DedupeKey: "statement:" + k.vendor + ":" + month + ":" + k.currency,
			Data:      StatementIssuedData{VendorID: k.vendor, PeriodStart: periodLabel(period), Currency: k.currency, Gross: gross[k].StringFixed(2)}}, now)
		if err != nil {
			return err
		}
	}
	return nil
}

// payoutEvent enqueues payout.sent for a share just transferred.
func payoutEvent(tx *gorm.DB, s shareRow, transferID string, now time.Time) error {
	owners, err := vendorAccounts(tx, []string{s.VendorID})
	if err != nil || owners[s.VendorID] == "" {
		return err
	}
	_, _, err = webhooks.Enqueue(tx, webhooks.Event{AccountID: owners[s.VendorID], Type: webhooks.TypePayoutSent,
		DedupeKey: "payout:" + s.InvoiceID + ":" + s.VendorID,
		Data: PayoutSentData{VendorID: s.VendorID, InvoiceID: s.InvoiceID, PeriodStart: periodLabel(s.PeriodStart), Currency: s.Currency,
			Net: s.Net, StripeTransferID: transferID}}, now)
	return err
}
