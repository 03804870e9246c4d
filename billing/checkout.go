package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/webhooks"
)

// Consumers pay through Stripe Checkout: a session in setup mode puts a card
// on file (the account's standing becomes active and its invoices are
// charged to it), one in payment mode buys prepaid credit. What a session
// did is learnt only from its signed checkout.session.completed event (see
// HandleWebhook), never from the browser coming back.

// Metadata fnmarket puts on its Checkout sessions.
const (
	metaAccount = "fnm_account_id"
	metaPurpose = "fnm_purpose"
	metaAmount  = "fnm_credit_amount"

	purposeCard   = "payment_method"
	purposeCredit = "credit"
)

// MaxCreditPurchase is the most prepaid credit one Checkout session buys.
var MaxCreditPurchase = decimal.NewFromInt(10_000)

// PaymentsEnabled reports whether Stripe is configured, so consumers can add
// a card and buy credit.
func (b *Biller) PaymentsEnabled() bool { return b.stripe != nil }

func errPaymentsOff() error {
	return fnmarket.Errorf(fnmarket.ECONFLICT, "payments are not configured on this server (no Stripe): every account is active and pays by invoice")
}

// PaymentMethodCheckout starts a Stripe Checkout session in setup mode for the
// account's Stripe customer (created the first time) and returns its URL.
// Without Stripe it is an ECONFLICT error.
func (b *Biller) PaymentMethodCheckout(ctx context.Context, accountID, successURL, cancelURL string) (string, error) {
	if b.stripe == nil {
		return "", errPaymentsOff()
	}
	cus, err := b.ensureCustomer(ctx, accountID)
	if err != nil {
		return "", err
	}
	p := &stripe.CheckoutSessionParams{Mode: stripe.String(string(stripe.CheckoutSessionModeSetup)), Customer: stripe.String(cus),
		PaymentMethodTypes: stripe.StringSlice([]string{"card"}), SuccessURL: stripe.String(successURL), CancelURL: stripe.String(cancelURL),
		ClientReferenceID: stripe.String(accountID), SetupIntentData: &stripe.CheckoutSessionSetupIntentDataParams{}}
	p.AddMetadata(metaAccount, accountID)
	p.AddMetadata(metaPurpose, purposeCard)
	p.SetupIntentData.AddMetadata(metaAccount, accountID)
	// Each request is a new session: the key only makes the client's own
	// retries of this request safe.
	params(ctx, &p.Params, "fnm-chk-"+fnmarket.NewID("setup"))
	s, err := b.stripe.api.CheckoutSessions.New(p)
	if err != nil {
		return "", fmt.Errorf("create setup checkout for %s: %w", accountID, err)
	}
	return s.URL, nil
}

// CreditCheckout starts a Stripe Checkout session in payment mode that buys
// amount of prepaid credit (in accounts.CreditCurrency) and returns its URL.
// amount must be positive, in whole cents, at least Stripe's minimum charge
// and at most MaxCreditPurchase. Without Stripe it is an ECONFLICT error.
func (b *Biller) CreditCheckout(ctx context.Context, accountID string, amount decimal.Decimal, successURL, cancelURL string) (string, error) {
	if b.stripe == nil {
		return "", errPaymentsOff()
	}
	minimum := decimal.New(MinimumChargeCents(accounts.CreditCurrency), -2)
	if amount.LessThan(minimum) || amount.GreaterThan(MaxCreditPurchase) || !amount.Equal(amount.Round(2)) {
		return "", &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the amount is out of range",
			Fields: map[string]string{"amount": fmt.Sprintf("must be %s to %s with at most 2 decimal places", minimum.StringFixed(2), MaxCreditPurchase.StringFixed(2))}}
	}
	cus, err := b.ensureCustomer(ctx, accountID)
	if err != nil {
		return "", err
	}
	label := amount.StringFixed(2)
	p := &stripe.CheckoutSessionParams{Mode: stripe.String(string(stripe.CheckoutSessionModePayment)), Customer: stripe.String(cus),
		SuccessURL: stripe.String(successURL), CancelURL: stripe.String(cancelURL), ClientReferenceID: stripe.String(accountID),
		LineItems: []*stripe.CheckoutSessionLineItemParams{{Quantity: stripe.Int64(1), PriceData: &stripe.CheckoutSessionLineItemPriceDataParams{
			Currency: stripe.String(strings.ToLower(accounts.CreditCurrency)), UnitAmount: stripe.Int64(Money{amount}.Cents()),
			ProductData: &stripe.CheckoutSessionLineItemPriceDataProductDataParams{Name: stripe.String("fnmarket prepaid credit")}}}},
		PaymentIntentData: &stripe.CheckoutSessionPaymentIntentDataParams{Metadata: map[string]string{metaAccount: accountID, metaPurpose: purposeCredit}}}
	p.AddMetadata(metaAccount, accountID)
	p.AddMetadata(metaPurpose, purposeCredit)
	p.AddMetadata(metaAmount, label)
	params(ctx, &p.Params, "fnm-chk-"+fnmarket.NewID("credit"))
	s, err := b.stripe.api.CheckoutSessions.New(p)
	if err != nil {
		return "", fmt.Errorf("create credit checkout for %s: %w", accountID, err)
	}
	return s.URL, nil
}

