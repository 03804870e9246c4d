package api

import (
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
)

// Bounds of a quote request.
const (
	maxQuoteCalls            = 1_000_000_000
	maxQuoteComputeMsPerCall = 900_000
)

// quoteRequest asks what a month's calls would cost, at pricing as a vendor
// would send it or at a published function's pricing.
type quoteRequest struct {
	Pricing          *catalog.PricingInput `json:"pricing"`
	Function         *string               `json:"function"`
	Version          *int                  `json:"version"`
	Calls            *int64                `json:"calls"`
	ComputeMsPerCall *int64                `json:"compute_ms_per_call"`
	CallsBefore      *int64                `json:"calls_before"`
}

// quoteJSON is a quote: exact, unrounded decimal strings, and the total as
// billing would round an invoice line.
type quoteJSON struct {
	Currency      string `json:"currency"`
	Calls         int64  `json:"calls"`
	FreeCalls     int64  `json:"free_calls"`
	BillableCalls int64  `json:"billable_calls"`
	ComputeMs     int64  `json:"compute_ms"`
	PerCallCost   string `json:"per_call_cost"`
	ComputeCost   string `json:"compute_cost"`
	Total         string `json:"total"`
	TotalRounded  string `json:"total_rounded"`
}

// quoteCount checks an optional count field against 0..limit; a missing
// required one is a problem too.
func quoteCount(v fnmarket.Validation, field string, n *int64, required bool, limit int64) int64 {
	if n == nil {
		if required {
			v.Add(field, "is required")
		}
		return 0
	}
	if *n < 0 || *n > limit {
		v.Add(field, "must be between 0 and "+itoa(int(limit)))
		return 0
	}
	return *n
}

// handleQuote prices calls with catalog's rule, the one billing uses: the
// portal asks it instead of doing money math itself.
func (s *Server) handleQuote() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req quoteRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		calls := quoteCount(v, "calls", req.Calls, true, maxQuoteCalls)
		ms := quoteCount(v, "compute_ms_per_call", req.ComputeMsPerCall, true, maxQuoteComputeMsPerCall)
		before := quoteCount(v, "calls_before", req.CallsBefore, false, maxQuoteCalls)
		var p catalog.Pricing
		switch {
		case req.Pricing != nil && req.Function != nil:
			v.Add("function", "send either pricing or function, not both")
		case req.Function != nil:
			vendor, name, ok := strings.Cut(*req.Function, "/")
			if !ok || vendor == "" || name == "" || strings.Contains(name, "/") {
				v.Add("function", "must be \"vendor/name\"")
				break
			}
			version := 0
			if req.Version != nil {
				if *req.Version < 1 {
					v.Add("version", "must be 1 or more")
					break
				}
				version = *req.Version
			}
			if len(v) > 0 {
				break
			}
			r, err := s.Catalog.Route(c.Request().Context(), vendor, name, version)
			if err != nil {
				return err
			}
			p = r.Version.Pricing
		default:
			if req.Version != nil {
				v.Add("version", "is only for a function reference")
			}
			p = req.Pricing.Parse(v)
		}
		if err := v.Err(); err != nil {
			return err
		}
		// calls_before are the month's earlier calls of the same function at
		// the same pricing: they come first, so they use up free calls and
		// tier slots before the quoted calls. Both go through the one
		// pricing rule (catalog.PriceMonth) as a month of two steps.
		computeMs := calls * ms
		month := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
		priced, err := catalog.PriceMonth(map[int]catalog.Pricing{1: p}, []catalog.UsageStep{
			{Hour: month, Version: 1, Calls: before},
			{Hour: month.Add(time.Hour), Version: 1, Calls: calls, ComputeMs: computeMs},
		})
		if err != nil {
			return &fnmarket.Error{Code: fnmarket.EINTERNAL, Message: "price the quote", Err: err}
		}
		quoted := priced[len(priced)-1]
		free, billable, total := quoted.FreeCalls, quoted.BillableCalls, quoted.Cost
		computeCost := p.ComputeCost(computeMs)
		currency := p.Currency
		if currency == "" {
			currency = "USD"
		}
		return c.JSON(http.StatusOK, quoteJSON{
			Currency: currency, Calls: calls, FreeCalls: free, BillableCalls: billable, ComputeMs: computeMs,
			PerCallCost: total.Sub(computeCost).String(), ComputeCost: computeCost.String(),
			Total: total.String(), TotalRounded: billing.RoundCents(total).StringFixed(2),
		})
	}
}
