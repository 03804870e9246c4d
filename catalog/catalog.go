// Package catalog owns vendors, functions, their immutable versions and their
// pricing. The price of a call and of a month's usage is computed here only, so
// the gateway's spend cap and billing's invoices agree to the last digit.
//
// The package holds domain types only and imports no database driver, so the
// gateway links none; the relational store is catalog/catalogstore.
package catalog

import "time"

// Vendor is an account that publishes functions under a unique slug.
type Vendor struct {
	ID              string
	AccountID       string
	Slug            string
	DisplayName     string
	StripeAccountID string
	CreatedAt       time.Time
}

// Function is a vendor's named, callable endpoint.
type Function struct {
	ID               string
	VendorID         string
	VendorSlug       string
	Name             string
	Description      string
	PublishedVersion *int
	Versions         []Version
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Version is one immutable revision of what a function runs and costs.
type Version struct {
	FunctionID string
	Version    int
	Backend    Backend
	Pricing    Pricing
	TimeoutMs  int
	// RateLimitPerSecond, when above zero, lowers the per-key rate limit for
	// calls to this version below the gateway's default.
	RateLimitPerSecond int
	EverPublished      bool
	CreatedAt          time.Time
}

// Backend types.
const (
	BackendHTTP = "http"
	BackendWasm = "wasm"
)

// Backend says where a version runs. URL is set for "http" backends. Extra
// carries the rest of the backend document (for kinds added later, such as
// wasm's module_sha256) untouched.
type Backend struct {
	Type         string `json:"type"`
	URL          string `json:"url,omitempty"`
	ModuleSHA256 string `json:"module_sha256,omitempty"`
	MemoryPages  int    `json:"memory_pages,omitempty"`
}

// Timeout bounds, in milliseconds.
const (
	MinTimeoutMs = 10
	MaxTimeoutMs = 300_000
)

// Route is what the gateway needs to run one call: the function, the version
// that answers, and the vendor. Gateways cache it.
type Route struct {
	VendorSlug string
	VendorID   string
	Function   string
	FunctionID string
	Version    Version
}

// NewVersion is what a vendor sends to create a version.
type NewVersion struct {
	Backend            Backend
	Pricing            Pricing
	TimeoutMs          int
	RateLimitPerSecond int
}

// Listing is a published function as the public catalog shows it.
type Listing struct {
	Function
	VendorName string
	Published  Version
}

// FunctionRef names a function by vendor slug and name.
type FunctionRef struct{ VendorSlug, Name string }
