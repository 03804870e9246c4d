// Package alerts raises the events that watch usage rather than follow one
// action: usage.threshold_reached (a key's or an account's month-to-date
// spend reached a percent of its cap) and function.error_rate_high (a
// function's error rate over a window reached the percent its vendor set).
//
// The worker runs Checker.Run after each roll-up pass. Both checks read the
// database only (rolled-up usage_hourly), so every worker, replica or
// restart computes the same facts; each event is enqueued with a DedupeKey
// naming its scope, period and threshold, and the outbox's unique index
// (webhooks.Enqueue) makes it happen exactly once however many checkers run
// at once or again:
//
//   - threshold:key:<key id>:<YYYYMM>:<percent> and
//     threshold:account:<account id>:<YYYYMM>:<percent>;
//   - error_rate:<function id>:<window start, Unix seconds>, the window being
//     the current multiple of window_minutes since the Unix epoch.
//
// Spend is SUM(usage_hourly.cost_pico) over the UTC month, what the gateway
// charged (rows metered before prices were recorded count as zero), against
// api_keys.monthly_spend_cap and account_billing.monthly_spend_cap. A burst
// that crosses several thresholds at once raises each of them once.
package alerts

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/webhooks"
)

// ThresholdData is the data of usage.threshold_reached.
type ThresholdData struct {
	// Scope is "key" or "account".
	Scope string `json:"scope"`
	// KeyID is set for scope "key".
	KeyID            string `json:"key_id,omitempty"`
	ThresholdPercent int    `json:"threshold_percent"`
	// MonthToDate is the month's spend when the check saw the threshold
	// reached (exact decimal), Cap the cap it is a percent of.
	MonthToDate string `json:"month_to_date"`
	Cap         string `json:"cap"`
}

// ErrorRateData is the data of function.error_rate_high.
type ErrorRateData struct {
	FunctionID    string `json:"function_id"`
	ThresholdPct  int    `json:"threshold_percent"`
	WindowMinutes int    `json:"window_minutes"`
	WindowStart   string `json:"window_start"`
	Calls         int64  `json:"calls"`
	Errors        int64  `json:"errors"`
	ErrorRatePct  string `json:"error_rate_percent"`
	HoursFrom     string `json:"usage_from"`
	HoursTo       string `json:"usage_to"`
}

// Checker runs the checks.
type Checker struct {
	db    *database.DB
	clock fnmarket.Clock
}

// NewChecker returns a Checker over db; a nil clock is the system clock.
func NewChecker(db *database.DB, clock fnmarket.Clock) *Checker {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &Checker{db: db, clock: clock}
}

// Report says what one Run enqueued (events another checker wrote first
// are not counted).
type Report struct {
	Thresholds, ErrorRates int
}

// Run checks every cap and every error-rate alert once.
func (c *Checker) Run(ctx context.Context) (Report, error) {
	var rep Report
	n, err1 := c.Thresholds(ctx)
	rep.Thresholds = n
	m, err2 := c.ErrorRates(ctx)
	rep.ErrorRates = m
	return rep, errors.Join(err1, err2)
}

type spendRow struct {
	ID        string
	AccountID string
	Cap       *string
	Alerts    *string
	Pico      string
}