// checkoutEffect is what a completed Checkout session does, worked out
// (with Stripe's help for a card) before the event is claimed.
type checkoutEffect struct {
	accountID string
	card      *accounts.PaymentMethod
	credit    *accounts.CreditGrant
}

// checkoutCompleted reads a checkout.session.completed (or
// async_payment_succeeded) event. A session that is not fnmarket's, or that
// does nothing (unpaid, another currency), gives a nil effect. A card is
// fetched from Stripe and made the customer's default for invoices; that
// is idempotent, so a redelivery that repeats it is harmless.
func (b *Biller) checkoutCompleted(ctx context.Context, ev stripe.Event) (*checkoutEffect, error) {
	var s stripe.CheckoutSession
	if ev.Data == nil || json.Unmarshal(ev.Data.Raw, &s) != nil || s.ID == "" {
		return nil, fnmarket.Errorf(fnmarket.EINVALID, "the Stripe event %s carries no Checkout session", ev.ID)
	}
	accountID := s.Metadata[metaAccount]
	if accountID == "" {
		b.log.DebugContext(ctx, "checkout session not made by fnmarket", "event", ev.ID, "session", s.ID)
		return nil, nil
	}
	switch s.Mode {
	case stripe.CheckoutSessionModeSetup:
		if s.SetupIntent == nil || s.SetupIntent.ID == "" {
			return nil, fnmarket.Errorf(fnmarket.EINVALID, "the Checkout session %s has no SetupIntent", s.ID)
		}
		var cus customerRow
		err := b.db.WithContext(ctx).Where("consumer_id = ?", accountID).Take(&cus).Error
		if errors.Is(err, gorm.ErrRecordNotFound) || (err == nil && s.Customer != nil && s.Customer.ID != cus.StripeCustomerID) {
			b.log.WarnContext(ctx, "checkout session for a customer that is not the account's", "event", ev.ID, "session", s.ID, "account", accountID)
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read stripe customer of %s: %w", accountID, err)
		}
		sp := &stripe.SetupIntentParams{}
		sp.Context = ctx
		sp.AddExpand("payment_method")
		si, err := b.stripe.api.SetupIntents.Get(s.SetupIntent.ID, sp)
		if err != nil {
			return nil, fnmarket.Wrap("read SetupIntent "+s.SetupIntent.ID, unavailable(err))
		}
		pm := si.PaymentMethod
		if pm == nil || pm.ID == "" {
			return nil, fnmarket.Errorf(fnmarket.EINVALID, "the SetupIntent %s of session %s has no payment method", si.ID, s.ID)
		}
		if pm.Card == nil {
			pp := &stripe.PaymentMethodParams{}
			pp.Context = ctx
			if pm, err = b.stripe.api.PaymentMethods.Get(pm.ID, pp); err != nil {
				return nil, fnmarket.Wrap("read payment method "+si.PaymentMethod.ID, unavailable(err))
			}
		}
		card := &accounts.PaymentMethod{StripeID: pm.ID, Brand: string(pm.Type)}
		if pm.Card != nil {
			card.Brand, card.Last4 = string(pm.Card.Brand), pm.Card.Last4
		}
		cp := &stripe.CustomerParams{InvoiceSettings: &stripe.CustomerInvoiceSettingsParams{DefaultPaymentMethod: stripe.String(pm.ID)}}
		params(ctx, &cp.Params, "fnm-cus-"+accountID+"-default-"+pm.ID)
		if _, err := b.stripe.api.Customers.Update(cus.StripeCustomerID, cp); err != nil {
			return nil, fnmarket.Wrap("make "+pm.ID+" the default of "+accountID, unavailable(err))
		}
		return &checkoutEffect{accountID: accountID, card: card}, nil
	case stripe.CheckoutSessionModePayment:
		if s.PaymentStatus != stripe.CheckoutSessionPaymentStatusPaid {
			// Paid later (async methods): checkout.session.async_payment_succeeded.
			b.log.InfoContext(ctx, "checkout session completed unpaid", "event", ev.ID, "session", s.ID, "status", s.PaymentStatus)
			return nil, nil
		}
		if !strings.EqualFold(string(s.Currency), accounts.CreditCurrency) || s.AmountTotal <= 0 {
			b.log.ErrorContext(ctx, "checkout session cannot be credited", "event", ev.ID, "session", s.ID, "currency", s.Currency, "amount_total", s.AmountTotal)
			return nil, nil
		}
		return &checkoutEffect{accountID: accountID, credit: &accounts.CreditGrant{AccountID: accountID,
			Amount: decimal.New(s.AmountTotal, -2), Currency: accounts.CreditCurrency, Source: s.ID}}, nil
	}
	return nil, nil
}

