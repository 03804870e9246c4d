package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/usage"
)

// TestGatewayKeysCarryAccountBilling: the gateway's key lookup brings the
// account's standing, cap, credit and the page to pay on, and a change of
// the account's billing is reported for its keys.
func TestGatewayKeysCarryAccountBilling(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := fnmarket.NewTestClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	s := accounts.NewStore(testenv.DB(t, testenv.Backends()[0]), clock, bcrypt.MinCost)
	s.SetBillingPolicy(accounts.BillingPolicy{PaymentsEnabled: true, SuspendAfter: 14 * 24 * time.Hour})
	a, err := s.SignUp(ctx, "payer@example.com", "Payer", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateKey(ctx, a.ID, "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	gk := gatewayKeys{s: s, payURL: "https://portal.test/billing"}
	hash := fnmarket.HashAPIKey(k.Secret)
	key, err := gk.KeyByHash(ctx, hash)
	if err != nil || key.ConsumerID != a.ID || key.Account.Standing != usage.StandingFreeOnly || key.Account.PayURL != "https://portal.test/billing" ||
		key.Account.MonthlySpendCap != nil || key.Account.CreditCurrency != "USD" {
		t.Fatalf("key = %+v, %v", key, err)
	}
	clock.Advance(time.Second)
	since := clock.Now()
	c := decimal.RequireFromString("25")
	if _, err := s.SetSpendCap(ctx, a.ID, &c); err != nil {
		t.Fatal(err)
	}
	if hs, err := gk.KeysChangedSince(ctx, since); err != nil || !slices.Contains(hs, hash) {
		t.Errorf("changed since the cap was set: %v %v", hs, err)
	}
	if key, err = gk.KeyByHash(ctx, hash); err != nil || key.Account.MonthlySpendCap == nil || !key.Account.MonthlySpendCap.Equal(c) {
		t.Errorf("key after the cap = %+v, %v", key.Account, err)
	}
}
