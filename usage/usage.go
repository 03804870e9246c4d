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
	// Account is the consumer account's billing state (standing, account
	// cap, prepaid credit).
	Account AccountBilling
}

// Standings of an account (API.md, "Spend caps, balance and payment").
const (
	// StandingActive admits every call (the zero value means active too).
	StandingActive = "active"
	// StandingFreeOnly has no way to pay yet: only calls whose worst case
	// costs nothing, or is covered by prepaid credit, are admitted.
	StandingFreeOnly = "free_only"
	// StandingSuspended has an invoice past due: no call is admitted.
	StandingSuspended = "suspended"
)

// AccountBilling is what admission needs to know about the consumer
// account: it travels with the API key through the gateway's key cache and is
// refreshed on every replica when the account changes.
type AccountBilling struct {
	// Standing is StandingActive (or ""), StandingFreeOnly or StandingSuspended.
	Standing string
	// MonthlySpendCap is the account's cap over all its keys; nil means none.
	MonthlySpendCap *decimal.Decimal
	// CreditGranted is all prepaid credit ever bought, in CreditCurrency
	// (it only grows); CreditConsumed is what counted usage in the database
	// has taken from it. Admission holds credit in Redis and seeds its
	// counter from these two when Redis has none.
	CreditGranted, CreditConsumed decimal.Decimal
	// CreditCurrency is the currency of the credit; calls priced in another
	// currency do not spend it.
	CreditCurrency string
	// PayURL is where the consumer adds a way to pay (shown with 402
	// payment_required); empty when unknown.
	PayURL string
}

// AdmissionRequest asks whether one call may go ahead.
type AdmissionRequest struct {
	Caller Caller
	// InvocationID names the call's hold until it is settled.
	InvocationID string
	FunctionID   string
	Version      int
	Pricing      catalog.Pricing
	// TimeoutMs is the version's timeout: the most compute the call can be
	// billed, part of its worst case.
	TimeoutMs int64
	At        time.Time
}

// Admission is the answer. When Allowed is false, Reason is fnmarket.ERATELIMITED,
// fnmarket.ESPENDCAP, fnmarket.EPAYMENTREQUIRED or, when the call is limited by
// a cap, credit or standing and the shared state cannot be reached,
// fnmarket.EUNAVAILABLE.
type Admission struct {
	Allowed bool
	Reason  string
	// Rate-limit headers: the limit, what is left in the window and when it resets.
	Limit      int
	Remaining  int
	Reset      time.Duration
	RetryAfter time.Duration
	// CallsBefore is the call's position: how many calls of this function
	// the consumer was admitted before it this month. Its price (free call,
	// tier slot) follows from it (catalog.Pricing.CallCost).
	CallsBefore int64
	// Hold is the call's worst case held against caps and credit until
	// the call is settled; CreditHold is the part of it held from prepaid
	// credit. Both zero when nothing is held.
	Hold, CreditHold decimal.Decimal
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
	// Cost is the call's exact cost (what X-Cost said); Credit the part of
	// it paid from prepaid credit; Free whether the call took a free call.
	Cost   decimal.Decimal
	Credit decimal.Decimal
	Free   bool
	// Settled is false when the call's hold could not be settled in Redis
	// as it ended; the meter settles it when it flushes the call.
	Settled bool
}
