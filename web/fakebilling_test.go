package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/catalog"
)

var (
	_ api.CallPositions = (*fakeGateway)(nil)
	_ api.KeySpends     = (*fakeGateway)(nil)
)

// KeySpendThisMonth sums the costs of each key's billed calls this month,
// per currency.
func (g *fakeGateway) KeySpendThisMonth(_ context.Context, consumerID string, at time.Time) (map[string]map[string]decimal.Decimal, error) {
	start := monthStart(at.UTC())
	out := map[string]map[string]decimal.Decimal{}
	for _, c := range g.billed() {
		if c.consumerID != consumerID || c.at.Before(start) {
			continue
		}
		if out[c.keyID] == nil {
			out[c.keyID] = map[string]decimal.Decimal{}
		}
		out[c.keyID][c.pricing.Currency] = out[c.keyID][c.pricing.Currency].Add(c.cost)
	}
	return out, nil
}

// CallsThisMonth counts the consumer's billed calls of the function this
// month, as the gateway positions them.
func (g *fakeGateway) CallsThisMonth(_ context.Context, consumerID, functionID string, at time.Time) (int64, error) {
	start := monthStart(at.UTC())
	var n int64
	for _, c := range g.billed() {
		if c.consumerID == consumerID && c.functionID == functionID && !c.at.Before(start) {
			n++
		}
	}
	return n, nil
}

// fakeBilling serves the consumer billing routes of the contract ("Spend
// caps, balance and payment"), which another part of the API provides: GET
// /api/v1/billing, PUT /api/v1/billing/spend-cap, POST
// /api/v1/billing/payment-method and POST /api/v1/billing/credits. It
// authenticates the session cookie and CSRF header as the API does, keeps
// each account's standing, card, balance and cap in memory, and takes the
// month to date from the fake gateway's billed calls. The cap takes alert
// thresholds (alert_thresholds, [80, 100] unless set). Checkout URLs lead
// straight back to /billing, with the card added or the credit bought, as if
// Stripe were done; with stripe false those two routes answer the problem a
// server without Stripe answers.
type fakeBilling struct {
	sessions *api.Sessions
	gw       *fakeGateway
	stripe   bool
	// standing is the standing of an account the fake has not seen yet.
	standing string

	mu       sync.Mutex
	accounts map[string]*fakeBillingAccount
}

type fakeBillingAccount struct {
	standing string
	card     *fakeCard
	balance  decimal.Decimal
	cap      *decimal.Decimal
	// thresholds are the cap's alert thresholds; nil is the default.
	thresholds []int
}

type fakeCard struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

type fakeBillingJSON struct {
	Standing        string    `json:"standing"`
	PaymentMethod   *fakeCard `json:"payment_method"`
	Balance         string    `json:"balance"`
	Currency        string    `json:"currency"`
	MonthlySpendCap *string   `json:"monthly_spend_cap"`
	MonthToDate     string    `json:"month_to_date"`
	AlertThresholds []int     `json:"alert_thresholds"`
}

func newFakeBilling(s *api.Sessions, gw *fakeGateway, stripe bool, standing string) *fakeBilling {
	return &fakeBilling{sessions: s, gw: gw, stripe: stripe, standing: standing, accounts: map[string]*fakeBillingAccount{}}
}

