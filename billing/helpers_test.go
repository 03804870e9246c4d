package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// jan and feb are the months most tests bill; nothing depends on today.
var (
	jan = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	feb = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	mar = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
)

type fixture struct {
	t        testing.TB
	ctx      context.Context
	db       *database.DB
	clock    *fnmarket.TestClock
	catalog  *catalogstore.Store
	accounts *accounts.Store
	biller   *Biller
	n        int
}

// newFixture opens a migrated database on backend be and a Biller over it;
// tune adjusts the Config before the Biller is built.
func newFixture(t testing.TB, be testenv.Backend, tune func(*Config)) *fixture {
	t.Helper()
	db := testenv.DB(t, be)
	clock := fnmarket.NewTestClock(feb.Add(3 * 24 * time.Hour))
	f := &fixture{t: t, ctx: context.Background(), db: db, clock: clock,
		catalog: catalogstore.NewStore(db, clock), accounts: accounts.NewStore(db, clock, bcrypt.MinCost)}
	cfg := Config{DB: db, Catalog: f.catalog, Accounts: f.accounts, Clock: clock, Logger: testLogger(t)}
	if tune != nil {
		tune(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("new biller: %v", err)
	}
	f.biller = b
	return f
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("BILLING_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// consumer signs up an account and returns its id.
func (f *fixture) consumer(name string) string {
	f.t.Helper()
	f.n++
	a, err := f.accounts.SignUp(f.ctx, fmt.Sprintf("%s-%d@example.com", name, f.n), name, "correct horse battery")
	if err != nil {
		f.t.Fatalf("sign up %s: %v", name, err)
	}
	return a.ID
}

// vendor makes a new account a vendor with slug.
func (f *fixture) vendor(slug string) catalog.Vendor {
	f.t.Helper()
	acc := f.consumer(slug)
	v, err := f.catalog.CreateVendor(f.ctx, acc, slug, slug)
	if err != nil {
		f.t.Fatalf("create vendor %s: %v", slug, err)
	}
	return v
}

// function creates a function whose versions 1..n have the given pricing.
func (f *fixture) function(v catalog.Vendor, name string, versions ...catalog.Pricing) string {
	f.t.Helper()
	nv := func(p catalog.Pricing) catalog.NewVersion {
		return catalog.NewVersion{Backend: catalog.Backend{Type: "http", Spec: json.RawMessage(`{"url":"https://example.com/` + name + `"}`)}, Pricing: p, TimeoutMs: 1000}
	}
	fn, err := f.catalog.CreateFunction(f.ctx, v, name, "", nv(versions[0]))
	if err != nil {
		f.t.Fatalf("create function %s: %v", name, err)
	}
	for _, p := range versions[1:] {
		if _, err := f.catalog.AddVersion(f.ctx, v, fn.ID, nv(p)); err != nil {
			f.t.Fatalf("add version to %s: %v", name, err)
		}
	}
	return fn.ID
}

// usage adds usage to usage_hourly as the roll-up would: counters only grow.
func (f *fixture) usage(hour time.Time, consumer, fn string, version int, billable, computeMs int64) {
	f.t.Helper()
	h := hour.UTC().Truncate(time.Hour).Unix()
	err := f.db.WithContext(f.ctx).Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)
		ON CONFLICT (hour_start, consumer_id, key_id, function_id, version) DO UPDATE SET
		calls = usage_hourly.calls + excluded.calls, billable_calls = usage_hourly.billable_calls + excluded.billable_calls,
		compute_ms = usage_hourly.compute_ms + excluded.compute_ms`,
		h, consumer, "key_test", fn, version, billable+1, billable, computeMs).Error
	if err != nil {
		f.t.Fatalf("add usage: %v", err)
	}
}

func (f *fixture) bill(period time.Time, opts Options) Report {
	f.t.Helper()
	rep, err := f.biller.BillPeriod(f.ctx, period, opts)
	if err != nil {
		f.t.Fatalf("bill %s: %v", period.Format("2006-01"), err)
	}
	return rep
}

func (f *fixture) invoices(consumer string) []Invoice {
	f.t.Helper()
	invs, err := f.biller.Invoices(f.ctx, consumer)
	if err != nil {
		f.t.Fatalf("invoices of %s: %v", consumer, err)
	}
	return invs
}

// only returns the consumer's single invoice for period.
func (f *fixture) only(consumer string, period time.Time) Invoice {
	f.t.Helper()
	var out []Invoice
	for _, inv := range f.invoices(consumer) {
		if inv.PeriodStart.Equal(period) {
			out = append(out, inv)
		}
	}
	if len(out) != 1 {
		f.t.Fatalf("consumer %s has %d invoices for %s, want 1", consumer, len(out), period.Format("2006-01"))
	}
	return out[0]
}

func (f *fixture) count(table string) int64 {
	f.t.Helper()
	var n int64
	if err := f.db.WithContext(f.ctx).Table(table).Count(&n).Error; err != nil {
		f.t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func usd(perCall, perMs string, free int64) catalog.Pricing {
	return catalog.Pricing{Currency: "USD", PerCall: decimal.RequireFromString(perCall), PerComputeMs: decimal.RequireFromString(perMs), FreeCallsPerMonth: free}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func wantCode(t testing.TB, err error, code string) {
	t.Helper()
	var e *fnmarket.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("error = %v, want an *fnmarket.Error with code %s", err, code)
	}
}

func eachBackend(t *testing.T, run func(t *testing.T, be testenv.Backend)) {
	for _, be := range testenv.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			run(t, be)
		})
	}
}
