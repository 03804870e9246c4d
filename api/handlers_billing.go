package api

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/billing"
)

// UsageQuery selects usage rows: a consumer's own, or a vendor's functions
// summed over consumers.
type UsageQuery struct {
	ConsumerID  string
	VendorID    string
	FunctionIDs []string // the vendor's functions, with VendorID
	From, To    time.Time
	Granularity string // "hour" or "day"
}

// UsageRow is one row of a usage report.
type UsageRow struct {
	Function    string `json:"function"`
	FunctionID  string `json:"function_id"`
	Version     int    `json:"version"`
	PeriodStart string `json:"period_start"`
	Calls       int64  `json:"calls"`
	Errors      int64  `json:"errors"`
	ComputeMs   int64  `json:"compute_ms"`
	Cost        string `json:"cost"`
	Currency    string `json:"currency"`
}

// LatencyPoint is a function's compute-ms percentiles over one period.
type LatencyPoint struct {
	PeriodStart string `json:"period_start"`
	Calls       int64  `json:"calls"`
	P50Ms       int64  `json:"p50_ms"`
	P99Ms       int64  `json:"p99_ms"`
}

// UsageReader reads usage for the portal.
type UsageReader interface {
	Usage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
	Latency(ctx context.Context, functionID string, from, to time.Time, granularity string) ([]LatencyPoint, error)
}

// BillingReader reads invoices and statements (billing.Biller is one); the
// API converts what it returns into its own response types.
type BillingReader interface {
	Invoices(ctx context.Context, consumerID string) ([]billing.Invoice, error)
	Invoice(ctx context.Context, consumerID, id string) (billing.Invoice, error)
	// Upcoming returns the running month's previews, one per currency, the
	// first (USD) one first.
	Upcoming(ctx context.Context, consumerID string) ([]billing.Invoice, error)
	Statements(ctx context.Context, vendorID string) ([]billing.Statement, error)
	OnboardVendor(ctx context.Context, vendorID, returnURL string) (string, error)
}

// WebhookHandler takes a Stripe event with its signature header.
type WebhookHandler interface {
	HandleWebhook(ctx context.Context, payload []byte, signature string) error
}

func (s *Server) usageQuery(c echo.Context) (UsageQuery, error) {
	now := s.Clock.Now().UTC()
	q := UsageQuery{Granularity: c.QueryParam("granularity"), To: now, From: now.AddDate(0, 0, -7)}
	v := fnmarket.Validation{}
	if q.Granularity == "" {
		q.Granularity = "day"
	}
	if q.Granularity != "hour" && q.Granularity != "day" {
		v.Add("granularity", "must be hour or day")
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if raw := c.QueryParam(p.name); raw != "" {
			t, err := time.Parse(time.RFC3339, raw)
			if err != nil {
				v.Add(p.name, "must be an RFC 3339 time such as 2026-11-01T00:00:00Z")
				continue
			}
			*p.dst = t.UTC()
		}
	}
	if len(v) == 0 && !q.From.Before(q.To) {
		v.Add("from", "must be before to")
	}
	if len(v) == 0 && q.To.Sub(q.From) > 400*24*time.Hour {
		v.Add("from", "the range may span at most 400 days")
	}
	return q, v.Err()
}

func (s *Server) handleUsage(vendor bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		q, err := s.usageQuery(c)
		if err != nil {
			return err
		}
		if vendor {
			ven, err := s.vendor(c)
			if err != nil {
				return err
			}
			q.VendorID = ven.ID
			fs, err := s.Catalog.Functions(c.Request().Context(), ven)
			if err != nil {
				return err
			}
			q.FunctionIDs = []string{}
			for _, f := range fs {
				q.FunctionIDs = append(q.FunctionIDs, f.ID)
			}
		} else {
			q.ConsumerID = accountID(c)
		}
		rows, err := s.Usage.Usage(c.Request().Context(), q)
		if err != nil {
			return err
		}
		if rows == nil {
			rows = []UsageRow{}
		}
		return c.JSON(http.StatusOK, list[UsageRow]{Items: rows})
	}
}

func (s *Server) handleLatency() echo.HandlerFunc {
	return func(c echo.Context) error {
		q, err := s.usageQuery(c)
		if err != nil {
			return err
		}
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		f, err := s.Catalog.Function(c.Request().Context(), ven, c.Param("id"))
		if err != nil {
			return err
		}
		pts, err := s.Usage.Latency(c.Request().Context(), f.ID, q.From, q.To, q.Granularity)
		if err != nil {
			return err
		}
		if pts == nil {
			pts = []LatencyPoint{}
		}
		return c.JSON(http.StatusOK, list[LatencyPoint]{Items: pts})
	}
}

func (s *Server) handleInvoices() echo.HandlerFunc {
	return func(c echo.Context) error {
		invs, err := s.Billing.Invoices(c.Request().Context(), accountID(c))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, list[invoiceJSON]{Items: toInvoicesJSON(invs)})
	}
}

func (s *Server) handleInvoice() echo.HandlerFunc {
	return func(c echo.Context) error {
		inv, err := s.Billing.Invoice(c.Request().Context(), accountID(c), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toInvoiceJSON(inv))
	}
}

func (s *Server) handleUpcoming() echo.HandlerFunc {
	return func(c echo.Context) error {
		invs, err := s.Billing.Upcoming(c.Request().Context(), accountID(c))
		if err != nil {
			return err
		}
		if len(invs) == 0 {
			return fnmarket.Errorf(fnmarket.EINTERNAL, "no preview invoice")
		}
		return c.JSON(http.StatusOK, upcomingJSON{invoiceJSON: toInvoiceJSON(invs[0]), OtherCurrencies: toInvoicesJSON(invs[1:])})
	}
}

func (s *Server) handleStatements() echo.HandlerFunc {
	return func(c echo.Context) error {
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		sts, err := s.Billing.Statements(c.Request().Context(), ven.ID)
		if err != nil {
			return err
		}
		out := make([]statementJSON, len(sts))
		for i, st := range sts {
			out[i] = toStatementJSON(st)
		}
		return c.JSON(http.StatusOK, list[statementJSON]{Items: out})
	}
}

type onboardRequest struct {
	ReturnURL string `json:"return_url"`
}

func (s *Server) handleStripeOnboard() echo.HandlerFunc {
	return func(c echo.Context) error {
		ven, err := s.vendor(c)
		if err != nil {
			return err
		}
		var req onboardRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		u, err := s.Billing.OnboardVendor(c.Request().Context(), ven.ID, req.ReturnURL)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"url": u})
	}
}

func (s *Server) handleStripeWebhook() echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
		if err != nil {
			return fnmarket.Errorf(fnmarket.ETOOLARGE, "webhook body too large")
		}
		if err := s.Webhooks.HandleWebhook(c.Request().Context(), body, c.Request().Header.Get("Stripe-Signature")); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]bool{"received": true})
	}
}