// applyCheckout applies a session's effect in the transaction that claims
// its event. A grant whose session was credited before (under another event
// id) changes nothing.
func (b *Biller) applyCheckout(ctx context.Context, tx *gorm.DB, ev stripe.Event, eff *checkoutEffect) error {
	now := b.clock.Now()
	var n int64
	if err := tx.Table("accounts").Where("id = ?", eff.accountID).Count(&n).Error; err != nil {
		return fmt.Errorf("find account %s: %w", eff.accountID, err)
	}
	if n == 0 {
		b.log.WarnContext(ctx, "checkout session for an account fnmarket does not know", "event", ev.ID, "account", eff.accountID)
		return nil
	}
	if eff.card != nil {
		if err := accounts.SetPaymentMethod(tx, eff.accountID, *eff.card, now); err != nil {
			return err
		}
		return audit.Record(tx, audit.Entry{ActorID: eff.accountID, Action: audit.ActionPaymentMethodAdd, Target: eff.card.StripeID,
			Detail: eff.card.Brand + " " + eff.card.Last4 + " (stripe event " + ev.ID + ")"}, now)
	}
	granted, err := accounts.GrantCredit(tx, *eff.credit, now)
	if err != nil {
		return err
	}
	if !granted {
		b.log.InfoContext(ctx, "checkout session already credited", "event", ev.ID, "session", eff.credit.Source)
		return nil
	}
	// credits.added and the audit entry, with the grant (once per session).
	amount := eff.credit.Amount.StringFixed(2)
	if _, _, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: eff.accountID, Type: webhooks.TypeCreditsAdded, DedupeKey: "credits:" + eff.credit.Source,
		Data: CreditsAddedData{Amount: amount, Currency: eff.credit.Currency, Source: eff.credit.Source}}, now); err != nil {
		return err
	}
	return audit.Record(tx, audit.Entry{ActorID: eff.accountID, Action: audit.ActionCreditsGranted, Target: eff.credit.Source,
		Detail: amount + " " + eff.credit.Currency}, now)
}

// eventClaimed reports whether a Stripe event was handled already, so a
// redelivery makes no Stripe calls. (The claim itself is made with the
// effect; this is only a shortcut.)
func (b *Biller) eventClaimed(ctx context.Context, id string) (bool, error) {
	var n int64
	err := b.db.WithContext(ctx).Model(&stripeEventRow{}).Where("id = ?", id).Count(&n).Error
	return n > 0, wrap("read stripe event "+id, err)
}

// unavailable marks a failed Stripe request as a temporary failure, so the
// webhook answers 503 and Stripe redelivers the event.
func unavailable(err error) error {
	return &fnmarket.Error{Code: fnmarket.EUNAVAILABLE, Message: "Stripe could not be reached; the event will be retried", Err: err}
}
