package billing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/metering"
)

// Catalog is what billing needs of the catalog: functions to name and price
// usage, and vendors for payouts.
type Catalog interface {
	FunctionsByID(ctx context.Context, ids []string) (map[string]catalog.Function, error)
	VendorsByID(ctx context.Context, ids []string) (map[string]catalog.Vendor, error)
	SetVendorStripeAccount(ctx context.Context, vendorID, stripeAccountID string) error
}

var _ Catalog = (*catalogstore.Store)(nil)

// Accounts names consumers on their Stripe customer records.
type Accounts interface {
	AccountsByID(ctx context.Context, ids []string) (map[string]accounts.Account, error)
}

var _ Accounts = (*accounts.Store)(nil)

// LiveUsage reports a consumer's usage that is metered but not yet rolled up
// into usage_hourly (the Redis counters), so the upcoming invoice is live.
type LiveUsage interface {
	LiveUsage(ctx context.Context, consumerID string) ([]metering.UsageRow, error)
}

// DefaultPlatformFeeRate is the share of vendors' gross the platform keeps
// unless Config.PlatformFeeRate says otherwise.
const DefaultPlatformFeeRate = "0.20"

// DefaultAdjustmentLookbackMonths is how many closed months are re-checked for
// late usage when a month is billed.
const DefaultAdjustmentLookbackMonths = 12

// Config is what a Biller is built from.
type Config struct {
	// DB is required; it holds usage_hourly and billing's tables.
	DB *database.DB
	// Catalog is required (a *catalogstore.Store).
	Catalog Catalog
	// Accounts, optional, names Stripe customers (a *accounts.Store).
	Accounts Accounts
	// Live, optional, adds not-yet-rolled-up usage to Upcoming.
	Live LiveUsage
	// Clock decides which months are over; nil means the system clock.
	Clock fnmarket.Clock
	// Logger; nil discards.
	Logger *slog.Logger
	// PlatformFeeRate is the fee on vendors' gross, in [0, 1]; nil means
	// DefaultPlatformFeeRate.
	PlatformFeeRate *decimal.Decimal
	// AdjustmentLookbackMonths bounds the late-usage check; 0 means
	// DefaultAdjustmentLookbackMonths.
	AdjustmentLookbackMonths int
	// ConsumersPerTx is how many consumers' invoices one transaction writes;
	// 0 means 100.
	ConsumersPerTx int
	// Stripe is optional; a zero StripeConfig turns sync off.
	Stripe StripeConfig
	// LeaseTTL is how long a billing run's or Stripe sync's claim outlives
	// its holder (renewed every third of it); 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
}

// Biller prices usage and keeps invoices, statements and their Stripe twins.
type Biller struct {
	db       *database.DB
	catalog  Catalog
	accounts Accounts
	live     LiveUsage
	clock    fnmarket.Clock
	log      *slog.Logger
	feeRate  decimal.Decimal
	lookback int
	perTx    int
	leaseTTL time.Duration
	stripe   *stripeSync
}

