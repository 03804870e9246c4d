package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
)

// CallPositions counts a consumer's calls of a function in the UTC month of
// at that took a position (the calls that reached the function: billable
// calls, whatever version ran them). The next call of the function takes
// the position that count names (see catalog.PriceMonth).
type CallPositions interface {
	CallsThisMonth(ctx context.Context, consumerID, functionID string, at time.Time) (int64, error)
}

var _ CallPositions = (*UsageReport)(nil)

// CallsThisMonth counts consumerID's billable calls of functionID in the
// UTC month of at from the rolled-up usage in the database (as usage rows
// are read). It is the next-call route's fallback when Deps.CallPositions is
// nil: calls in flight or not yet rolled up are not counted, so it lags the
// gateway's own count by them and may show a position too early.
func (u *UsageReport) CallsThisMonth(ctx context.Context, consumerID, functionID string, at time.Time) (int64, error) {
	from := monthStart(at)
	periods, err := u.hours.Hours(ctx, billing.UsageFilter{ConsumerID: consumerID, FunctionIDs: []string{functionID},
		From: from, To: from.AddDate(0, 1, 0)})
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range periods {
		if p.FunctionID == functionID {
			n += p.BillableCalls
		}
	}
	return n, nil
}

// callPositions is Deps.CallPositions, or else the usage reader when it can
// count calls (UsageReport can); nil when neither is wired, and the
// next-call route is then not served.
func (s *Server) callPositions() CallPositions {
	if s.CallPositions != nil {
		return s.CallPositions
	}
	if cp, ok := s.Usage.(CallPositions); ok {
		return cp
	}
	return nil
}

// nextCallJSON is what the signed-in consumer's next call of a function's
// published version will cost: exact decimal strings, priced only by
// catalog.Pricing (the rule the gateway's X-Cost uses).
type nextCallJSON struct {
	Function      string `json:"function"`
	Version       int    `json:"version"`
	Currency      string `json:"currency"`
	Position      int64  `json:"position"`
	FreeCallsLeft int64  `json:"free_calls_left"`
	PerCall       string `json:"per_call"`
	PerComputeMs  string `json:"per_compute_ms"`
	CostAt1ms     string `json:"cost_at_1ms"`
	TimeoutMs     int    `json:"timeout_ms"`
	WorstCase     string `json:"worst_case"`
	Formula       string `json:"formula"`
}

// nextCall prices the call at position pos of version v (of function name).
func nextCall(name string, v catalog.Version, pos int64) nextCallJSON {
	p := v.Pricing
	cur := p.CurrencyCode()
	slot := p.SlotAt(pos)
	out := nextCallJSON{
		Function: name, Version: v.Version, Currency: cur, Position: pos,
		FreeCallsLeft: slot.FreeLeft,
		PerCall:       slot.PerCall.String(), PerComputeMs: p.PerComputeMs.String(),
		CostAt1ms: p.CallCost(pos, 1).String(), TimeoutMs: v.TimeoutMs,
		WorstCase: p.CallCost(pos, int64(v.TimeoutMs)).String(),
	}
	out.Formula = nextCallFormula(p, cur, slot)
	return out
}

// nextCallFormula says in words what nextCall computed, e.g. "free (37 free
// calls left this month) + 0.000002 USD per compute-ms" or "0.001 USD per
// call + 0.000002 USD per compute-ms; no free calls left this month".
func nextCallFormula(p catalog.Pricing, cur string, slot catalog.Slot) string {
	var b strings.Builder
	if slot.Free {
		fmt.Fprintf(&b, "free (%d free %s left this month)", slot.FreeLeft, plural(slot.FreeLeft, "call", "calls"))
	} else {
		fmt.Fprintf(&b, "%s %s per call", slot.PerCall, cur)
		switch {
		case slot.Tier >= 0 && slot.To == 0:
			fmt.Fprintf(&b, " (tier from billable call %d on)", slot.From)
		case slot.Tier >= 0:
			fmt.Fprintf(&b, " (tier of billable calls %d to %d)", slot.From, slot.To)
		}
	}
	fmt.Fprintf(&b, " + %s %s per compute-ms", p.PerComputeMs, cur)
	if !slot.Free && p.FreeCallsPerMonth > 0 {
		fmt.Fprintf(&b, "; no free calls left this month (%d used)", p.FreeCallsPerMonth)
	}
	return b.String()
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// handleNextCall answers what the caller's next call of a published
// function will cost, at its position among the caller's calls of that
// function this month.
func (s *Server) handleNextCall(cp CallPositions) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		l, err := s.Catalog.Listing(ctx, c.Param("vendor"), c.Param("name"))
		if err != nil {
			return err
		}
		pos, err := cp.CallsThisMonth(ctx, accountID(c), l.ID, s.Clock.Now())
		if err != nil {
			return &fnmarket.Error{Code: fnmarket.EINTERNAL, Message: "count this month's calls", Err: err}
		}
		return c.JSON(http.StatusOK, nextCall(l.VendorSlug+"/"+l.Name, l.Published, pos))
	}
}
