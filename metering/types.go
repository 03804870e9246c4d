package metering

import (
	"time"

	"github.com/fnmarket/fnmarket/usage"
)

// The call and admission types live in package usage, which links no driver
// (the gateway uses them); these aliases keep metering's names.
type (
	// Caller is usage.Caller.
	Caller = usage.Caller
	// AdmissionRequest is usage.AdmissionRequest.
	AdmissionRequest = usage.AdmissionRequest
	// Admission is usage.Admission.
	Admission = usage.Admission
	// Call is usage.Call.
	Call = usage.Call
)

// HistogramBounds are the upper bounds, in compute-ms, of the coarse latency
// histogram kept per usage row (the last bucket is "above 30000").
var HistogramBounds = []int64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}

// UsageRow is one consumer's usage of one function version in one hour.
type UsageRow struct {
	HourStart     time.Time
	ConsumerID    string
	KeyID         string
	FunctionID    string
	Version       int
	Calls         int64
	BillableCalls int64
	ComputeMs     int64
	Errors        int64
	// FreeCalls are the billable calls that took a free call; CostPico the
	// exact cost of the row's billable calls as the gateway priced them
	// (the sum of their X-Cost, in 1e-12 of the currency), CreditPico the
	// part of it paid from prepaid credit. Rows counted before migration
	// 00009 carry no prices: Priced is false and views price them with
	// catalog.PriceMonth.
	FreeCalls  int64
	CostPico   int64
	CreditPico int64
	Priced     bool
	// Histogram counts calls per HistogramBounds bucket, plus one overflow bucket.
	Histogram []int64
}
