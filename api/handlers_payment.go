package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/catalog"
)

// The consumer's side of paying (API.md, "Spend caps, balance and payment"):
// the account's standing, card, prepaid balance and cap, and Stripe Checkout
// links to add a card or buy credit.

// Payments starts Stripe Checkout sessions (billing.Biller is one). Both
// answer an ECONFLICT error when Stripe is not configured.
type Payments interface {
	PaymentMethodCheckout(ctx context.Context, accountID, successURL, cancelURL string) (string, error)
	CreditCheckout(ctx context.Context, accountID string, amount decimal.Decimal, successURL, cancelURL string) (string, error)
}

// paymentMethodJSON is the card on file (never its Stripe id).
type paymentMethodJSON struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

// accountBillingJSON is the schema AccountBilling.
type accountBillingJSON struct {
	Standing        string             `json:"standing"`
	PaymentMethod   *paymentMethodJSON `json:"payment_method"`
	Balance         string             `json:"balance"`
	Currency        string             `json:"currency"`
	MonthlySpendCap *string            `json:"monthly_spend_cap"`
	MonthToDate     string             `json:"month_to_date"`
	AlertThresholds []int              `json:"alert_thresholds"`
}

// exactMoney writes an exact amount with at least two decimals and no
// trailing zeros beyond them ("20.00", "19.999999999999").
func exactMoney(d decimal.Decimal) string {
	if s := d.String(); strings.Contains(s, ".") && len(s)-strings.IndexByte(s, '.') > 3 {
		return s
	}
	return d.StringFixed(2)
}

func (s *Server) billingJSON(ctx context.Context, b accounts.Billing) (accountBillingJSON, error) {
	out := accountBillingJSON{Standing: b.Standing, Balance: exactMoney(b.Balance()), Currency: b.CreditCurrency, MonthToDate: "0.00",
		AlertThresholds: b.AlertThresholds}
	if out.AlertThresholds == nil {
		out.AlertThresholds = slices.Clone(accounts.DefaultAlertThresholds)
	}
	if b.PaymentMethod != nil {
		out.PaymentMethod = &paymentMethodJSON{Brand: b.PaymentMethod.Brand, Last4: b.PaymentMethod.Last4}
	}
	if b.MonthlySpendCap != nil {
		c := exactMoney(*b.MonthlySpendCap)
		out.MonthlySpendCap = &c
	}
	if s.Billing != nil {
		// What the month's calls cost so far, in the account's currency:
		// the upcoming invoice's charges before prepaid credit (credit is
		// shown as balance; caps count the whole cost too); none is 0.00.
		invs, err := s.Billing.Upcoming(ctx, b.AccountID)
		if err != nil {
			return out, err
		}
		for _, inv := range invs {
			if inv.Currency == b.CreditCurrency {
				out.MonthToDate = inv.Subtotal.StringFixed(2)
				break
			}
		}
	}
	return out, nil
}

func (s *Server) handleGetBilling() echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		b, err := s.Accounts.Billing(ctx, accountID(c))
		if err != nil {
			return err
		}
		out, err := s.billingJSON(ctx, b)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

// spendCapRequest must name monthly_spend_cap: a decimal string, or null
// to remove the cap (an empty body removes nothing).
type spendCapRequest struct {
	MonthlySpendCap jsontext.Value `json:"monthly_spend_cap"`
	// AlertThresholds, when present, replaces the account's thresholds.
	AlertThresholds []int `json:"alert_thresholds"`
}

func (r *spendCapRequest) validate() (*decimal.Decimal, error) {
	v := fnmarket.Validation{}
	raw := strings.TrimSpace(string(r.MonthlySpendCap))
	switch {
	case raw == "":
		v.Add("monthly_spend_cap", "is required: a decimal string such as \"50.00\", or null to remove the cap")
	case raw == "null":
		return nil, nil
	case raw[0] != '"':
		v.Add("monthly_spend_cap", "must be a decimal string such as \"50.00\", or null")
	default:
		var s string
		if err := jsonv2.Unmarshal([]byte(raw), &s); err != nil {
			v.Add("monthly_spend_cap", "must be a decimal string such as \"50.00\", or null")
			break
		}
		d := parseSpendCap(v, "monthly_spend_cap", s)
		if err := v.Err(); err != nil {
			return nil, err
		}
		return &d, nil
	}
	return nil, v.Err()
}

