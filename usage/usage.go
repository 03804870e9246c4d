// Package usage holds the domain types of admitting and counting calls
// (who calls, whether a call may go ahead, a finished call). They sit apart
// from metering, which implements them over Redis and the database, so the
// gateway can speak of them without linking any driver.
package usage

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
)

// Caller identifies who is calling: the consumer account and the API key.
type Caller struct {
	ConsumerID string
	KeyID      string
	// RateLimitPerSecond is the effective limit for this call (the gateway's
	// default lowered by the version's own limit); 0 means no limit.
	RateLimitPerSecond int
	// MonthlySpendCap is the key's cap; nil means none.
	MonthlySpendCap *decimal.Decimal
}

// AdmissionRequest asks whether one call may go ahead.
type AdmissionRequest struct {
	Caller     Caller
	FunctionID string
	Version    int
	Pricing    catalog.Pricing
	At         time.Time
}

// Admission is the answer. When Allowed is false, Reason is fnmarket.ERATELIMITED
// or fnmarket.ESPENDCAP.
type Admission struct {
	Allowed bool
	Reason  string
	// Rate-limit headers: the limit, what is left in the window and when it resets.
	Limit      int
	Remaining  int
	Reset      time.Duration
	RetryAfter time.Duration
	// CallsBefore is the consumer's calls of this function this month, known
	// so far; the meter uses it to price the call for the spend cap.
	CallsBefore int64
	// Degraded is true when Redis could not be reached and a local limiter
	// decided.
	Degraded bool
}

// Call is one finished invocation to be counted.
type Call struct {
	InvocationID string
	ConsumerID   string
	KeyID        string
	FunctionID   string
	Version      int
	Pricing      catalog.Pricing
	CallsBefore  int64
	At           time.Time // when the call started; decides its hour and month
	ComputeMs    int64
	Billable     bool
	Error        bool // the function answered 5xx or timed out
}
