package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/usage"
)

// An account's billing state: its spend cap, the card it pays with, its
// prepaid credit and, from those and its invoices, its standing
// (API.md, "Spend caps, balance and payment"). The portal's GET
// /api/v1/billing and the gateway's key lookup both read it through
// Store.Billing, so standing is decided in one place.

// CreditCurrency is the currency prepaid credit is bought and spent in.
const CreditCurrency = "USD"

// DefaultSuspendAfterDays is how many days an invoice may stay unpaid after
// it was issued before its account is suspended (FNMARKET_SUSPEND_AFTER_DAYS).
const DefaultSuspendAfterDays = 14

// BillingPolicy decides standings. The zero value (payments not configured)
// makes every account active: it pays by invoice, as before payments.
type BillingPolicy struct {
	// PaymentsEnabled is true when Stripe is configured: an account then
	// needs a card on file to be active.
	PaymentsEnabled bool
	// SuspendAfter is how long an invoice may stay open, counted from when
	// it was issued (finalized, draft -> open), before its account is
	// suspended. Only invoices Stripe holds (sync_status synced) count: one
	// Stripe never received or one carried forward under Stripe's minimum
	// charge cannot be paid by the consumer, so it suspends no one.
	SuspendAfter time.Duration
}

// SetBillingPolicy sets how standings are decided; call it before the store
// is used.
func (s *Store) SetBillingPolicy(p BillingPolicy) { s.policy = p }

// PaymentMethod is the card on file, as the portal shows it.
type PaymentMethod struct {
	Brand string
	Last4 string
	// StripeID is the Stripe payment method id (pm_...).
	StripeID string
}

// Billing is an account's billing state.
type Billing struct {
	AccountID string
	// Standing is usage.StandingActive, StandingFreeOnly or StandingSuspended.
	Standing string
	// PaymentMethod is nil when there is no card on file.
	PaymentMethod *PaymentMethod
	// MonthlySpendCap is the account's cap over all its keys; nil: none.
	MonthlySpendCap *decimal.Decimal
	// AlertThresholds are the percents of MonthlySpendCap that raise
	// usage.threshold_reached (DefaultAlertThresholds unless set).
	AlertThresholds []int
	// CreditGranted is all prepaid credit bought, CreditConsumed what
	// counted usage took from it (usage_hourly.credit_pico), both in
	// CreditCurrency.
	CreditGranted, CreditConsumed decimal.Decimal
	CreditCurrency                string
}

// Balance is the prepaid credit left: granted minus consumed, never below
// zero.
func (b Billing) Balance() decimal.Decimal {
	if d := b.CreditGranted.Sub(b.CreditConsumed); d.IsPositive() {
		return d
	}
	return decimal.Zero
}

// Admission is what the gateway's admission needs of it (PayURL is the
// caller's to fill in).
func (b Billing) Admission() usage.AccountBilling {
	return usage.AccountBilling{Standing: b.Standing, MonthlySpendCap: b.MonthlySpendCap,
		CreditGranted: b.CreditGranted, CreditConsumed: b.CreditConsumed, CreditCurrency: b.CreditCurrency}
}

type billingRow struct {
	AccountID             string `gorm:"primaryKey"`
	MonthlySpendCap       *string
	StripePaymentMethodID *string
	CardBrand             *string
	CardLast4             *string
	AlertThresholds       *string
	BillingUpdatedAt      time.Time
}

func (billingRow) TableName() string { return "account_billing" }

type grantRow struct {
	ID        string `gorm:"primaryKey"`
	AccountID string
	Amount    string
	Currency  string
	Source    string
	CreatedAt time.Time `gorm:"autoCreateTime:false"`
}

func (grantRow) TableName() string { return "credit_grants" }

// Billing returns an account's billing state.
func (s *Store) Billing(ctx context.Context, accountID string) (Billing, error) {
	return s.billing(s.db.WithContext(ctx), accountID)
}