// Thresholds raises usage.threshold_reached for every key and account whose
// month-to-date spend reached one of its thresholds, and reports how many
// events it wrote.
func (c *Checker) Thresholds(ctx context.Context) (int, error) {
	now := c.clock.Now().UTC()
	from := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 1, 0)
	month := from.Format("200601")
	db := c.db.WithContext(ctx)
	// SUM of a BIGINT is NUMERIC on PostgreSQL: read as text, exact either way.
	var keys []spendRow
	err := db.Raw(`SELECT k.id, k.account_id, k.monthly_spend_cap AS cap, k.alert_thresholds AS alerts,
		CAST(COALESCE(SUM(u.cost_pico), 0) AS TEXT) AS pico
		FROM api_keys k JOIN usage_hourly u ON u.key_id = k.id AND u.hour_start >= ? AND u.hour_start < ?
		WHERE k.monthly_spend_cap IS NOT NULL GROUP BY k.id, k.account_id, k.monthly_spend_cap, k.alert_thresholds`,
		from.Unix(), to.Unix()).Scan(&keys).Error
	if err != nil {
		return 0, fnmarket.Wrap("read keys' month-to-date spend", err)
	}
	var accts []spendRow
	err = db.Raw(`SELECT b.account_id AS id, b.account_id, b.monthly_spend_cap AS cap, b.alert_thresholds AS alerts,
		CAST(COALESCE(SUM(u.cost_pico), 0) AS TEXT) AS pico
		FROM account_billing b JOIN usage_hourly u ON u.consumer_id = b.account_id AND u.hour_start >= ? AND u.hour_start < ?
		WHERE b.monthly_spend_cap IS NOT NULL GROUP BY b.account_id, b.monthly_spend_cap, b.alert_thresholds`,
		from.Unix(), to.Unix()).Scan(&accts).Error
	if err != nil {
		return 0, fnmarket.Wrap("read accounts' month-to-date spend", err)
	}
	written := 0
	var errs []error
	for scope, rows := range map[string][]spendRow{"key": keys, "account": accts} {
		for _, r := range rows {
			n, err := c.raise(ctx, scope, r, month, now)
			written += n
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return written, errors.Join(errs...)
}

// raise enqueues the thresholds r's spend has reached, in one transaction.
func (c *Checker) raise(ctx context.Context, scope string, r spendRow, month string, now time.Time) (int, error) {
	capd, err1 := decimal.NewFromString(*r.Cap)
	pico, err2 := decimal.NewFromString(r.Pico)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s %s: %w", scope, r.ID, err)
	}
	if !capd.IsPositive() {
		// A zero cap admits nothing: there is nothing to warn about.
		return 0, nil
	}
	spend := pico.Shift(-12)
	var reached []int
	for _, t := range accounts.ParseAlertThresholds(r.Alerts) {
		if spend.Mul(decimal.NewFromInt(100)).GreaterThanOrEqual(capd.Mul(decimal.NewFromInt(int64(t)))) {
			reached = append(reached, t)
		}
	}
	if len(reached) == 0 {
		return 0, nil
	}
	written := 0
	err := c.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		written = 0
		for _, t := range reached {
			d := ThresholdData{Scope: scope, ThresholdPercent: t, MonthToDate: money(spend), Cap: money(capd)}
			if scope == "key" {
				d.KeyID = r.ID
			}
			_, ok, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: r.AccountID, Type: webhooks.TypeThresholdReached, Data: d,
				DedupeKey: "threshold:" + scope + ":" + r.ID + ":" + month + ":" + strconv.Itoa(t)}, now)
			if err != nil {
				return err
			}
			if ok {
				written++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("raise thresholds of %s %s: %w", scope, r.ID, err)
	}
	return written, nil
}

// money writes an exact amount with at least two decimals ("1.20",
// "0.000214").
func money(d decimal.Decimal) string {
	// String drops trailing zeros (cost_pico carries twelve).
	n := decimal.RequireFromString(d.String())
	return n.StringFixed(max(2, -n.Exponent()))
}

// ErrorAlert is a vendor's error-rate alert on one function.
type ErrorAlert struct {
	FunctionID    string
	Percent       int
	WindowMinutes int
}

type errorAlertRow struct {
	FunctionID    string    `gorm:"column:function_id;primaryKey"`
	Percent       int       `gorm:"column:percent"`
	WindowMinutes int       `gorm:"column:window_minutes"`
	UpdatedAt     time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (errorAlertRow) TableName() string { return "function_error_alerts" }

// MaxWindowMinutes bounds an error-rate window (a week).
const MaxWindowMinutes = 7 * 24 * 60

// CheckErrorAlert says whether a is a valid setting: percent 1..100, window
// 60 minutes (usage is rolled up by the hour) to MaxWindowMinutes, in whole
// hours.
func CheckErrorAlert(a ErrorAlert) error {
	fields := map[string]string{}
	if a.Percent < 1 || a.Percent > 100 {
		fields["percent"] = "must be a whole percent from 1 to 100"
	}
	if a.WindowMinutes < 60 || a.WindowMinutes > MaxWindowMinutes || a.WindowMinutes%60 != 0 {
		fields["window_minutes"] = fmt.Sprintf("must be whole hours from 60 to %d minutes", MaxWindowMinutes)
	}
	if len(fields) > 0 {
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the error-rate alert is not valid", Fields: fields}
	}
	return nil
}

// SetErrorAlert sets (replaces) a function's error-rate alert. The caller
// checks the function is the vendor's.
func (c *Checker) SetErrorAlert(ctx context.Context, a ErrorAlert) error {
	if err := CheckErrorAlert(a); err != nil {
		return err
	}
	err := c.db.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "function_id"}},
		DoUpdates: clause.AssignmentColumns([]string{"percent", "window_minutes", "updated_at"})}).
		Create(&errorAlertRow{FunctionID: a.FunctionID, Percent: a.Percent, WindowMinutes: a.WindowMinutes, UpdatedAt: c.clock.Now().UTC()}).Error
	return fnmarket.Wrap("set error-rate alert of "+a.FunctionID, err)
}

