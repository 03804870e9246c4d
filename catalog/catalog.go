// Package catalog owns vendors, functions, their immutable versions and their
// pricing. The price of a call and of a month's usage is computed here only, so
// the gateway's spend cap and billing's invoices agree to the last digit.
package catalog

import (
	"encoding/json"
	"time"
)

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

// Backend says where a version runs; it is stored as the version's backend
// JSON document. URL is set for "http" backends. ModuleSHA256 (the module's
// key in wasm_modules) and MemoryPages (a per-call memory limit in 64 KiB
// pages, 0 for the runtime's default) are set for "wasm" backends.
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

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
