package billing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
)

// Invoices lists a consumer's invoices with their lines, newest month first.
// Drafts written by a ThroughNow run are included (their status says so);
// the running month's live figures are Upcoming's.
func (b *Biller) Invoices(ctx context.Context, consumerID string) ([]Invoice, error) {
	var rows []invoiceRow
	err := b.db.WithContext(ctx).Where("consumer_id = ?", consumerID).Order("period_start DESC, currency, id").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list invoices of %s: %w", consumerID, err)
	}
	return loadLines(ctx, b.db.DB, rows)
}

// Invoice returns one of the consumer's invoices. Another consumer's invoice
// is reported as not found, never as forbidden, so ids leak nothing.
func (b *Biller) Invoice(ctx context.Context, consumerID, id string) (Invoice, error) {
	var row invoiceRow
	err := b.db.WithContext(ctx).Where("id = ? AND consumer_id = ?", id, consumerID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Invoice{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no invoice %q among yours", id)
	}
	if err != nil {
		return Invoice{}, fmt.Errorf("read invoice %s: %w", id, err)
	}
	invs, err := loadLines(ctx, b.db.DB, []invoiceRow{row})
	if err != nil {
		return Invoice{}, err
	}
	return invs[0], nil
}

// UpcomingID is the id of every preview invoice.
const UpcomingID = "upcoming"

// Upcoming previews the consumer's invoices for the running month: what
// BillPeriod would issue if the month ended now, including usage not yet
// rolled up (Config.Live) and adjustments for late usage of closed months.
// There is one preview per currency, USD first, then alphabetical; with no
// usage at all it is a single empty USD preview.
func (b *Biller) Upcoming(ctx context.Context, consumerID string) ([]Invoice, error) {
	if consumerID == "" {
		return nil, fnmarket.Errorf(fnmarket.EINVALID, "a consumer is required")
	}
	now := b.clock.Now()
	period := MonthStart(now)
	extra := map[int64][]UsageHour{}
	if b.live != nil {
		rows, err := b.live.LiveUsage(ctx, consumerID)
		if err != nil {
			return nil, fmt.Errorf("read live usage of %s: %w", consumerID, err)
		}
		for _, r := range rows {
			if r.ConsumerID != consumerID {
				continue // never let another consumer's counts in
			}
			m := MonthStart(r.HourStart).Unix()
			extra[m] = append(extra[m], UsageHourFromRow(r))
		}
	}
	drafts, err := b.computeBills(ctx, b.db.DB, period, consumerID, extra)
	if err != nil {
		return nil, fmt.Errorf("preview invoice of %s: %w", consumerID, err)
	}
	if len(drafts) == 0 {
		drafts = []*billDraft{{consumerID: consumerID, currency: "USD"}}
	}
	slices.SortStableFunc(drafts, func(a, b *billDraft) int {
		return cmp.Compare(boolInt(a.currency != "USD"), boolInt(b.currency != "USD"))
	})
	out := make([]Invoice, 0, len(drafts))
	for _, d := range drafts {
		var carried []lineRow
		if len(d.lines) > 0 { // as BillPeriod: carried only onto an invoice with usage
			var err error
			if carried, err = carriedLines(b.db.WithContext(ctx), consumerID, d.currency, period.Unix()); err != nil {
				return nil, err
			}
		}
		for _, l := range carried {
			l.LineNo = len(d.lines) + 1
			d.lines = append(d.lines, l)
		}
		subCents, cents := lineCents(d.lines)
		subtotal, total := decimal.New(subCents, -2).StringFixed(2), decimal.New(cents, -2).StringFixed(2)
		row := invoiceRow{ID: UpcomingID, ConsumerID: consumerID, PeriodStart: period.Unix(), PeriodEnd: period.AddDate(0, 1, 0).Unix(),
			Currency: d.currency, Status: string(StatusPreview), Subtotal: subtotal, Total: total, TotalCents: cents,
			UsageThrough: now.Unix(), SyncStatus: SyncNone, CreatedAt: now}
		inv, err := row.domain(d.lines)
		if err != nil {
			return nil, err
		}
		out = append(out, inv)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Statements lists a vendor's monthly statements, newest first, one per month
// and currency, from the shares of open and paid invoices (void ones are left
// out, drafts have none), with gross per function, what of the net has been
// collected (shares of paid invoices) and what has been paid out (shares
// transferred).
func (b *Biller) Statements(ctx context.Context, vendorID string) ([]Statement, error) {
	var shares []shareRow
	paid := map[string]bool{}
	for _, status := range []Status{StatusOpen, StatusPaid} {
		var rows []shareRow
		err := b.db.WithContext(ctx).Table("vendor_shares AS s").Select("s.*").Joins("JOIN invoices i ON i.id = s.invoice_id").
			Where("s.vendor_id = ? AND i.status = ?", vendorID, string(status)).Scan(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("read shares of vendor %s: %w", vendorID, err)
		}
		for _, r := range rows {
			paid[r.InvoiceID] = status == StatusPaid
		}
		shares = append(shares, rows...)
	}
	type fnGross struct {
		PeriodStart   int64
		Currency      string
		FunctionID    string
		FunctionLabel string
		Cents         int64
	}
	var lines []fnGross
	err := b.db.WithContext(ctx).Table("invoice_lines AS l").
		Select("i.period_start, i.currency, l.function_id, l.function_label, CAST(SUM(l.amount_cents) AS BIGINT) AS cents").
		Joins("JOIN invoices i ON i.id = l.invoice_id").
		Where("l.vendor_id = ? AND i.status IN ?", vendorID, []string{string(StatusOpen), string(StatusPaid)}).
		Group("i.period_start, i.currency, l.function_id, l.function_label").Scan(&lines).Error
	if err != nil {
		return nil, fmt.Errorf("read gross by function of vendor %s: %w", vendorID, err)
	}
	type key struct {
		period   int64
		currency string
	}
	type acc struct {
		gross, exactFee  decimal.Decimal
		collected, paid  decimal.Decimal
		due, transferred int
		lines            []StatementLine
	}
	accs := map[key]*acc{}
	get := func(k key) *acc {
		a := accs[k]
		if a == nil {
			a = &acc{}
			accs[k] = a
		}
		return a
	}
	for _, s := range shares {
		a := get(key{s.PeriodStart, s.Currency})
		gross, err1 := decimal.NewFromString(s.Gross)
		rate, err2 := decimal.NewFromString(s.FeeRate)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("vendor share of invoice %s: %w", s.InvoiceID, err)
		}
		a.gross = a.gross.Add(gross)
		a.exactFee = a.exactFee.Add(gross.Mul(rate))
		// A paid invoice's shares have their fee and net fixed
		// (releaseShares); an invoice prepaid credit covered is paid when
		// issued. A share whose net is not positive adds nothing.
		if paid[s.InvoiceID] && s.PayoutStatus != PayoutNothingDue {
			net, err := decimal.NewFromString(s.Net)
			if err != nil {
				return nil, fmt.Errorf("vendor share of invoice %s: %w", s.InvoiceID, err)
			}
			a.collected = a.collected.Add(net)
			if s.PayoutStatus == PayoutTransferred {
				a.paid = a.paid.Add(net)
			}
		}
		if s.PayoutStatus != PayoutNothingDue {
			a.due++
			if s.PayoutStatus == PayoutTransferred {
				a.transferred++
			}
		}
	}
	for _, l := range lines {
		a := get(key{l.PeriodStart, l.Currency})
		a.lines = append(a.lines, StatementLine{FunctionID: l.FunctionID, Function: l.FunctionLabel, Gross: Money{decimal.New(l.Cents, -2)}})
	}
	out := make([]Statement, 0, len(accs))
	for k, a := range accs {
		// The fee is rounded once, on the month's gross (see doc.go).
		fee := RoundCents(a.exactFee)
		st := Statement{PeriodStart: unix(k.period), Currency: k.currency, Gross: Money{a.gross}, PlatformFee: Money{fee}, Net: Money{a.gross.Sub(fee)},
			Collected: Money{a.collected}, PaidOut: Money{a.paid}, PayoutStatus: StatementPending, Lines: a.lines}
		switch {
		case a.transferred == a.due:
			st.PayoutStatus = StatementPaid
		case a.transferred > 0:
			st.PayoutStatus = StatementPartial
		}
		slices.SortFunc(st.Lines, func(x, y StatementLine) int {
			return cmp.Or(cmp.Compare(x.Function, y.Function), cmp.Compare(x.FunctionID, y.FunctionID))
		})
		out = append(out, st)
	}
	slices.SortFunc(out, func(x, y Statement) int {
		return cmp.Or(y.PeriodStart.Compare(x.PeriodStart), cmp.Compare(x.Currency, y.Currency))
	})
	return out, nil
}