// New returns a Biller.
func New(cfg Config) (*Biller, error) {
	if cfg.DB == nil || cfg.Catalog == nil {
		return nil, errors.New("billing: DB and Catalog are required")
	}
	b := &Biller{db: cfg.DB, catalog: cfg.Catalog, accounts: cfg.Accounts, live: cfg.Live, clock: cfg.Clock, log: cfg.Logger,
		feeRate: decimal.RequireFromString(DefaultPlatformFeeRate), lookback: cfg.AdjustmentLookbackMonths, perTx: cfg.ConsumersPerTx}
	if b.clock == nil {
		b.clock = fnmarket.SystemClock{}
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if cfg.PlatformFeeRate != nil {
		b.feeRate = *cfg.PlatformFeeRate
	}
	if b.feeRate.IsNegative() || b.feeRate.GreaterThan(decimal.NewFromInt(1)) {
		return nil, fmt.Errorf("billing: platform fee rate %s is not within [0, 1]", b.feeRate)
	}
	if b.lookback <= 0 {
		b.lookback = DefaultAdjustmentLookbackMonths
	}
	if b.perTx <= 0 {
		b.perTx = 100
	}
	b.leaseTTL = cfg.LeaseTTL
	if b.leaseTTL <= 0 {
		b.leaseTTL = DefaultLeaseTTL
	}
	if cfg.Stripe.SecretKey != "" {
		b.stripe = newStripeSync(cfg.Stripe, b.log)
	}
	return b, nil
}

// MonthStart returns the first instant of t's UTC calendar month.
func MonthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// BillPeriod issues one invoice per consumer (and currency) for the UTC month
// starting at period. It is safe to re-run: invoices already issued are left
// as they are. A month not yet over is refused unless opts.ThroughNow, which
// writes drafts from the usage rolled up so far.
func (b *Biller) BillPeriod(ctx context.Context, period time.Time, opts Options) (Report, error) {
	if !period.Equal(MonthStart(period)) {
		return Report{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "a billing period starts at the first instant of a UTC month",
			Fields: map[string]string{"period": "must be a month start such as 2026-01-01T00:00:00Z"}}
	}
	period = period.UTC()
	end := period.AddDate(0, 1, 0)
	now := b.clock.Now()
	if now.Before(period) {
		return Report{}, fnmarket.Errorf(fnmarket.EINVALID, "the month %s has not begun", period.Format("2006-01"))
	}
	draft := now.Before(end)
	if draft && !opts.ThroughNow {
		return Report{}, fnmarket.Errorf(fnmarket.EINVALID,
			"the month %s is not over until %s; bill it through now for a draft invoice", period.Format("2006-01"), end.Format(time.RFC3339))
	}
	through := end
	if draft {
		through = now
	}
	lease, err := b.tryLease(ctx, leaseBill)
	if err != nil {
		return Report{}, wrap("bill "+period.Format("2006-01"), err)
	}
	defer lease.release()
	ctx = lease.ctx
	rep := Report{PeriodStart: period, Draft: draft, Totals: map[string]Money{}}
	bills, err := b.computeBills(ctx, b.db.DB, period, "", nil)
	if err != nil {
		return rep, fmt.Errorf("bill %s: %w", period.Format("2006-01"), err)
	}
	consumers := map[string]bool{}
	for _, d := range bills {
		consumers[d.consumerID] = true
	}
	rep.Consumers = len(consumers)
	for chunk := range chunks(bills, b.perTx) {
		if err := b.writeChunk(ctx, chunk, period, through, !draft, &rep); err != nil {
			return rep, fmt.Errorf("bill %s: %w", period.Format("2006-01"), err)
		}
	}
	if !draft {
		// Closed only now that every consumer's invoice is written: see doc.go.
		// Each vendor's statement for the month exists now: statement.issued,
		// with the close (once per vendor, month and currency).
		err := b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&periodRow{PeriodStart: period.Unix(), ClosedAt: now})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			return statementEvents(tx, period.Unix(), now)
		})
		if err != nil {
			return rep, fmt.Errorf("close period %s: %w", period.Format("2006-01"), err)
		}
		if b.stripe != nil {
			res, err := b.syncAfterBilling(ctx)
			if err != nil {
				// Issued locally is what counts; the sync is retried later.
				b.log.ErrorContext(ctx, "stripe sync after billing", "period", period.Format("2006-01"), "err", err)
			}
			rep.Sync, rep.SyncFailures = res, res.InvoiceFailures
		}
	}
	b.log.InfoContext(ctx, "billed period", "period", period.Format("2006-01"), "draft", draft, "consumers", rep.Consumers,
		"created", rep.Created, "finalized", rep.Finalized, "unchanged", rep.Unchanged, "adjustments", rep.AdjustmentLines)
	return rep, nil
}

// errRace means another run wrote the same invoice first; the chunk is re-read
// and retried.
var errRace = errors.New("invoice changed by a concurrent run")