// ErrorAlert returns a function's alert; ENOTFOUND when it has none.
func (c *Checker) ErrorAlert(ctx context.Context, functionID string) (ErrorAlert, error) {
	var r errorAlertRow
	err := c.db.WithContext(ctx).Where("function_id = ?", functionID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrorAlert{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "function %s has no error-rate alert", functionID)
	}
	if err != nil {
		return ErrorAlert{}, fnmarket.Wrap("read error-rate alert", err)
	}
	return ErrorAlert{FunctionID: r.FunctionID, Percent: r.Percent, WindowMinutes: r.WindowMinutes}, nil
}

// DeleteErrorAlert removes a function's alert (none is fine).
func (c *Checker) DeleteErrorAlert(ctx context.Context, functionID string) error {
	return fnmarket.Wrap("delete error-rate alert", c.db.WithContext(ctx).Where("function_id = ?", functionID).Delete(&errorAlertRow{}).Error)
}

// ErrorRates raises function.error_rate_high for every function whose
// errors over calls, in the rolled-up hours of its window, reached its
// alert's percent: once per function and window. The window is the current
// multiple of window_minutes since the epoch; its usage is the whole hours
// from the window's start to now.
func (c *Checker) ErrorRates(ctx context.Context) (int, error) {
	now := c.clock.Now().UTC()
	db := c.db.WithContext(ctx)
	var alerts []struct {
		FunctionID    string
		Percent       int
		WindowMinutes int
		AccountID     string
	}
	err := db.Raw(`SELECT a.function_id, a.percent, a.window_minutes, v.account_id FROM function_error_alerts a
		JOIN functions f ON f.id = a.function_id JOIN vendors v ON v.id = f.vendor_id ORDER BY a.function_id`).Scan(&alerts).Error
	if err != nil {
		return 0, fnmarket.Wrap("read error-rate alerts", err)
	}
	written := 0
	var errs []error
	for _, a := range alerts {
		w := int64(a.WindowMinutes) * 60
		if w <= 0 {
			continue
		}
		start := now.Unix() / w * w
		var sum struct{ Calls, Errors int64 }
		err := db.Raw(`SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS calls, CAST(COALESCE(SUM(errors), 0) AS BIGINT) AS errors
			FROM usage_hourly WHERE function_id = ? AND hour_start >= ? AND hour_start < ?`, a.FunctionID, start/3600*3600, now.Unix()).Scan(&sum).Error
		if err != nil {
			errs = append(errs, fnmarket.Wrap("read error rate of "+a.FunctionID, err))
			continue
		}
		if sum.Calls == 0 || sum.Errors*100 < int64(a.Percent)*sum.Calls {
			continue
		}
		rate := decimal.NewFromInt(sum.Errors*100).DivRound(decimal.NewFromInt(sum.Calls), 2)
		d := ErrorRateData{FunctionID: a.FunctionID, ThresholdPct: a.Percent, WindowMinutes: a.WindowMinutes,
			WindowStart: time.Unix(start, 0).UTC().Format(time.RFC3339), Calls: sum.Calls, Errors: sum.Errors, ErrorRatePct: rate.String(),
			HoursFrom: time.Unix(start/3600*3600, 0).UTC().Format(time.RFC3339), HoursTo: now.Format(time.RFC3339)}
		_, ok, err := webhooks.Enqueue(db, webhooks.Event{AccountID: a.AccountID, Type: webhooks.TypeErrorRateHigh, Data: d,
			DedupeKey: "error_rate:" + a.FunctionID + ":" + strconv.FormatInt(start, 10)}, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			written++
		}
	}
	return written, errors.Join(errs...)
}
