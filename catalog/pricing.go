package catalog

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
)

// Pricing is what a function version charges. Money is exact: every amount is
// a decimal, never a float.
type Pricing struct {
	Currency          string          `json:"currency"`
	PerCall           decimal.Decimal `json:"per_call"`
	PerComputeMs      decimal.Decimal `json:"per_compute_ms"`
	FreeCallsPerMonth int64           `json:"free_calls_per_month"`
	// Tiers, when present, replace PerCall with graduated prices on the
	// month's billable calls: the first Tiers[0].UpTo calls at Tiers[0].PerCall,
	// the next ones up to Tiers[1].UpTo at Tiers[1].PerCall, and so on. The last
	// tier has UpTo 0, meaning "and beyond".
	Tiers []Tier `json:"tiers,omitempty"`
}

// Tier is one step of graduated per-call pricing.
type Tier struct {
	UpTo    int64           `json:"up_to"`
	PerCall decimal.Decimal `json:"per_call"`
}

// MaxPriceScale is the most decimal places a price may carry (a
// compute-millisecond can cost well under a millionth of a dollar).
const MaxPriceScale = 12

// PricingInput is pricing as a caller sends it: money as decimal strings.
type PricingInput struct {
	Currency          string      `json:"currency"`
	PerCall           string      `json:"per_call"`
	PerComputeMs      string      `json:"per_compute_ms"`
	FreeCallsPerMonth *int64      `json:"free_calls_per_month"`
	Tiers             []TierInput `json:"tiers,omitempty"`
}

// TierInput is one tier as a caller sends it.
type TierInput struct {
	UpTo    int64  `json:"up_to"`
	PerCall string `json:"per_call"`
}

// ParsePrice parses a non-negative decimal price string (at most 1000 per
// unit), recording a problem under field in v when it is not one.
func ParsePrice(v fnmarket.Validation, field, s string) decimal.Decimal {
	return ParseAmount(v, field, s, decimal.NewFromInt(1000))
}

// ParseAmount parses a non-negative decimal string of at most MaxPriceScale
// places and at most maxValue, recording a problem under field in v when it
// is not one.
func ParseAmount(v fnmarket.Validation, field, s string, maxValue decimal.Decimal) decimal.Decimal {
	s = strings.TrimSpace(s)
	if s == "" {
		v.Add(field, "is required, as a decimal string such as \"0.0001\"")
		return decimal.Zero
	}
	if !decimalPattern.MatchString(s) {
		v.Add(field, "must be a non-negative decimal string such as \"0.0001\"")
		return decimal.Zero
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		v.Add(field, "must be a decimal string")
		return decimal.Zero
	}
	if -d.Exponent() > MaxPriceScale {
		v.Add(field, fmt.Sprintf("may have at most %d decimal places", MaxPriceScale))
	}
	if d.GreaterThan(maxValue) {
		v.Add(field, "must be at most "+maxValue.String())
	}
	return d
}