func (b *Biller) writeChunk(ctx context.Context, chunk []*billDraft, period time.Time, through time.Time, final bool, rep *Report) error {
	for attempt := 0; ; attempt++ {
		local := Report{Totals: map[string]Money{}}
		err := b.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			existing, err := existingInvoices(tx, period, chunk)
			if err != nil {
				return err
			}
			for _, d := range chunk {
				if err := b.writeInvoice(tx, d, existing[billKey{d.consumerID, d.currency}], period, through, final, &local); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && attempt < 3 && (errors.Is(err, errRace) || errors.Is(err, gorm.ErrDuplicatedKey)) {
			b.log.InfoContext(ctx, "billing raced another run; retrying", "period", period.Format("2006-01"), "err", err)
			continue
		}
		if err != nil {
			return err
		}
		rep.Created += local.Created
		rep.Finalized += local.Finalized
		rep.Refreshed += local.Refreshed
		rep.Unchanged += local.Unchanged
		rep.AdjustmentLines += local.AdjustmentLines
		rep.CarriedForward += local.CarriedForward
		for c, m := range local.Totals {
			rep.Totals[c] = Money{rep.Totals[c].Add(m.Decimal)}
		}
		return nil
	}
}

func existingInvoices(tx *gorm.DB, period time.Time, chunk []*billDraft) (map[billKey]*invoiceRow, error) {
	ids := make([]string, 0, len(chunk))
	for _, d := range chunk {
		ids = append(ids, d.consumerID)
	}
	var rows []invoiceRow
	if err := tx.Where("period_start = ? AND consumer_id IN ?", period.Unix(), ids).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("read issued invoices: %w", err)
	}
	out := make(map[billKey]*invoiceRow, len(rows))
	for i := range rows {
		out[billKey{rows[i].ConsumerID, rows[i].Currency}] = &rows[i]
	}
	return out, nil
}

func (b *Biller) writeInvoice(tx *gorm.DB, d *billDraft, ex *invoiceRow, period, through time.Time, final bool, rep *Report) error {
	if ex != nil && Status(ex.Status) != StatusDraft {
		rep.Unchanged++
		return nil
	}
	now := b.clock.Now()
	// A copy: a retried chunk must not see this attempt's carried lines.
	lines := slices.Clone(d.lines)
	carried, err := carriedLines(tx, d.consumerID, d.currency, period.Unix())
	if err != nil {
		return err
	}
	for i := range carried {
		carried[i].LineNo = len(lines) + 1
		lines = append(lines, carried[i])
	}
	subCents, cents := lineCents(lines)
	subtotal, total := decimal.New(subCents, -2).StringFixed(2), decimal.New(cents, -2).StringFixed(2)
	var row invoiceRow
	if ex == nil {
		row = invoiceRow{ID: fnmarket.NewID("inv"), ConsumerID: d.consumerID, PeriodStart: period.Unix(), PeriodEnd: period.AddDate(0, 1, 0).Unix(),
			Currency: d.currency, Status: string(StatusDraft), Subtotal: subtotal, Total: total, TotalCents: cents, UsageThrough: through.Unix(),
			SyncStatus: SyncNone, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("create invoice for %s: %w", d.consumerID, err)
		}
		if err := addEvent(tx, eventRow{InvoiceID: row.ID, Kind: "transition", FromStatus: "", ToStatus: string(StatusDraft), Source: SourceBilling, At: now}); err != nil {
			return err
		}
		rep.Created++
	} else {
		row = *ex
		res := tx.Model(&invoiceRow{}).Where("id = ? AND status = ?", ex.ID, StatusDraft).
			Updates(map[string]any{"subtotal": subtotal, "total": total, "total_cents": cents, "usage_through": through.Unix(), "updated_at": now})
		if res.Error != nil {
			return fmt.Errorf("refresh draft %s: %w", ex.ID, res.Error)
		}
		if res.RowsAffected != 1 {
			return errRace
		}
		if err := tx.Where("invoice_id = ?", ex.ID).Delete(&lineRow{}).Error; err != nil {
			return fmt.Errorf("clear draft %s lines: %w", ex.ID, err)
		}
		row.Subtotal, row.Total, row.TotalCents = subtotal, total, cents
		if !final {
			rep.Refreshed++
		}
	}
	for i := range lines {
		lines[i].InvoiceID = row.ID
		if lines[i].Kind == LineAdjustment {
			rep.AdjustmentLines++
		}
	}
	if err := tx.CreateInBatches(lines, 400).Error; err != nil {
		return fmt.Errorf("write lines of %s: %w", row.ID, err)
	}
	rep.Totals[d.currency] = Money{rep.Totals[d.currency].Add(decimal.New(cents, -2))}
	if final {
		if err := b.issue(tx, &row, lines, now); err != nil {
			return err
		}
		rep.Finalized++
		if row.SyncStatus == SyncCarriedForward {
			rep.CarriedForward++
		}
	}
	return nil
}

