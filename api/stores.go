package api

import (
	"context"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/alerts"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/metering"
)

// The stores the API reads and writes, as the methods it calls. Each lives
// here, with its one user; the implementations (accounts.Store,
// catalogstore.Store, metering.Store) are checked against them where the
// program is wired (cmd/fnmarket/adapters.go).

// AccountStore keeps accounts, their passwords and their API keys.
type AccountStore interface {
	SignUp(ctx context.Context, email, name, password string) (accounts.Account, error)
	Authenticate(ctx context.Context, email, password string) (accounts.Account, error)
	ChangePassword(ctx context.Context, id, current, next string) (accounts.Account, error)
	Account(ctx context.Context, id string) (accounts.Account, error)
	CreateKey(ctx context.Context, accountID, name string, spendCap *decimal.Decimal) (accounts.APIKey, error)
	CreateKeyWith(ctx context.Context, accountID string, nk accounts.NewKey) (accounts.APIKey, error)
	RotateKey(ctx context.Context, accountID, id string, grace time.Duration) (accounts.APIKey, error)
	UpdateKey(ctx context.Context, accountID, id string, edit func(*accounts.NewKey)) (accounts.APIKey, error)
	Keys(ctx context.Context, accountID string) ([]accounts.APIKey, error)
	RevokeKey(ctx context.Context, accountID, id string) error
	// Billing and SetSpendCap read and change the account's billing state
	// (standing, card, prepaid balance, account cap).
	Billing(ctx context.Context, accountID string) (accounts.Billing, error)
	SetSpendCap(ctx context.Context, accountID string, spendCap *decimal.Decimal) (accounts.Billing, error)
	// SetAlertThresholds sets the percents of the account's cap that raise
	// usage.threshold_reached (nil: the default).
	SetAlertThresholds(ctx context.Context, accountID string, thresholds []int) (accounts.Billing, error)
}

// AuditLog records and lists the audit log (an *audit.Log).
type AuditLog interface {
	audit.Recorder
	// RecordFailedLogin records a wrong password for email under the account
	// that has it, if any.
	RecordFailedLogin(ctx context.Context, email, ip string) error
	List(ctx context.Context, accountID, cursor string, limit int) ([]audit.Entry, string, error)
}

// ErrorAlerts keeps vendors' error-rate alerts (an *alerts.Checker); the
// API checks the function is the caller's first.
type ErrorAlerts interface {
	SetErrorAlert(ctx context.Context, a alerts.ErrorAlert) error
	ErrorAlert(ctx context.Context, functionID string) (alerts.ErrorAlert, error)
	DeleteErrorAlert(ctx context.Context, functionID string) error
}

// CatalogStore keeps vendors, their functions and versions, and the public
// listings.
type CatalogStore interface {
	CreateVendor(ctx context.Context, accountID, slug, displayName string) (catalog.Vendor, error)
	VendorByAccount(ctx context.Context, accountID string) (catalog.Vendor, error)
	CreateFunction(ctx context.Context, v catalog.Vendor, name, description string, nv catalog.NewVersion) (catalog.Function, error)
	Functions(ctx context.Context, v catalog.Vendor) ([]catalog.Function, error)
	Function(ctx context.Context, v catalog.Vendor, id string) (catalog.Function, error)
	UpdateDescription(ctx context.Context, v catalog.Vendor, id, description string) (catalog.Function, error)
	AddVersion(ctx context.Context, v catalog.Vendor, id string, nv catalog.NewVersion) (catalog.Version, error)
	Publish(ctx context.Context, v catalog.Vendor, id string, version int) (catalog.Function, error)
	Unpublish(ctx context.Context, v catalog.Vendor, id string) (catalog.Function, error)
	Search(ctx context.Context, q, after string, limit int) ([]catalog.Listing, error)
	Listing(ctx context.Context, vendorSlug, name string) (catalog.Listing, error)
	Route(ctx context.Context, vendorSlug, name string, version int) (catalog.Route, error)
}

// MeteringStore reads the meter's latency histograms, for UsageReport (usage
// rows come from UsageHours).
type MeteringStore interface {
	Latency(ctx context.Context, functionID string, from, to time.Time) ([]metering.LatencyHour, error)
}

// UsageHours reads hourly usage with what the gateway charged for it, for
// UsageReport (a *billing.UsageTable: invoices read the same sums).
type UsageHours interface {
	Hours(ctx context.Context, f billing.UsageFilter) ([]billing.UsageHour, error)
}

// FunctionLookup finds functions by id whoever sells them, for UsageReport.
type FunctionLookup interface {
	FunctionsByID(ctx context.Context, ids []string) (map[string]catalog.Function, error)
}
