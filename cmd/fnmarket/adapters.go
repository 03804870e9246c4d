package main

import (
	"context"
	"time"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/wasm"
)

// gatewayKeys serves the gateway's key lookups (cache misses only) from the
// accounts store.
type gatewayKeys struct{ s *accounts.Store }

var _ gateway.KeyStore = gatewayKeys{}

func (k gatewayKeys) KeyByHash(ctx context.Context, hash string) (gateway.Key, error) {
	gk, err := k.s.KeyByHash(ctx, hash)
	if err != nil {
		return gateway.Key{}, err
	}
	return gateway.Key{ID: gk.ID, ConsumerID: gk.AccountID, MonthlySpendCap: gk.MonthlySpendCap, Revoked: gk.Revoked}, nil
}

func (k gatewayKeys) KeysChangedSince(ctx context.Context, since time.Time) ([]string, error) {
	return k.s.KeysChangedSince(ctx, since)
}

// gatewayRoutes serves the gateway's route lookups from the catalog.
type gatewayRoutes struct{ s *catalogstore.Store }

var _ gateway.RouteStore = gatewayRoutes{}

func (r gatewayRoutes) Route(ctx context.Context, vendorSlug, name string, version int) (catalog.Route, error) {
	return r.s.Route(ctx, vendorSlug, name, version)
}

func (r gatewayRoutes) FunctionsChangedSince(ctx context.Context, since time.Time) ([]gateway.FunctionRef, error) {
	refs, err := r.s.FunctionsChangedSince(ctx, since)
	if err != nil {
		return nil, err
	}
	out := make([]gateway.FunctionRef, len(refs))
	for i, f := range refs {
		out[i] = gateway.FunctionRef{VendorSlug: f.VendorSlug, Name: f.Name}
	}
	return out, nil
}

// billingAPI serves the portal's billing reads from the biller, in the
// API's list envelope.
type billingAPI struct{ b *billing.Biller }

var _ api.BillingReader = billingAPI{}
var _ api.WebhookHandler = (*billing.Biller)(nil)

type listOf[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func (b billingAPI) Invoices(ctx context.Context, consumerID string) (any, error) {
	inv, err := b.b.Invoices(ctx, consumerID)
	if inv == nil {
		inv = []billing.Invoice{}
	}
	return listOf[billing.Invoice]{Items: inv}, err
}

func (b billingAPI) Invoice(ctx context.Context, consumerID, id string) (any, error) {
	return b.b.Invoice(ctx, consumerID, id)
}

// Upcoming answers the running month's preview in the first currency (USD
// first); previews in further currencies follow under "other_currencies".
func (b billingAPI) Upcoming(ctx context.Context, consumerID string) (any, error) {
	inv, err := b.b.Upcoming(ctx, consumerID)
	if err != nil {
		return nil, err
	}
	if len(inv) == 1 {
		return inv[0], nil
	}
	return struct {
		billing.Invoice
		OtherCurrencies []billing.Invoice `json:"other_currencies"`
	}{inv[0], inv[1:]}, nil
}

func (b billingAPI) Statements(ctx context.Context, vendorID string) (any, error) {
	st, err := b.b.Statements(ctx, vendorID)
	if st == nil {
		st = []billing.Statement{}
	}
	return listOf[billing.Statement]{Items: st}, err
}

func (b billingAPI) OnboardVendor(ctx context.Context, vendorID, returnURL string) (string, error) {
	return b.b.OnboardVendor(ctx, vendorID, returnURL)
}

// wasmLogs reads function logs the gateways keep in Redis.
type wasmLogs struct{ l *wasm.RedisLogs }

var _ api.FunctionLogReader = wasmLogs{}

func (w wasmLogs) Lines(ctx context.Context, functionID string, version int) ([]api.FunctionLogLine, error) {
	lines, err := w.l.Lines(ctx, functionID, version)
	out := make([]api.FunctionLogLine, len(lines))
	for i, l := range lines {
		out[i] = api.FunctionLogLine{Time: l.Time.UTC(), InvocationID: l.InvocationID, Source: l.Source, Text: l.Text}
	}
	return out, err
}