// carriedLines returns a carried_forward line for each of the consumer's
// open invoices in currency, of a month before period, whose total is
// waiting to be carried (see doc.go), oldest first.
func carriedLines(tx *gorm.DB, consumerID, currency string, period int64) ([]lineRow, error) {
	var rows []invoiceRow
	err := tx.Where("consumer_id = ? AND currency = ? AND period_start < ? AND status = ? AND sync_status = ? AND carried_to IS NULL",
		consumerID, currency, period, StatusOpen, SyncCarriedForward).Order("period_start, id").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("read invoices carried forward for %s: %w", consumerID, err)
	}
	out := make([]lineRow, 0, len(rows))
	for _, r := range rows {
		id := r.ID
		label := fmt.Sprintf("carried forward from invoice %s (%s), under the minimum charge", r.ID, unix(r.PeriodStart).Format("2006-01"))
		out = append(out, lineRow{ConsumerID: consumerID, Kind: LineCarriedForward, UsagePeriodStart: r.PeriodStart, FunctionLabel: label,
			Amount: r.Total, AmountCents: r.TotalCents, CarriedInvoiceID: &id})
	}
	return out, nil
}

// MinimumChargeCents is the smallest invoice total, in cents, Stripe charges
// in currency (Stripe's minimum charge amounts; 50 for currencies not listed
// here). Stripe marks a smaller invoice paid without charging it.
func MinimumChargeCents(currency string) int64 {
	switch strings.ToUpper(currency) {
	case "GBP":
		return 30
	case "BGN":
		return 100
	case "AED", "MYR", "PLN", "RON":
		return 200
	case "DKK":
		return 250
	case "NOK", "SEK":
		return 300
	case "HKD":
		return 400
	case "MXN", "THB":
		return 1000
	case "CZK":
		return 1500
	}
	return 50 // USD, EUR, AUD, BRL, CAD, CHF, INR, NZD, SGD, ...
}

