// Package catalog owns vendors, functions, their immutable versions and their
// pricing. The price of a call and of a month's usage is computed here only, so
// the gateway's spend cap and billing's invoices agree to the last digit.
//
// The package holds domain types only and imports no database driver, so the
// gateway links none; the relational store is catalog/catalogstore.
package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// Backend says where a version runs: its kind (Type) and that kind's own
// fields (Spec, a JSON object without "type"), which only the kind reads
// (see package backend). It is stored and shown as one object,
// {"type": Type, ...Spec}, e.g. {"type":"http","url":"https://..."}.
type Backend struct {
	Type string
	Spec json.RawMessage
}

// MarshalJSON writes the backend as one object, "type" first.
func (b Backend) MarshalJSON() ([]byte, error) {
	t, err := json.Marshal(b.Type)
	if err != nil {
		return nil, err
	}
	spec := bytes.TrimSpace(b.Spec)
	if len(spec) < 2 || spec[0] != '{' || spec[len(spec)-1] != '}' {
		if len(spec) != 0 && !bytes.Equal(spec, []byte("null")) {
			return nil, fmt.Errorf("backend spec of type %s is not a JSON object", b.Type)
		}
		spec = []byte("{}")
	}
	inner := bytes.TrimSpace(spec[1 : len(spec)-1])
	out := make([]byte, 0, len(t)+len(inner)+10)
	out = append(out, `{"type":`...)
	out = append(out, t...)
	if len(inner) > 0 {
		out = append(out, ',')
		out = append(out, inner...)
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads a backend object: "type" into Type, every other field
// into Spec.
func (b *Backend) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	var t string
	if raw, ok := fields["type"]; ok {
		if err := json.Unmarshal(raw, &t); err != nil {
			return fmt.Errorf("backend type: %w", err)
		}
		delete(fields, "type")
	}
	spec, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	b.Type, b.Spec = t, spec
	return nil
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