func (s *Store) billing(db *gorm.DB, accountID string) (Billing, error) {
	out := Billing{AccountID: accountID, CreditCurrency: CreditCurrency}
	var r billingRow
	err := db.Where("account_id = ?", accountID).Take(&r).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return out, wrap("read billing of "+accountID, err)
	}
	out.AlertThresholds = ParseAlertThresholds(r.AlertThresholds)
	if r.MonthlySpendCap != nil {
		d, err := decimal.NewFromString(*r.MonthlySpendCap)
		if err != nil {
			return out, fmt.Errorf("spend cap of %s: %w", accountID, err)
		}
		out.MonthlySpendCap = &d
	}
	if r.StripePaymentMethodID != nil {
		out.PaymentMethod = &PaymentMethod{StripeID: *r.StripePaymentMethodID, Brand: deref(r.CardBrand), Last4: deref(r.CardLast4)}
	}
	var amounts []string
	if err := db.Model(&grantRow{}).Where("account_id = ? AND currency = ?", accountID, CreditCurrency).Pluck("amount", &amounts).Error; err != nil {
		return out, wrap("read credit of "+accountID, err)
	}
	for _, a := range amounts {
		d, err := decimal.NewFromString(a)
		if err != nil {
			return out, fmt.Errorf("credit grant of %s: %w", accountID, err)
		}
		out.CreditGranted = out.CreditGranted.Add(d)
	}
	// SUM of a BIGINT is NUMERIC on PostgreSQL: read as text, exact either way.
	var consumed string
	if err := db.Raw("SELECT CAST(COALESCE(SUM(credit_pico), 0) AS TEXT) FROM usage_hourly WHERE consumer_id = ?", accountID).Scan(&consumed).Error; err != nil {
		return out, wrap("read credit used by "+accountID, err)
	}
	pico, err := decimal.NewFromString(consumed)
	if err != nil {
		return out, fmt.Errorf("credit used by %s: %w", accountID, err)
	}
	out.CreditConsumed = pico.Shift(-12)
	out.Standing = usage.StandingActive
	if s.policy.PaymentsEnabled {
		late, err := s.pastDue(db, []string{accountID})
		if err != nil {
			return out, err
		}
		switch {
		case late[accountID]:
			out.Standing = usage.StandingSuspended
		case out.PaymentMethod == nil:
			out.Standing = usage.StandingFreeOnly
		}
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// pastDueInvoices selects the consumer ids of open invoices Stripe holds,
// with the time each was issued (its draft -> open event). Invoices are
// billing's tables; only their status, sync status and events are read.
const pastDueInvoices = `SELECT i.consumer_id FROM invoices i
	JOIN invoice_events e ON e.invoice_id = i.id AND e.from_status = 'draft' AND e.to_status = 'open'
	WHERE i.status = 'open' AND i.sync_status = 'synced'`

// pastDue reports which of the accounts have an invoice open for longer
// than the policy allows.
func (s *Store) pastDue(db *gorm.DB, accountIDs []string) (map[string]bool, error) {
	var ids []string
	err := db.Raw(pastDueInvoices+" AND i.consumer_id IN ? AND e.at <= ?", accountIDs, s.clock.Now().Add(-s.policy.SuspendAfter).UTC()).Scan(&ids).Error
	if err != nil {
		return nil, wrap("read past-due invoices", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// SetSpendCap sets (or, with nil, removes) the account's monthly spend cap
// and returns the account's billing state.
func (s *Store) SetSpendCap(ctx context.Context, accountID string, spendCap *decimal.Decimal) (Billing, error) {
	var c *string
	if spendCap != nil {
		v := spendCap.String()
		c = &v
	}
	db := s.db.WithContext(ctx)
	err := db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "account_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"monthly_spend_cap", "billing_updated_at"})}).
		Create(&billingRow{AccountID: accountID, MonthlySpendCap: c, BillingUpdatedAt: s.clock.Now().UTC()}).Error
	if err != nil {
		return Billing{}, wrap("set spend cap of "+accountID, err)
	}
	return s.billing(db, accountID)
}

// SetAlertThresholds sets the percents of the account's cap that raise
// usage.threshold_reached (nil: back to the default). They must be valid
// (CheckAlertThresholds).
func (s *Store) SetAlertThresholds(ctx context.Context, accountID string, thresholds []int) (Billing, error) {
	if err := CheckAlertThresholds(thresholds); err != nil {
		return Billing{}, err
	}
	db := s.db.WithContext(ctx)
	err := db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "account_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"alert_thresholds"})}).
		Create(&billingRow{AccountID: accountID, AlertThresholds: formatAlertThresholds(thresholds), BillingUpdatedAt: s.clock.Now().UTC()}).Error
	if err != nil {
		return Billing{}, wrap("set alert thresholds of "+accountID, err)
	}
	return s.billing(db, accountID)
}

// SetPaymentMethod records the card an account pays with, replacing any
// earlier one. tx is the caller's transaction (the Stripe event that
// reported the card is claimed in it).
func SetPaymentMethod(tx *gorm.DB, accountID string, pm PaymentMethod, now time.Time) error {
	err := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "account_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"stripe_payment_method_id", "card_brand", "card_last4", "billing_updated_at"})}).
		Create(&billingRow{AccountID: accountID, StripePaymentMethodID: &pm.StripeID, CardBrand: &pm.Brand, CardLast4: &pm.Last4, BillingUpdatedAt: now.UTC()}).Error
	return wrap("store payment method of "+accountID, err)
}

// CreditGrant is prepaid credit bought.
type CreditGrant struct {
	AccountID string
	Amount    decimal.Decimal
	Currency  string
	// Source names the payment (a Stripe Checkout session id); one source
	// is credited once.
	Source string
}

// GrantCredit adds prepaid credit to an account unless its source was
// credited before; it reports whether it did. tx is the caller's
// transaction. Two grants of one source at once, in any processes, credit
// it once: the source is unique in the database.
func GrantCredit(tx *gorm.DB, g CreditGrant, now time.Time) (bool, error) {
	if !g.Amount.IsPositive() || g.Source == "" || g.AccountID == "" {
		return false, fmt.Errorf("grant credit: a positive amount, an account and a source are required")
	}
	res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "source"}}, DoNothing: true}).
		Create(&grantRow{ID: fnmarket.NewID("crd"), AccountID: g.AccountID, Amount: g.Amount.String(), Currency: g.Currency, Source: g.Source, CreatedAt: now.UTC()})
	if res.Error != nil {
		return false, wrap("grant credit to "+g.AccountID, res.Error)
	}
	if res.RowsAffected == 0 {
		return false, nil
	}
	return true, TouchBilling(tx, g.AccountID, now)
}

// TouchBilling records that something deciding the account's admission
// changed (an invoice paid, voided or failing to be paid), so every
// gateway reloads its keys. tx is the caller's transaction.
func TouchBilling(tx *gorm.DB, accountID string, now time.Time) error {
	// An id that is no account (nothing to reload) is left alone.
	err := tx.Exec(`INSERT INTO account_billing (account_id, billing_updated_at) SELECT id, ? FROM accounts WHERE id = ?
		ON CONFLICT (account_id) DO UPDATE SET billing_updated_at = excluded.billing_updated_at`, now.UTC(), accountID).Error
	return wrap("touch billing of "+accountID, err)
}