// issue finalizes a draft: draft -> open, vendor shares fixed, and either
// queued for Stripe or, when there is nothing to collect, marked paid.
func (b *Biller) issue(tx *gorm.DB, row *invoiceRow, lines []lineRow, now time.Time) error {
	if err := b.transitionTx(tx, row.ID, StatusDraft, StatusOpen, SourceBilling, "", now); err != nil {
		return err
	}
	byVendor := map[string]int64{}
	var vendors []string
	for _, l := range lines {
		if l.Kind == LineCarriedForward || l.Kind == LineCredit {
			// The carried invoice has its own shares; credit is money
			// already collected, and vendors are paid their share of the
			// gross it paid.
			continue
		}
		if _, ok := byVendor[l.VendorID]; !ok {
			vendors = append(vendors, l.VendorID)
		}
		byVendor[l.VendorID] += l.AmountCents
	}
	shares := make([]shareRow, 0, len(vendors))
	for _, v := range vendors {
		// The fee and net written here are provisional: the fee is rounded
		// once per vendor and month, and a share's part of it is fixed when
		// its invoice is paid (releaseShares).
		gross := decimal.New(byVendor[v], -2)
		fee := RoundCents(gross.Mul(b.feeRate))
		net := gross.Sub(fee)
		shares = append(shares, shareRow{InvoiceID: row.ID, VendorID: v, PeriodStart: row.PeriodStart, Currency: row.Currency,
			Gross: gross.StringFixed(2), FeeRate: b.feeRate.String(), PlatformFee: fee.StringFixed(2), Net: net.StringFixed(2),
			NetCents: Money{net}.Cents(), PayoutStatus: PayoutAwaitingPayment, UpdatedAt: now})
	}
	if len(shares) > 0 {
		if err := tx.Create(&shares).Error; err != nil {
			return fmt.Errorf("write vendor shares of %s: %w", row.ID, err)
		}
	}
	var carried []string
	for _, l := range lines {
		if l.CarriedInvoiceID != nil {
			carried = append(carried, *l.CarriedInvoiceID)
		}
	}
	if len(carried) > 0 {
		res := tx.Model(&invoiceRow{}).Where("id IN ? AND carried_to IS NULL AND status = ? AND sync_status = ?", carried, StatusOpen, SyncCarriedForward).
			Updates(map[string]any{"carried_to": row.ID, "updated_at": now})
		if res.Error != nil {
			return fmt.Errorf("carry invoices forward to %s: %w", row.ID, res.Error)
		}
		if res.RowsAffected != int64(len(carried)) {
			return errRace
		}
	}
	if row.TotalCents <= 0 {
		return b.transitionTx(tx, row.ID, StatusOpen, StatusPaid, SourceBilling, "nothing to collect", now)
	}
	if b.stripe != nil && row.TotalCents < MinimumChargeCents(row.Currency) {
		// Stripe would mark it paid without charging anyone: see doc.go.
		minimum := Money{decimal.New(MinimumChargeCents(row.Currency), -2)}
		if err := tx.Model(&invoiceRow{}).Where("id = ?", row.ID).Update("sync_status", SyncCarriedForward).Error; err != nil {
			return fmt.Errorf("carry %s forward: %w", row.ID, err)
		}
		row.SyncStatus = SyncCarriedForward
		return addEvent(tx, eventRow{InvoiceID: row.ID, Kind: "carried_forward", FromStatus: string(StatusOpen), ToStatus: string(StatusOpen), Source: SourceBilling,
			Detail: fmt.Sprintf("total %s %s is under the minimum charge of %s %s; carried to the next invoice", Money{decimal.New(row.TotalCents, -2)}, row.Currency, minimum, row.Currency), At: now})
	}
	if b.stripe != nil {
		if err := tx.Model(&invoiceRow{}).Where("id = ?", row.ID).Update("sync_status", SyncPending).Error; err != nil {
			return fmt.Errorf("queue %s for stripe: %w", row.ID, err)
		}
	}
	return nil
}

// billKey names one invoice of a month.
type billKey struct{ consumer, currency string }

// billDraft is one invoice's lines before it is written.
type billDraft struct {
	consumerID string
	currency   string
	lines      []lineRow
}

type billedAgg struct {
	ConsumerID  string
	FunctionID  string
	Version     int
	Calls       int64
	FreeCalls   int64
	ComputeMs   int64
	AmountCents int64
}

type cfKey struct{ consumer, function string }