var decimalPattern = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,18})?$`)

// Parse validates the input and returns the pricing; problems are recorded in
// v under "pricing.<field>".
func (in *PricingInput) Parse(v fnmarket.Validation) Pricing {
	if in == nil {
		v.Add("pricing", "is required")
		return Pricing{}
	}
	p := Pricing{Currency: strings.ToUpper(strings.TrimSpace(in.Currency))}
	if p.Currency == "" {
		p.Currency = "USD"
	}
	if _, ok := Currencies[p.Currency]; !ok {
		v.Add("pricing.currency", "must be a supported ISO 4217 code: USD, EUR, GBP, CAD, AUD, NZD, CHF, SEK, NOK, DKK or SGD")
	}
	if len(in.Tiers) == 0 || in.PerCall != "" {
		p.PerCall = ParsePrice(v, "pricing.per_call", in.PerCall)
	}
	p.PerComputeMs = ParsePrice(v, "pricing.per_compute_ms", in.PerComputeMs)
	if in.FreeCallsPerMonth != nil {
		if *in.FreeCallsPerMonth < 0 || *in.FreeCallsPerMonth > 1_000_000_000 {
			v.Add("pricing.free_calls_per_month", "must be between 0 and 1000000000")
		} else {
			p.FreeCallsPerMonth = *in.FreeCallsPerMonth
		}
	}
	if len(in.Tiers) > 10 {
		v.Add("pricing.tiers", "may have at most 10 tiers")
		return p
	}
	var prev int64
	for i, t := range in.Tiers {
		field := fmt.Sprintf("pricing.tiers[%d]", i)
		last := i == len(in.Tiers)-1
		switch {
		case last && t.UpTo != 0:
			v.Add(field+".up_to", "the last tier must have up_to 0 (no upper bound)")
		case !last && t.UpTo == 0:
			v.Add(field+".up_to", "only the last tier may be open-ended (up_to 0)")
		case !last && t.UpTo <= prev:
			v.Add(field+".up_to", "must be greater than the previous tier's up_to")
		}
		prev = t.UpTo
		p.Tiers = append(p.Tiers, Tier{UpTo: t.UpTo, PerCall: ParsePrice(v, field+".per_call", t.PerCall)})
	}
	return p
}

// Input turns pricing back into its wire form.
func (p Pricing) Input() PricingInput {
	free := p.FreeCallsPerMonth
	in := PricingInput{Currency: p.Currency, PerCall: p.PerCall.String(), PerComputeMs: p.PerComputeMs.String(), FreeCallsPerMonth: &free}
	for _, t := range p.Tiers {
		in.Tiers = append(in.Tiers, TierInput{UpTo: t.UpTo, PerCall: t.PerCall.String()})
	}
	return in
}

// CallsCost is the price of billable calls number from+1 .. from+n of a month
// (free calls already taken out), honouring graduated tiers. It is additive:
// CallsCost(0, a+b) == CallsCost(0, a) + CallsCost(a, b), which lets the
// gateway price calls one at a time with the same code PriceMonth uses.
func (p Pricing) CallsCost(from, n int64) decimal.Decimal {
	if n <= 0 {
		return decimal.Zero
	}
	if len(p.Tiers) == 0 {
		return p.PerCall.Mul(decimal.NewFromInt(n))
	}
	total := decimal.Zero
	lo := int64(0)
	start, end := from, from+n
	for _, t := range p.Tiers {
		hi := t.UpTo
		if hi == 0 {
			hi = end
		}
		a, b := max(lo, start), min(hi, end)
		if b > a {
			total = total.Add(t.PerCall.Mul(decimal.NewFromInt(b - a)))
		}
		lo = hi
		if lo >= end {
			break
		}
	}
	return total
}

// ComputeCost is the price of computeMs compute-milliseconds.
func (p Pricing) ComputeCost(computeMs int64) decimal.Decimal {
	return p.PerComputeMs.Mul(decimal.NewFromInt(computeMs))
}

// CallCost is the exact price of one call that took computeMs when callsBefore
// calls of the same function were already made by the same consumer this
// month: the pricing rule (see PriceMonth) for one call, its slot's per-call
// price (SlotAt) plus compute. The gateway answers it as X-Cost; PriceMonth
// over one-call steps in the same order gives the same amounts.
func (p Pricing) CallCost(callsBefore, computeMs int64) decimal.Decimal {
	return p.SlotAt(callsBefore).PerCall.Add(p.ComputeCost(computeMs))
}

// CurrencyCode is the pricing's currency, USD when unset.
func (p Pricing) CurrencyCode() string {
	if p.Currency == "" {
		return "USD"
	}
	return p.Currency
}

// ScheduleStep is one step of a pricing's per-call price by position: from
// the call at position From on (From calls of the month already made), each
// call's per-call price is PerCall, until the next step.
type ScheduleStep struct {
	From    int64
	PerCall decimal.Decimal
	// Tier is the step's index in Pricing.Tiers; -1 for the free calls and
	// for flat pricing.
	Tier int
}

// Schedule is the per-call price by position, as a table: the free calls
// (price 0) from position 0, then the per-call price or each graduated tier
// from where it starts. It is the rule CallsCost and SlotAt follow, in a form
// that code outside Go can apply without knowing it: admission (a Lua script)
// looks a position up in it to hold a call's worst case.
func (p Pricing) Schedule() []ScheduleStep {
	var out []ScheduleStep
	for s := range p.steps {
		out = append(out, s)
	}
	return out
}

// steps yields Schedule's steps in order, without building the table (SlotAt
// runs on every call).
func (p Pricing) steps(yield func(ScheduleStep) bool) {
	free := max(p.FreeCallsPerMonth, 0)
	if free > 0 && !yield(ScheduleStep{From: 0, PerCall: decimal.Zero, Tier: -1}) {
		return
	}
	if len(p.Tiers) == 0 {
		yield(ScheduleStep{From: free, PerCall: p.PerCall, Tier: -1})
		return
	}
	lo := int64(0)
	for i, t := range p.Tiers {
		if !yield(ScheduleStep{From: free + lo, PerCall: t.PerCall, Tier: i}) {
			return
		}
		lo = t.UpTo
	}
}

// Slot is where the call at one position of a month falls.
type Slot struct {
	// Free says the call is one of the month's free calls; FreeLeft counts
	// the free calls left from this one on (this one included).
	Free     bool
	FreeLeft int64
	// Tier is the index in Pricing.Tiers of the call's tier (-1: a free
	// call, or flat pricing); From and To are the billable call numbers
	// (1-based) the tier covers, To 0 meaning "and beyond".
	Tier     int
	From, To int64
	// PerCall is the call's per-call price.
	PerCall decimal.Decimal
}

// SlotAt is the slot of the call at position callsBefore (callsBefore calls
// of the function already made by the consumer this month).
func (p Pricing) SlotAt(callsBefore int64) Slot {
	var step ScheduleStep
	first := true
	for s := range p.steps {
		if !first && callsBefore < s.From {
			break
		}
		step, first = s, false
	}
	free := max(p.FreeCallsPerMonth, 0)
	sl := Slot{Free: callsBefore < free, FreeLeft: max(free-callsBefore, 0), Tier: step.Tier, PerCall: step.PerCall}
	if step.Tier >= 0 {
		sl.From, sl.To = step.From-free+1, p.Tiers[step.Tier].UpTo
	}
	return sl
}