// parseSpendCap validates a cap as key caps are: a positive decimal string
// up to 1,000,000,000 with at most 6 decimal places.
func parseSpendCap(v fnmarket.Validation, field, s string) decimal.Decimal {
	d := catalog.ParseAmount(v, field, s, decimal.NewFromInt(1_000_000_000))
	if _, bad := v[field]; !bad {
		switch {
		case d.IsZero():
			v.Add(field, "must be above zero (null for no cap)")
		case -d.Exponent() > 6:
			v.Add(field, "may have at most 6 decimal places")
		}
	}
	return d
}

func (s *Server) handleSetSpendCap() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req spendCapRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		capd, err := req.validate()
		if err != nil {
			return err
		}
		v := fnmarket.Validation{}
		checkThresholds(v, req.AlertThresholds)
		if err := v.Err(); err != nil {
			return err
		}
		ctx := c.Request().Context()
		b, err := s.Accounts.SetSpendCap(ctx, accountID(c), capd)
		if err != nil {
			return err
		}
		detail := "none"
		if capd != nil {
			detail = capd.String()
		}
		if req.AlertThresholds != nil {
			if b, err = s.Accounts.SetAlertThresholds(ctx, accountID(c), req.AlertThresholds); err != nil {
				return err
			}
			detail += fmt.Sprintf("; alert thresholds %v", req.AlertThresholds)
		}
		s.audit(c, accountID(c), audit.ActionSpendCapSet, accountID(c), "monthly spend cap "+detail)
		out, err := s.billingJSON(ctx, b)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, out)
	}
}

// portalBillingURL is the portal's billing page with a query saying how
// Checkout ended; PublicURL, or else the request's own origin.
func (s *Server) portalBillingURL(c echo.Context, query string) string {
	base := strings.TrimRight(s.PublicURL, "/")
	if base == "" {
		base = c.Scheme() + "://" + c.Request().Host
	}
	return base + "/billing?" + query
}

func errNoPayments() error {
	return fnmarket.Errorf(fnmarket.ECONFLICT, "payments are not configured on this server (no Stripe): every account is active and pays by invoice")
}

func (s *Server) handlePaymentMethodCheckout() echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.Payments == nil {
			return errNoPayments()
		}
		u, err := s.Payments.PaymentMethodCheckout(c.Request().Context(), accountID(c),
			s.portalBillingURL(c, "payment_method=added"), s.portalBillingURL(c, "payment_method=cancelled"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"url": u})
	}
}

type creditsRequest struct {
	Amount string `json:"amount"`
}

// creditMin and creditMax bound one purchase of credit: Stripe's minimum
// charge in USD and billing.MaxCreditPurchase.
var creditMin, creditMax = decimal.RequireFromString("0.50"), decimal.NewFromInt(10_000)

func (r *creditsRequest) validate() (decimal.Decimal, error) {
	v := fnmarket.Validation{}
	d := catalog.ParseAmount(v, "amount", r.Amount, creditMax)
	if _, bad := v["amount"]; !bad {
		switch {
		case -d.Exponent() > 2:
			v.Add("amount", "may have at most 2 decimal places")
		case d.LessThan(creditMin):
			v.Add("amount", "must be at least "+creditMin.StringFixed(2))
		}
	}
	return d, v.Err()
}

func (s *Server) handleCreditsCheckout() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req creditsRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		amount, err := req.validate()
		if err != nil {
			return err
		}
		if s.Payments == nil {
			return errNoPayments()
		}
		u, err := s.Payments.CreditCheckout(c.Request().Context(), accountID(c), amount,
			s.portalBillingURL(c, "credits=added"), s.portalBillingURL(c, "credits=cancelled"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"url": u})
	}
}