// computeBills prices period's usage, and late usage of earlier closed months,
// for one consumer or ("") all. extra adds usage by month start (Unix) that is
// not in usage_hourly yet. The result is sorted by consumer and currency.
func (b *Biller) computeBills(ctx context.Context, db *gorm.DB, period time.Time, consumerID string, extra map[int64][]UsageHour) ([]*billDraft, error) {
	start := period.Unix()
	cur, err := usageHours(ctx, db, UsageFilter{From: period, To: period.AddDate(0, 1, 0), ConsumerID: consumerID})
	if err != nil {
		return nil, err
	}
	cur = append(cur, extra[start]...)
	var closed []int64
	err = db.WithContext(ctx).Model(&periodRow{}).Where("period_start >= ? AND period_start < ?", period.AddDate(0, -b.lookback, 0).Unix(), start).
		Order("period_start").Pluck("period_start", &closed).Error
	if err != nil {
		return nil, fmt.Errorf("read closed periods: %w", err)
	}
	type earlier struct {
		start  int64
		full   []UsageHour
		billed []billedAgg
		credit map[billKey]int64
	}
	var past []earlier
	fnIDs := map[string]bool{}
	for _, u := range cur {
		fnIDs[u.FunctionID] = true
	}
	for _, q := range closed {
		qt := unix(q)
		full, err := usageHours(ctx, db, UsageFilter{From: qt, To: qt.AddDate(0, 1, 0), ConsumerID: consumerID})
		if err != nil {
			return nil, err
		}
		full = append(full, extra[q]...)
		billed, err := loadBilled(ctx, db, q, consumerID)
		if err != nil {
			return nil, err
		}
		credit, err := loadCreditApplied(ctx, db, q, consumerID)
		if err != nil {
			return nil, err
		}
		for _, u := range full {
			fnIDs[u.FunctionID] = true
		}
		past = append(past, earlier{q, full, billed, credit})
	}
	fns, err := b.functions(ctx, fnIDs)
	if err != nil {
		return nil, err
	}
	drafts := map[billKey]*billDraft{}
	add := func(consumer, currency string, l lineRow) {
		k := billKey{consumer, currency}
		d := drafts[k]
		if d == nil {
			d = &billDraft{consumerID: consumer, currency: currency}
			drafts[k] = d
		}
		l.ConsumerID = consumer
		d.lines = append(d.lines, l)
	}

	charged := monthCharges{}
	for k, usage := range groupUsage(cur) {
		f := fns[k.function]
		priced, err := PriceFunctionMonth(f.pricing, usage)
		if err != nil {
			return nil, fmt.Errorf("price %s for %s: %w", f.label, k.consumer, err)
		}
		for _, p := range priced {
			add(k.consumer, p.Currency, f.line(LineUsage, start, p.Version, p.Calls, p.FreeCalls, p.ComputeMs, p.Amount))
			charged.add(k.consumer, p)
		}
	}
	for k, c := range creditUsed(cur, fns) {
		if cents := charged.creditCents(k, c); cents != 0 {
			add(k.consumer, k.currency, creditLine(start, decimal.New(-cents, -2)))
		}
	}

	for _, e := range past {
		billed := map[cfKey]map[int]billedAgg{}
		for _, a := range e.billed {
			k := cfKey{a.ConsumerID, a.FunctionID}
			if billed[k] == nil {
				billed[k] = map[int]billedAgg{}
			}
			billed[k][a.Version] = a
		}
		charged := monthCharges{}
		for k, usage := range groupUsage(e.full) {
			f := fns[k.function]
			priced, err := PriceFunctionMonth(f.pricing, usage)
			if err != nil {
				return nil, fmt.Errorf("price %s for %s in %s: %w", f.label, k.consumer, unix(e.start).Format("2006-01"), err)
			}
			for _, p := range priced {
				charged.add(k.consumer, p)
				was := billed[k][p.Version]
				dCalls, dFree, dMs := p.Calls-was.Calls, p.FreeCalls-was.FreeCalls, p.ComputeMs-was.ComputeMs
				dAmount := p.Amount.Sub(decimal.New(was.AmountCents, -2))
				if dCalls == 0 && dFree == 0 && dMs == 0 && dAmount.IsZero() {
					continue
				}
				add(k.consumer, p.Currency, f.line(LineAdjustment, e.start, p.Version, dCalls, dFree, dMs, dAmount))
			}
		}
		// Credit consumed by late usage is applied like the usage it paid.
		for k, c := range creditUsed(e.full, fns) {
			if cents := -charged.creditCents(k, c) - e.credit[k]; cents != 0 {
				add(k.consumer, k.currency, creditLine(e.start, decimal.New(cents, -2)))
			}
		}
	}

	out := make([]*billDraft, 0, len(drafts))
	for _, d := range drafts {
		slices.SortFunc(d.lines, func(a, b lineRow) int {
			return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), cmp.Compare(a.UsagePeriodStart, b.UsagePeriodStart),
				cmp.Compare(a.FunctionLabel, b.FunctionLabel), cmp.Compare(a.FunctionID, b.FunctionID), cmp.Compare(a.Version, b.Version))
		})
		for i := range d.lines {
			d.lines[i].LineNo = i + 1
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *billDraft) int {
		return cmp.Or(cmp.Compare(a.consumerID, b.consumerID), cmp.Compare(a.currency, b.currency))
	})
	return out, nil
}

