package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// cannedBilling answers the billing routes with fixed billing values.
type cannedBilling struct{ everything }

func usd(s string) billing.Money { return billing.NewMoney(decimal.RequireFromString(s)) }

func cannedInvoice(currency string) billing.Invoice {
	feb := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	mar := feb.AddDate(0, 1, 0)
	return billing.Invoice{ID: "inv_1", ConsumerID: "acc_secret", PeriodStart: feb, PeriodEnd: mar, Status: billing.StatusOpen,
		Currency: currency, Subtotal: usd("12.3"), CreditApplied: usd("1.25"), Total: usd("11.05"), TotalCents: 1105, StripeInvoiceID: "in_1",
		SyncStatus: billing.SyncSynced, UsageThrough: mar.Add(90 * time.Minute), CreatedAt: mar.Add(2*time.Hour + 500*time.Millisecond),
		CarriedTo: "inv_2",
		Lines: []billing.InvoiceLine{
			{Kind: billing.LineUsage, PeriodStart: feb, FunctionID: "fn_secret", VendorID: "ven_secret", Function: "acme/echo", Version: 2,
				Calls: 1200, FreeCalls: 200, BillableCalls: 1000, ComputeMs: 3456, Amount: usd("11.8")},
			{Kind: billing.LineCarriedForward, PeriodStart: feb.AddDate(0, -1, 0), Function: "", Amount: usd("0.5"), CarriedInvoiceID: "inv_0"},
			{Kind: billing.LineCredit, PeriodStart: feb, Function: "prepaid credit applied", Amount: usd("-1.25")},
		}}
}

func (cannedBilling) Invoices(context.Context, string) ([]billing.Invoice, error) {
	return []billing.Invoice{cannedInvoice("USD")}, nil
}

func (cannedBilling) Invoice(context.Context, string, string) (billing.Invoice, error) {
	return cannedInvoice("USD"), nil
}

func (cannedBilling) Upcoming(context.Context, string) ([]billing.Invoice, error) {
	return []billing.Invoice{cannedInvoice("USD"), cannedInvoice("EUR")}, nil
}

func (cannedBilling) Statements(context.Context, string) ([]billing.Statement, error) {
	return []billing.Statement{
		{PeriodStart: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), Currency: "USD", Gross: usd("100"), PlatformFee: usd("20"), Net: usd("80"),
			Collected: usd("50"), PaidOut: usd("30"), PayoutStatus: billing.StatementPartial, Lines: []billing.StatementLine{{FunctionID: "fn_secret", Function: "acme/echo", Gross: usd("100")}}},
		{PeriodStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Currency: "EUR", Gross: usd("0"), PlatformFee: usd("0"), Net: usd("0"),
			PayoutStatus: billing.StatementPaid},
	}, nil
}

// TestBillingJSONPinned pins the JSON of the invoice and statement answers
// byte for byte: the API converts billing's values into its own response
// types, and that conversion must send what clients (web/, apiclient) read.
func TestBillingJSONPinned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0], func(d *api.Deps) { d.Billing = cannedBilling{} })
	tok, _ := h.vendor("pin@example.com", "pin")
	const inv = `{"id":"inv_1","period_start":"2026-02-01T00:00:00Z","period_end":"2026-03-01T00:00:00Z","status":"open","currency":"%s",` +
		`"subtotal":"12.30","credit_applied":"1.25","total":"11.05","total_cents":1105,"lines":[` +
		`{"kind":"usage","period_start":"2026-02-01T00:00:00Z","function":"acme/echo","version":2,"calls":1200,"free_calls":200,"billable_calls":1000,"compute_ms":3456,"amount":"11.80"},` +
		`{"kind":"carried_forward","period_start":"2026-01-01T00:00:00Z","function":"","version":0,"calls":0,"free_calls":0,"billable_calls":0,"compute_ms":0,"amount":"0.50","carried_invoice_id":"inv_0"},` +
		`{"kind":"credit","period_start":"2026-02-01T00:00:00Z","function":"prepaid credit applied","version":0,"calls":0,"free_calls":0,"billable_calls":0,"compute_ms":0,"amount":"-1.25"}],` +
		`"stripe_invoice_id":"in_1","sync_status":"synced","usage_through":"2026-03-01T01:30:00Z","created_at":"2026-03-01T02:00:00.5Z","carried_forward_to":"inv_2"`
	usdInv, eurInv := fmt.Sprintf(inv, "USD"), fmt.Sprintf(inv, "EUR")
	for _, c := range []struct{ path, want string }{
		{"/api/v1/invoices/inv_1", usdInv + "}"},
		{"/api/v1/invoices", `{"items":[` + usdInv + `}],"next_cursor":""}`},
		{"/api/v1/invoices/upcoming", usdInv + `,"other_currencies":[` + eurInv + `}]}`},
		{"/api/v1/vendor/statements", `{"items":[` +
			`{"period_start":"2026-02-01T00:00:00Z","currency":"USD","gross":"100.00","platform_fee":"20.00","net":"80.00","collected":"50.00","paid_out":"30.00","payout_status":"partial","lines":[{"function":"acme/echo","gross":"100.00"}]},` +
			`{"period_start":"2026-01-01T00:00:00Z","currency":"EUR","gross":"0.00","platform_fee":"0.00","net":"0.00","collected":"0.00","paid_out":"0.00","payout_status":"paid"}` +
			`],"next_cursor":""}`},
	} {
		a := h.must(200, h.do("GET", c.path, tok, nil))
		if got := strings.TrimSpace(a.raw); got != c.want {
			t.Errorf("GET %s\n got %s\nwant %s", c.path, got, c.want)
		}
	}
}
