package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
)

// Rows of billing's own tables (migrations/*/00003_billing.sql). They never
// leave the package: domain types are built from them at the boundary.

type periodRow struct {
	PeriodStart int64 `gorm:"primaryKey;autoIncrement:false"`
	ClosedAt    time.Time
}

func (periodRow) TableName() string { return "billing_periods" }

type invoiceRow struct {
	ID              string `gorm:"primaryKey"`
	ConsumerID      string
	PeriodStart     int64
	PeriodEnd       int64
	Currency        string
	Status          string
	Subtotal        string
	Total           string
	TotalCents      int64
	UsageThrough    int64
	StripeInvoiceID *string
	SyncStatus      string
	SyncError       string
	SyncAttempts    int
	CarriedTo       *string
	CreatedAt       time.Time `gorm:"autoCreateTime:false"`
	UpdatedAt       time.Time `gorm:"autoUpdateTime:false"`
}

func (invoiceRow) TableName() string { return "invoices" }

type lineRow struct {
	InvoiceID        string `gorm:"primaryKey"`
	LineNo           int    `gorm:"primaryKey;autoIncrement:false"`
	ConsumerID       string
	Kind             string
	UsagePeriodStart int64
	FunctionID       string
	VendorID         string
	FunctionLabel    string
	Version          int
	Calls            int64
	FreeCalls        int64
	BillableCalls    int64
	ComputeMs        int64
	Amount           string
	AmountCents      int64
	StripeItemID     *string
	CarriedInvoiceID *string
}

func (lineRow) TableName() string { return "invoice_lines" }

type eventRow struct {
	InvoiceID  string `gorm:"primaryKey"`
	Seq        int    `gorm:"primaryKey;autoIncrement:false"`
	Kind       string
	FromStatus string
	ToStatus   string
	Source     string
	Detail     string
	At         time.Time
}

func (eventRow) TableName() string { return "invoice_events" }

type shareRow struct {
	InvoiceID        string `gorm:"primaryKey"`
	VendorID         string `gorm:"primaryKey"`
	PeriodStart      int64
	Currency         string
	Gross            string
	FeeRate          string
	PlatformFee      string
	Net              string
	NetCents         int64
	PayoutStatus     string
	StripeTransferID *string
	UpdatedAt        time.Time `gorm:"autoUpdateTime:false"`
}

func (shareRow) TableName() string { return "vendor_shares" }

type customerRow struct {
	ConsumerID       string `gorm:"primaryKey"`
	StripeCustomerID string
	CreatedAt        time.Time `gorm:"autoCreateTime:false"`
}

func (customerRow) TableName() string { return "stripe_customers" }

type stripeEventRow struct {
	ID          string `gorm:"primaryKey"`
	Type        string
	ProcessedAt time.Time
}

func (stripeEventRow) TableName() string { return "stripe_events" }

// Models lists the row types, so a test can check the migrated schema has
// every column the code maps.
func Models() []any {
	return []any{&periodRow{}, &invoiceRow{}, &lineRow{}, &eventRow{}, &shareRow{}, &customerRow{}, &stripeEventRow{}, &leaseRow{}}
}

func (r invoiceRow) domain(lines []lineRow) (Invoice, error) {
	inv := Invoice{
		ID: r.ID, ConsumerID: r.ConsumerID, PeriodStart: unix(r.PeriodStart), PeriodEnd: unix(r.PeriodEnd),
		Status: Status(r.Status), Currency: r.Currency, TotalCents: r.TotalCents, SyncStatus: r.SyncStatus,
		UsageThrough: unix(r.UsageThrough), CreatedAt: r.CreatedAt.UTC(), Lines: make([]InvoiceLine, 0, len(lines)),
	}
	var err error
	if inv.Subtotal, err = parseMoney(r.Subtotal); err != nil {
		return inv, fmt.Errorf("invoice %s subtotal: %w", r.ID, err)
	}
	if inv.Total, err = parseMoney(r.Total); err != nil {
		return inv, fmt.Errorf("invoice %s total: %w", r.ID, err)
	}
	if r.StripeInvoiceID != nil {
		inv.StripeInvoiceID = *r.StripeInvoiceID
	}
	if r.CarriedTo != nil {
		inv.CarriedTo = *r.CarriedTo
	}
	for _, l := range lines {
		amount, err := parseMoney(l.Amount)
		if err != nil {
			return inv, fmt.Errorf("invoice %s line %d: %w", r.ID, l.LineNo, err)
		}
		line := InvoiceLine{
			Kind: l.Kind, PeriodStart: unix(l.UsagePeriodStart), FunctionID: l.FunctionID, VendorID: l.VendorID,
			Function: l.FunctionLabel, Version: l.Version, Calls: l.Calls, FreeCalls: l.FreeCalls,
			BillableCalls: l.BillableCalls, ComputeMs: l.ComputeMs, Amount: amount,
		}
		if l.CarriedInvoiceID != nil {
			line.CarriedInvoiceID = *l.CarriedInvoiceID
		}
		inv.Lines = append(inv.Lines, line)
		if l.Kind == LineCredit {
			inv.CreditApplied.Decimal = inv.CreditApplied.Sub(amount.Decimal)
		}
	}
	return inv, nil
}

func parseMoney(s string) (Money, error) {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Money{}, err
	}
	return Money{d}, nil
}

func unix(s int64) time.Time { return time.Unix(s, 0).UTC() }

// loadInvoices reads invoices with their lines, in the order of rows.
func loadLines(ctx context.Context, db *gorm.DB, rows []invoiceRow) ([]Invoice, error) {
	if len(rows) == 0 {
		return []Invoice{}, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	byInvoice := map[string][]lineRow{}
	for chunk := range chunks(ids, 500) {
		var lines []lineRow
		if err := db.WithContext(ctx).Where("invoice_id IN ?", chunk).Order("invoice_id, line_no").Find(&lines).Error; err != nil {
			return nil, fmt.Errorf("read invoice lines: %w", err)
		}
		for _, l := range lines {
			byInvoice[l.InvoiceID] = append(byInvoice[l.InvoiceID], l)
		}
	}
	out := make([]Invoice, 0, len(rows))
	for _, r := range rows {
		inv, err := r.domain(byInvoice[r.ID])
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

// chunks yields s in pieces of at most n, keeping IN lists within every
// engine's parameter limit.
func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// wrap adds what was being done to err (see fnmarket.Wrap).
func wrap(what string, err error) error { return fnmarket.Wrap(what, err) }