func kindOrder(k string) int {
	switch k {
	case LineUsage:
		return 0
	case LineCredit:
		return 2
	}
	return 1
}

// creditUsed sums the prepaid credit the hours consumed, per consumer and
// currency (the currency of the version each hour's calls ran).
func creditUsed(hours []UsageHour, fns map[string]pricedFunction) map[billKey]decimal.Decimal {
	out := map[billKey]decimal.Decimal{}
	for _, h := range hours {
		if h.Credit.IsZero() {
			continue
		}
		k := billKey{h.ConsumerID, fns[h.FunctionID].pricing[h.Version].CurrencyCode()}
		out[k] = out[k].Add(h.Credit)
	}
	return out
}

// monthCharges is what one month's usage of each consumer comes to in each
// currency: exactly, and as its lines charge it (each rounded to cents).
type monthCharges map[billKey]struct {
	exact decimal.Decimal
	cents int64
}

func (m monthCharges) add(consumer string, p PricedUsage) {
	k := billKey{consumer, p.Currency}
	c := m[k]
	c.exact = c.exact.Add(p.Exact)
	c.cents += Money{p.Amount}.Cents()
	m[k] = c
}

// creditCents is the prepaid credit k's invoices apply to the month, in
// cents, given the credit its calls consumed: that credit rounded once, but
// never more than the month's lines charge (credit never takes a month below
// zero), and all they charge when the credit paid for every call (such a
// month nets to zero, whatever rounding each line did on its own).
func (m monthCharges) creditCents(k billKey, credit decimal.Decimal) int64 {
	c := m[k]
	if c.cents <= 0 {
		return 0
	}
	if credit.GreaterThanOrEqual(c.exact) {
		return c.cents
	}
	return min(Money{RoundCents(credit)}.Cents(), c.cents)
}

// creditLine is the prepaid credit applied to the usage of the month starting
// at period: amount is negative (or, for a correction, whatever it takes).
func creditLine(period int64, amount decimal.Decimal) lineRow {
	return lineRow{Kind: LineCredit, UsagePeriodStart: period, FunctionLabel: "prepaid credit applied",
		Amount: amount.StringFixed(2), AmountCents: Money{amount}.Cents()}
}

// lineCents sums lines: subtotal is what was charged, total the subtotal less
// the prepaid credit applied.
func lineCents(lines []lineRow) (subtotal, total int64) {
	for _, l := range lines {
		total += l.AmountCents
		if l.Kind != LineCredit {
			subtotal += l.AmountCents
		}
	}
	return subtotal, total
}

// pricedFunction is what billing needs of one function.
type pricedFunction struct {
	id, vendorID, label string
	pricing             map[int]catalog.Pricing
}

