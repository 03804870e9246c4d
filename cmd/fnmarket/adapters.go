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
	"github.com/fnmarket/fnmarket/metering"
	"github.com/fnmarket/fnmarket/wasm"
)

// gatewayKeys serves the gateway's key lookups (cache misses only) from the
// accounts store, with the account's billing state; payURL is the portal's
// billing page, where a consumer refused with payment_required adds a card.
type gatewayKeys struct {
	s      *accounts.Store
	payURL string
}

var _ gateway.KeyStore = gatewayKeys{}

func (k gatewayKeys) KeyByHash(ctx context.Context, hash string) (gateway.Key, error) {
	gk, err := k.s.KeyByHash(ctx, hash)
	if err != nil {
		return gateway.Key{}, err
	}
	acc := gk.Account.Admission()
	acc.PayURL = k.payURL
	return gateway.Key{ID: gk.ID, ConsumerID: gk.AccountID, MonthlySpendCap: gk.MonthlySpendCap, Revoked: gk.Revoked, Account: acc,
		ExpiresAt: gk.ExpiresAt, Rotated: gk.Rotated, AllowedFunctions: gk.AllowedFunctions, RateLimitPerSecond: gk.RateLimitPerSecond}, nil
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

// The stores and the biller are the API's dependencies as they are.
var (
	_ api.AccountStore   = (*accounts.Store)(nil)
	_ api.CatalogStore   = (*catalogstore.Store)(nil)
	_ api.FunctionLookup = (*catalogstore.Store)(nil)
	_ api.MeteringStore  = (*metering.Store)(nil)
	_ api.UsageHours     = (*billing.UsageTable)(nil)
	_ api.BillingReader  = (*billing.Biller)(nil)
	_ api.WebhookHandler = (*billing.Biller)(nil)
	_ api.Payments       = (*billing.Biller)(nil)
)

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
