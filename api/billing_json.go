package api

import (
	"time"

	"github.com/fnmarket/fnmarket/billing"
)

// The JSON the billing routes send. billing's types are converted into these
// at the boundary and never serialised themselves, so a field added to a
// billing struct does not reach clients unless it is added here (and to the
// OpenAPI document).

// invoiceLineJSON is one line of an invoice (schema InvoiceLine).
type invoiceLineJSON struct {
	Kind             string    `json:"kind"`
	PeriodStart      time.Time `json:"period_start"`
	Function         string    `json:"function"`
	Version          int       `json:"version"`
	Calls            int64     `json:"calls"`
	FreeCalls        int64     `json:"free_calls"`
	BillableCalls    int64     `json:"billable_calls"`
	ComputeMs        int64     `json:"compute_ms"`
	Amount           string    `json:"amount"`
	CarriedInvoiceID string    `json:"carried_invoice_id,omitempty"`
}

// invoiceJSON is one invoice (schema Invoice).
type invoiceJSON struct {
	ID              string            `json:"id"`
	PeriodStart     time.Time         `json:"period_start"`
	PeriodEnd       time.Time         `json:"period_end"`
	Status          string            `json:"status"`
	Currency        string            `json:"currency"`
	Subtotal        string            `json:"subtotal"`
	CreditApplied   string            `json:"credit_applied"`
	Total           string            `json:"total"`
	TotalCents      int64             `json:"total_cents"`
	Lines           []invoiceLineJSON `json:"lines"`
	StripeInvoiceID string            `json:"stripe_invoice_id"`
	SyncStatus      string            `json:"sync_status"`
	UsageThrough    time.Time         `json:"usage_through"`
	CreatedAt       time.Time         `json:"created_at"`
	CarriedTo       string            `json:"carried_forward_to,omitempty"`
}

// upcomingJSON is the running month's preview in the first currency, with
// the previews in further currencies (schema UpcomingInvoice).
type upcomingJSON struct {
	invoiceJSON
	OtherCurrencies []invoiceJSON `json:"other_currencies,omitempty"`
}

// statementLineJSON is a vendor's gross for one function (schema
// StatementLine).
type statementLineJSON struct {
	Function string `json:"function"`
	Gross    string `json:"gross"`
}

// statementJSON is what a vendor earned in one month in one currency
// (schema Statement).
type statementJSON struct {
	PeriodStart  time.Time           `json:"period_start"`
	Currency     string              `json:"currency"`
	Gross        string              `json:"gross"`
	PlatformFee  string              `json:"platform_fee"`
	Net          string              `json:"net"`
	Collected    string              `json:"collected"`
	PaidOut      string              `json:"paid_out"`
	PayoutStatus string              `json:"payout_status"`
	Lines        []statementLineJSON `json:"lines,omitempty"`
}

func toInvoiceJSON(inv billing.Invoice) invoiceJSON {
	out := invoiceJSON{
		ID: inv.ID, PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd, Status: string(inv.Status), Currency: inv.Currency,
		Subtotal: inv.Subtotal.String(), CreditApplied: inv.CreditApplied.String(), Total: inv.Total.String(), TotalCents: inv.TotalCents,
		StripeInvoiceID: inv.StripeInvoiceID, SyncStatus: inv.SyncStatus, UsageThrough: inv.UsageThrough,
		CreatedAt: inv.CreatedAt, CarriedTo: inv.CarriedTo,
	}
	if inv.Lines != nil {
		out.Lines = make([]invoiceLineJSON, len(inv.Lines))
	}
	for i, l := range inv.Lines {
		out.Lines[i] = invoiceLineJSON{
			Kind: l.Kind, PeriodStart: l.PeriodStart, Function: l.Function, Version: l.Version,
			Calls: l.Calls, FreeCalls: l.FreeCalls, BillableCalls: l.BillableCalls, ComputeMs: l.ComputeMs,
			Amount: l.Amount.String(), CarriedInvoiceID: l.CarriedInvoiceID,
		}
	}
	return out
}

func toInvoicesJSON(invs []billing.Invoice) []invoiceJSON {
	out := make([]invoiceJSON, len(invs))
	for i, inv := range invs {
		out[i] = toInvoiceJSON(inv)
	}
	return out
}

func toStatementJSON(st billing.Statement) statementJSON {
	out := statementJSON{
		PeriodStart: st.PeriodStart, Currency: st.Currency, Gross: st.Gross.String(),
		PlatformFee: st.PlatformFee.String(), Net: st.Net.String(), Collected: st.Collected.String(), PaidOut: st.PaidOut.String(),
		PayoutStatus: st.PayoutStatus,
	}
	for _, l := range st.Lines {
		out.Lines = append(out.Lines, statementLineJSON{Function: l.Function, Gross: l.Gross.String()})
	}
	return out
}