func (f pricedFunction) line(kind string, period int64, version int, calls, free, ms int64, amount decimal.Decimal) lineRow {
	return lineRow{Kind: kind, UsagePeriodStart: period, FunctionID: f.id, VendorID: f.vendorID, FunctionLabel: f.label, Version: version,
		Calls: calls, FreeCalls: free, BillableCalls: calls - free, ComputeMs: ms, Amount: amount.StringFixed(2), AmountCents: Money{amount}.Cents()}
}

func (b *Biller) functions(ctx context.Context, ids map[string]bool) (map[string]pricedFunction, error) {
	list := make([]string, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	out := make(map[string]pricedFunction, len(list))
	for chunk := range chunks(list, 500) {
		fs, err := b.catalog.FunctionsByID(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("read functions: %w", err)
		}
		for _, id := range chunk {
			f, ok := fs[id]
			if !ok {
				return nil, fmt.Errorf("usage names function %s, which the catalog does not have", id)
			}
			pf := pricedFunction{id: f.ID, vendorID: f.VendorID, label: f.VendorSlug + "/" + f.Name, pricing: map[int]catalog.Pricing{}}
			for _, v := range f.Versions {
				pf.pricing[v.Version] = v.Pricing
			}
			out[id] = pf
		}
	}
	return out, nil
}

func groupUsage(rows []UsageHour) map[cfKey][]VersionUsage {
	out := map[cfKey][]VersionUsage{}
	for _, u := range rows {
		k := cfKey{u.ConsumerID, u.FunctionID}
		s := u.Step()
		out[k] = append(out[k], VersionUsage{Hour: s.Hour, Version: s.Version, Calls: s.Calls, ComputeMs: s.ComputeMs, Priced: s.Priced})
	}
	return out
}

// loadBilled sums what issued invoices (any status but draft) already billed
// for the month starting at period.
func loadBilled(ctx context.Context, db *gorm.DB, period int64, consumerID string) ([]billedAgg, error) {
	q := db.WithContext(ctx).Table("invoice_lines AS l").
		Select("l.consumer_id, l.function_id, l.version, CAST(SUM(l.calls) AS BIGINT) AS calls, CAST(SUM(l.free_calls) AS BIGINT) AS free_calls, "+
			"CAST(SUM(l.compute_ms) AS BIGINT) AS compute_ms, CAST(SUM(l.amount_cents) AS BIGINT) AS amount_cents").
		Joins("JOIN invoices i ON i.id = l.invoice_id").
		Where("l.usage_period_start = ? AND i.status <> ? AND l.kind IN ?", period, StatusDraft, []string{LineUsage, LineAdjustment})
	if consumerID != "" {
		q = q.Where("l.consumer_id = ?", consumerID)
	}
	var rows []billedAgg
	if err := q.Group("l.consumer_id, l.function_id, l.version").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("sum billed %s: %w", unix(period).Format("2006-01"), err)
	}
	return rows, nil
}

// loadCreditApplied sums the credit lines issued invoices (any status but
// draft) already carry for the month starting at period, per consumer and
// currency, in (negative) cents.
func loadCreditApplied(ctx context.Context, db *gorm.DB, period int64, consumerID string) (map[billKey]int64, error) {
	q := db.WithContext(ctx).Table("invoice_lines AS l").
		Select("l.consumer_id, i.currency, CAST(SUM(l.amount_cents) AS BIGINT) AS cents").
		Joins("JOIN invoices i ON i.id = l.invoice_id").
		Where("l.usage_period_start = ? AND i.status <> ? AND l.kind = ?", period, StatusDraft, LineCredit)
	if consumerID != "" {
		q = q.Where("l.consumer_id = ?", consumerID)
	}
	var rows []struct {
		ConsumerID, Currency string
		Cents                int64
	}
	if err := q.Group("l.consumer_id, i.currency").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("sum credit applied %s: %w", unix(period).Format("2006-01"), err)
	}
	out := make(map[billKey]int64, len(rows))
	for _, r := range rows {
		out[billKey{r.ConsumerID, r.Currency}] = r.Cents
	}
	return out, nil
}
