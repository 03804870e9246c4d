package billing

import (
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Money is an exact amount in an invoice's currency. It is written to JSON as
// a decimal string with two decimals ("12.30"), never as a JSON number.
type Money struct{ decimal.Decimal }

// NewMoney wraps d.
func NewMoney(d decimal.Decimal) Money { return Money{d} }

// String returns the amount with two decimals.
func (m Money) String() string { return m.StringFixed(2) }

// Cents returns the amount in whole minor units.
func (m Money) Cents() int64 { return m.Shift(2).Round(0).IntPart() }

// MarshalJSON writes the amount as a quoted decimal string.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(`"` + m.StringFixed(2) + `"`), nil }

// UnmarshalJSON reads a quoted decimal string (or, leniently, a bare number).
func (m *Money) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	d, err := decimal.NewFromString(s)
	if err != nil {
		return fmt.Errorf("money %s: %w", b, err)
	}
	m.Decimal = d
	return nil
}

// RoundCents rounds an exact amount to cents, half-even: the one rounding a
// line ever gets.
func RoundCents(d decimal.Decimal) decimal.Decimal { return d.RoundBank(2) }

// Status is where an invoice is in its lifecycle.
type Status string

// Invoice statuses. StatusPreview is never stored: it marks Upcoming's answer.
const (
	StatusDraft   Status = "draft"
	StatusOpen    Status = "open"
	StatusPaid    Status = "paid"
	StatusVoid    Status = "void"
	StatusPreview Status = "preview"
)

// CanTransition reports whether an invoice may move from one status to
// another: draft -> open -> paid | void, nothing else.
func CanTransition(from, to Status) bool {
	switch from {
	case StatusDraft:
		return to == StatusOpen
	case StatusOpen:
		return to == StatusPaid || to == StatusVoid
	}
	return false
}

// Line kinds.
const (
	// LineUsage prices the invoice's own month.
	LineUsage = "usage"
	// LineAdjustment bills usage of an earlier, already invoiced month that was
	// rolled up late.
	LineAdjustment = "adjustment"
	// LineCarriedForward bills the total of an earlier invoice that was under
	// Stripe's minimum charge (see doc.go).
	LineCarriedForward = "carried_forward"
	// LineCredit takes off the prepaid credit the month's usage consumed
	// (a negative amount; see doc.go).
	LineCredit = "credit"
)

// Sync statuses of an invoice with Stripe.
const (
	SyncNone    = "none"    // Stripe not configured, a draft, or nothing to collect
	SyncPending = "pending" // to be pushed, or a push failed and will be retried
	SyncSynced  = "synced"  // finalized in Stripe
	SyncFailed  = "failed"  // Stripe rejected a request as invalid; needs an operator
	// SyncCarriedForward: the total is under Stripe's minimum charge, so the
	// invoice is never pushed; its amount is billed on the next invoice.
	SyncCarriedForward = "carried_forward"
)

// Payout statuses of a vendor's share of one invoice.
const (
	PayoutAwaitingPayment = "awaiting_payment" // the consumer has not paid yet
	PayoutPending         = "pending"          // paid; transfer not made yet
	PayoutTransferred     = "transferred"      // net transferred to the vendor
	PayoutNothingDue      = "nothing_due"      // net is zero or negative
	PayoutCancelled       = "cancelled"        // the invoice was voided
)

// Invoice is what a consumer owes for one month in one currency. The API
// converts it into its own response type (api/billing_json.go).
type Invoice struct {
	ID          string    `json:"id"`
	ConsumerID  string    `json:"-"`
	PeriodStart time.Time `json:"period_start"`
	PeriodEnd   time.Time `json:"period_end"`
	Status      Status    `json:"status"`
	Currency    string    `json:"currency"`
	// Subtotal sums the lines that charge (every kind but credit);
	// CreditApplied is the prepaid credit the credit lines take off (zero or
	// positive), and Total = Subtotal - CreditApplied.
	Subtotal      Money         `json:"subtotal"`
	CreditApplied Money         `json:"credit_applied"`
	Total         Money         `json:"total"`
	TotalCents    int64         `json:"total_cents"`
	Lines         []InvoiceLine `json:"lines"`
	// StripeInvoiceID is "" until the invoice is pushed to Stripe.
	StripeInvoiceID string `json:"stripe_invoice_id"`
	// SyncStatus is one of the Sync* constants.
	SyncStatus string `json:"sync_status"`
	// UsageThrough is when the usage on a draft or preview was read.
	UsageThrough time.Time `json:"usage_through"`
	CreatedAt    time.Time `json:"created_at"`
	// CarriedTo is the invoice that carries this one's total forward (sync
	// status carried_forward); this one is paid when that one is.
	CarriedTo string `json:"carried_forward_to,omitempty"`
}