func (f *fakeBilling) register(e *echo.Echo) {
	e.GET("/api/v1/billing", f.handle(func(c echo.Context, a *fakeBillingAccount, id string) error {
		return c.JSON(http.StatusOK, f.view(a, id))
	}))
	e.PUT("/api/v1/billing/spend-cap", f.handle(func(c echo.Context, a *fakeBillingAccount, id string) error {
		var req struct {
			MonthlySpendCap *string         `json:"monthly_spend_cap"`
			AlertThresholds json.RawMessage `json:"alert_thresholds"`
		}
		if err := c.Bind(&req); err != nil {
			return fnmarket.Errorf(fnmarket.EINVALID, "the body must be a JSON object")
		}
		// Everything is checked before anything changes.
		v := fnmarket.Validation{}
		var capd *decimal.Decimal
		if req.MonthlySpendCap != nil {
			d := catalog.ParseAmount(v, "monthly_spend_cap", *req.MonthlySpendCap, decimal.NewFromInt(1_000_000_000))
			if _, bad := v["monthly_spend_cap"]; !bad && d.IsZero() {
				v.Add("monthly_spend_cap", "must be above zero (send null for no cap)")
			}
			capd = &d
		}
		var thresholds []int
		if req.AlertThresholds != nil {
			thresholds = parseThresholds(v, req.AlertThresholds)
		}
		if err := v.Err(); err != nil {
			return err
		}
		a.cap = capd
		if req.AlertThresholds != nil {
			a.thresholds = thresholds
		}
		return c.JSON(http.StatusOK, f.view(a, id))
	}))
	e.POST("/api/v1/billing/payment-method", f.handle(func(c echo.Context, a *fakeBillingAccount, _ string) error {
		if !f.stripe {
			return f.notConfigured()
		}
		a.card = &fakeCard{Brand: "visa", Last4: "4242"}
		if a.standing == "free_only" {
			a.standing = "active"
		}
		return c.JSON(http.StatusOK, map[string]string{"url": "/billing?checkout=card"})
	}))
	e.POST("/api/v1/billing/credits", f.handle(func(c echo.Context, a *fakeBillingAccount, _ string) error {
		var req struct {
			Amount string `json:"amount"`
		}
		if err := c.Bind(&req); err != nil {
			return fnmarket.Errorf(fnmarket.EINVALID, "the body must be a JSON object")
		}
		v := fnmarket.Validation{}
		d := catalog.ParseAmount(v, "amount", req.Amount, decimal.NewFromInt(10_000))
		if _, bad := v["amount"]; !bad && d.LessThan(decimal.NewFromInt(5)) {
			v.Add("amount", "must be at least 5.00")
		}
		if err := v.Err(); err != nil {
			return err
		}
		if !f.stripe {
			return f.notConfigured()
		}
		a.balance = a.balance.Add(d)
		return c.JSON(http.StatusOK, map[string]string{"url": "/billing?checkout=credit"})
	}))
}

func (f *fakeBilling) notConfigured() error {
	return fnmarket.Errorf(fnmarket.EUNAVAILABLE, "payments are not configured on this server")
}

// handle authenticates the browser session (cookie, and the CSRF header on
// changes) and runs fn on the account's state under the lock.
func (f *fakeBilling) handle(fn func(c echo.Context, a *fakeBillingAccount, accountID string) error) echo.HandlerFunc {
	return func(c echo.Context) error {
		ck, err := c.Cookie(api.SessionCookie)
		if err != nil {
			return fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "log in first")
		}
		ses, err := f.sessions.Verify(ck.Value)
		if err != nil {
			return err
		}
		if c.Request().Method != http.MethodGet && subtle.ConstantTimeCompare([]byte(c.Request().Header.Get(api.CSRFHeader)), []byte(f.sessions.CSRFToken(ses.ID))) != 1 {
			return fnmarket.Errorf(fnmarket.EFORBIDDEN, "missing or wrong CSRF token")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		a := f.accounts[ses.AccountID]
		if a == nil {
			a = &fakeBillingAccount{standing: f.standing}
			f.accounts[ses.AccountID] = a
		}
		return fn(c, a, ses.AccountID)
	}
}

func (f *fakeBilling) view(a *fakeBillingAccount, accountID string) fakeBillingJSON {
	mtd := decimal.Zero
	start := monthStart(time.Now().UTC())
	for _, c := range f.gw.billed() {
		if c.consumerID == accountID && !c.at.Before(start) {
			mtd = mtd.Add(c.cost)
		}
	}
	out := fakeBillingJSON{Standing: a.standing, PaymentMethod: a.card, Balance: a.balance.String(), Currency: "USD", MonthToDate: mtd.String(),
		AlertThresholds: defaultThresholds}
	if a.thresholds != nil {
		out.AlertThresholds = a.thresholds
	}
	if a.cap != nil {
		s := a.cap.StringFixed(2)
		out.MonthlySpendCap = &s
	}
	return out
}

// thresholdsOf reports the account cap's alert thresholds as the fake holds
// them (nil for the default).
func (f *fakeBilling) thresholdsOf(accountID string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.accounts[accountID]; a != nil {
		return a.thresholds
	}
	return nil
}

// capOf reports an account's cap as the fake holds it ("" for none).
func (f *fakeBilling) capOf(accountID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.accounts[accountID]; a != nil && a.cap != nil {
		return a.cap.String()
	}
	return ""
}
