package billing

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/metering"
)

// picoExp is the exponent of usage_hourly's cost_pico and credit_pico:
// amounts in 1e-12 of the currency.
const picoExp = -12

// UsageHour is one consumer's usage of one function version in one hour,
// summed over keys, with what the gateway charged for it.
//
// Rows the gateway priced (cost_pico set, migration 00009 on) and rows counted
// before it are kept apart: a priced UsageHour carries the sum of its calls'
// X-Cost and free calls, and its Step is taken as it is by
// catalog.PriceMonth; an unpriced one is priced by the rule, its hour's
// versions in ascending order (see doc.go). Both can exist for one hour and
// version.
type UsageHour struct {
	Hour       time.Time
	ConsumerID string
	// KeyID is set only with UsageFilter.PerKey.
	KeyID      string
	FunctionID string
	Version    int
	// Calls counts every call, BillableCalls those that reached the function
	// (the ones priced); Errors the 5xx and timeouts among Calls.
	Calls, BillableCalls, ComputeMs, Errors int64
	// Priced says the gateway priced these calls: FreeCalls and Cost (exact)
	// are what it charged, Credit the part of Cost paid from prepaid credit.
	Priced    bool
	FreeCalls int64
	Cost      decimal.Decimal
	Credit    decimal.Decimal
}

// Step is the hour as a step of its month for catalog.PriceMonth: priced
// hours carry the gateway's price.
func (h UsageHour) Step() catalog.UsageStep {
	s := catalog.UsageStep{Hour: h.Hour, Version: h.Version, Calls: h.BillableCalls, ComputeMs: h.ComputeMs}
	if h.Priced {
		s.Priced = &catalog.StepPrice{FreeCalls: h.FreeCalls, Cost: h.Cost}
	}
	return s
}

// UsageHourFromRow converts a meter's row (such as live, not yet rolled-up
// usage) into a UsageHour.
func UsageHourFromRow(r metering.UsageRow) UsageHour {
	return UsageHour{Hour: r.HourStart.UTC().Truncate(time.Hour), ConsumerID: r.ConsumerID, FunctionID: r.FunctionID, Version: r.Version,
		Calls: r.Calls, BillableCalls: r.BillableCalls, ComputeMs: r.ComputeMs, Errors: r.Errors,
		Priced: r.Priced, FreeCalls: r.FreeCalls, Cost: decimal.New(r.CostPico, picoExp), Credit: decimal.New(r.CreditPico, picoExp)}
}

// UsageFilter selects hours of usage_hourly: [From, To) of one consumer, or
// of a set of functions (FunctionIDs non-nil), or both.
type UsageFilter struct {
	From, To    time.Time
	ConsumerID  string
	FunctionIDs []string
	// PerKey keeps the consumer's keys apart instead of summing over them.
	PerKey bool
}

// UsageTable reads usage_hourly with its prices: the one reader billing and
// the API's usage rows share, so every view sums the same figures.
type UsageTable struct{ db *database.DB }

// NewUsageTable returns a UsageTable over db.
func NewUsageTable(db *database.DB) *UsageTable { return &UsageTable{db: db} }

// Hours sums usage_hourly over keys per hour, consumer, function version and
// whether the gateway priced the rows, ordered by hour, consumer, function,
// version, unpriced before priced.
func (u *UsageTable) Hours(ctx context.Context, f UsageFilter) ([]UsageHour, error) {
	if f.ConsumerID == "" && f.FunctionIDs == nil {
		return nil, fnmarket.Errorf(fnmarket.EINVALID, "usage needs a consumer or a set of functions")
	}
	if f.FunctionIDs != nil && len(f.FunctionIDs) == 0 {
		return []UsageHour{}, nil
	}
	return usageHours(ctx, u.db.DB, f)
}

// pricedExpr is 1 for rows the gateway priced, 0 for rows counted before.
const pricedExpr = "CASE WHEN cost_pico IS NULL THEN 0 ELSE 1 END"

func usageHours(ctx context.Context, db *gorm.DB, f UsageFilter) ([]UsageHour, error) {
	key, group := "'' AS key_id, ", "hour_start, consumer_id, function_id, version, "
	if f.PerKey {
		key, group = "key_id, ", "hour_start, consumer_id, key_id, function_id, version, "
	}
	q := db.WithContext(ctx).Table("usage_hourly").
		Select("hour_start, consumer_id, "+key+"function_id, version, "+pricedExpr+" AS priced, "+
			"CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(billable_calls) AS BIGINT) AS billable_calls, "+
			"CAST(SUM(compute_ms) AS BIGINT) AS compute_ms, CAST(SUM(errors) AS BIGINT) AS errors, "+
			"CAST(SUM(free_calls) AS BIGINT) AS free_calls, CAST(COALESCE(SUM(cost_pico), 0) AS BIGINT) AS cost_pico, "+
			"CAST(SUM(credit_pico) AS BIGINT) AS credit_pico").
		Where("hour_start >= ?", f.From.Unix())
	if !f.To.IsZero() {
		q = q.Where("hour_start < ?", f.To.Unix())
	}
	if f.ConsumerID != "" {
		q = q.Where("consumer_id = ?", f.ConsumerID)
	}
	if f.FunctionIDs != nil {
		q = q.Where("function_id IN ?", f.FunctionIDs)
	}
	var rows []struct {
		HourStart                               int64
		ConsumerID, KeyID, FunctionID           string
		Version                                 int
		Priced                                  int
		Calls, BillableCalls, ComputeMs, Errors int64
		FreeCalls, CostPico, CreditPico         int64
	}
	err := q.Group(group + pricedExpr).
		Order("hour_start, consumer_id, function_id, version, priced, key_id").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("sum usage from %s: %w", f.From.UTC().Format(time.RFC3339), err)
	}
	out := make([]UsageHour, len(rows))
	for i, r := range rows {
		out[i] = UsageHour{Hour: unix(r.HourStart), ConsumerID: r.ConsumerID, KeyID: r.KeyID, FunctionID: r.FunctionID, Version: r.Version,
			Calls: r.Calls, BillableCalls: r.BillableCalls, ComputeMs: r.ComputeMs, Errors: r.Errors,
			Priced: r.Priced == 1, FreeCalls: r.FreeCalls, Cost: decimal.New(r.CostPico, picoExp), Credit: decimal.New(r.CreditPico, picoExp)}
	}
	return out, nil
}