// InvoiceLine is one function version's usage in one month, priced.
type InvoiceLine struct {
	// Kind is LineUsage, LineAdjustment, LineCarriedForward or LineCredit.
	Kind string `json:"kind"`
	// PeriodStart is the month whose usage the line prices: the invoice's own
	// for usage lines, an earlier one for adjustments (and for credit lines,
	// the month whose usage the credit paid).
	PeriodStart   time.Time `json:"period_start"`
	FunctionID    string    `json:"-"`
	VendorID      string    `json:"-"`
	Function      string    `json:"function"` // "vendor-slug/name"
	Version       int       `json:"version"`
	Calls         int64     `json:"calls"`
	FreeCalls     int64     `json:"free_calls"`
	BillableCalls int64     `json:"billable_calls"`
	ComputeMs     int64     `json:"compute_ms"`
	Amount        Money     `json:"amount"`
	// CarriedInvoiceID is, on a carried_forward line, the invoice it carries.
	CarriedInvoiceID string `json:"carried_invoice_id,omitempty"`
}

// InvoiceEvent records one lifecycle step of an invoice.
type InvoiceEvent struct {
	InvoiceID string    `json:"invoice_id"`
	Kind      string    `json:"kind"` // "transition" or "payment_failed"
	From      Status    `json:"from"`
	To        Status    `json:"to"`
	Source    string    `json:"source"` // "billing", "operator" or "stripe"
	Detail    string    `json:"detail,omitempty"`
	At        time.Time `json:"at"`
}

// Event sources.
const (
	SourceBilling  = "billing"
	SourceOperator = "operator"
	SourceStripe   = "stripe"
)

// Statement is what a vendor earned in one month in one currency.
type Statement struct {
	PeriodStart time.Time `json:"period_start"`
	Currency    string    `json:"currency"`
	Gross       Money     `json:"gross"`
	PlatformFee Money     `json:"platform_fee"`
	Net         Money     `json:"net"`
	// Collected is the vendor's net share of the month's invoices that are
	// paid (including those prepaid credit covered); PaidOut what has been
	// transferred to the vendor.
	Collected    Money           `json:"collected"`
	PaidOut      Money           `json:"paid_out"`
	PayoutStatus string          `json:"payout_status"`
	Lines        []StatementLine `json:"lines,omitempty"`
}

// Statement payout statuses.
const (
	StatementPending = "pending" // nothing transferred yet
	StatementPartial = "partial" // some shares transferred, some not yet
	StatementPaid    = "paid"    // every share transferred (or nothing due)
)

// StatementLine is a vendor's gross for one function in a statement.
type StatementLine struct {
	FunctionID string `json:"-"`
	Function   string `json:"function"`
	Gross      Money  `json:"gross"`
}

// Options tune one BillPeriod run.
type Options struct {
	// ThroughNow bills a month that is not over yet, as draft invoices.
	ThroughNow bool
}

// Report says what one BillPeriod run did.
type Report struct {
	PeriodStart time.Time `json:"period_start"`
	Draft       bool      `json:"draft"`
	// Consumers is how many consumers had something to bill.
	Consumers int `json:"consumers"`
	// Created counts invoices created by this run.
	Created int `json:"created"`
	// Finalized counts drafts turned open by this run.
	Finalized int `json:"finalized"`
	// Refreshed counts drafts whose lines were recomputed.
	Refreshed int `json:"refreshed"`
	// Unchanged counts invoices already issued before this run.
	Unchanged int `json:"unchanged"`
	// AdjustmentLines counts late-usage lines written by this run.
	AdjustmentLines int `json:"adjustment_lines"`
	// Totals sums the invoices this run wrote, per currency.
	Totals map[string]Money `json:"totals"`
	// CarriedForward counts invoices this run issued under Stripe's minimum
	// charge, whose totals go on the consumers' next invoices.
	CarriedForward int `json:"carried_forward"`
	// SyncFailures counts invoices Stripe could not take this time.
	SyncFailures int `json:"sync_failures"`
	// Sync is what the Stripe sync after issuing did (zero without Stripe,
	// and for drafts, which are never pushed).
	Sync SyncResult `json:"sync"`
}
