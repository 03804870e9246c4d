package accounts_test

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

// TestAccountBilling checks the account's billing state as the portal and
// the gateway's key lookup read it: standing without and with payments,
// the account cap, credit granted less credit used (never below zero), and
// every change reported to the gateways' poll.
func TestAccountBilling(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := fnmarket.NewTestClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			db := testenv.DB(t, b)
			s := accounts.NewStore(db, clock, bcrypt.MinCost)
			a, err := s.SignUp(ctx, "payer@example.com", "Payer", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			other, err := s.SignUp(ctx, "other@example.com", "Other", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			k, err := s.CreateKey(ctx, a.ID, "app", nil)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := s.CreateKey(ctx, other.ID, "app", nil)
			if err != nil {
				t.Fatal(err)
			}
			hash, otherHash := fnmarket.HashAPIKey(k.Secret), fnmarket.HashAPIKey(ok.Secret)
			get := func() accounts.Billing {
				t.Helper()
				bl, err := s.Billing(ctx, a.ID)
				if err != nil {
					t.Fatal(err)
				}
				return bl
			}
			changed := func(since time.Time) []string {
				t.Helper()
				hs, err := s.KeysChangedSince(ctx, since)
				if err != nil {
					t.Fatal(err)
				}
				return hs
			}

			// Without payments configured every account is active.
			bl := get()
			if bl.Standing != usage.StandingActive || bl.PaymentMethod != nil || bl.MonthlySpendCap != nil || !bl.Balance().IsZero() || bl.CreditCurrency != "USD" {
				t.Fatalf("a new account: %+v", bl)
			}
			s.SetBillingPolicy(accounts.BillingPolicy{PaymentsEnabled: true, SuspendAfter: 14 * 24 * time.Hour})
			if st := get().Standing; st != usage.StandingFreeOnly {
				t.Fatalf("with payments, no card: %s", st)
			}

			clock.Advance(time.Minute)
			since := clock.Now()
			if hs := changed(since); len(hs) != 0 {
				t.Fatalf("reported before any change: %v", hs)
			}
			spendCap := decimal.RequireFromString("50.00")
			bl, err = s.SetSpendCap(ctx, a.ID, &spendCap)
			if err != nil || bl.MonthlySpendCap == nil || !bl.MonthlySpendCap.Equal(spendCap) {
				t.Fatalf("set cap: %+v %v", bl, err)
			}
			if hs := changed(since); !slices.Contains(hs, hash) || slices.Contains(hs, otherHash) {
				t.Errorf("after the cap changed, reported %v; want the account's key only", hs)
			}

			// Credit: granted in a transaction, once per source.
			clock.Advance(time.Minute)
			since = clock.Now()
			for i := 0; i < 2; i++ {
				granted, err := accounts.GrantCredit(db.DB, accounts.CreditGrant{AccountID: a.ID, Amount: decimal.RequireFromString("20.00"), Currency: "USD", Source: "cs_1"}, clock.Now())
				if err != nil || granted != (i == 0) {
					t.Fatalf("grant %d: %v %v", i, granted, err)
				}
			}
			if hs := changed(since); !slices.Contains(hs, hash) {
				t.Errorf("after credit was granted, reported %v", hs)
			}
			// 1.5 used from credit (pico units), over two rows.
			for i, pico := range []int64{1_000_000_000_000, 500_000_000_000} {
				err := db.Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors, credit_pico)
					VALUES (?, ?, ?, 'fn_1', 1, 1, 1, 0, 0, ?)`, int64(3600*i), a.ID, k.ID, pico).Error
				if err != nil {
					t.Fatal(err)
				}
			}
			bl = get()
			if !bl.CreditGranted.Equal(decimal.RequireFromString("20")) || !bl.CreditConsumed.Equal(decimal.RequireFromString("1.5")) ||
				!bl.Balance().Equal(decimal.RequireFromString("18.5")) {
				t.Errorf("credit: granted %s consumed %s balance %s", bl.CreditGranted, bl.CreditConsumed, bl.Balance())
			}
			if err := db.Exec("UPDATE usage_hourly SET credit_pico = 30000000000000 WHERE consumer_id = ? AND hour_start = 0", a.ID).Error; err != nil {
				t.Fatal(err)
			}
			if bal := get().Balance(); !bal.IsZero() {
				t.Errorf("balance with more used than granted = %s, want 0", bal)
			}

			// A card on file makes the account active.
			clock.Advance(time.Minute)
			since = clock.Now()
			if err := accounts.SetPaymentMethod(db.DB, a.ID, accounts.PaymentMethod{StripeID: "pm_1", Brand: "visa", Last4: "4242"}, clock.Now()); err != nil {
				t.Fatal(err)
			}
			if bl := get(); bl.Standing != usage.StandingActive || bl.PaymentMethod == nil || bl.PaymentMethod.Last4 != "4242" || bl.PaymentMethod.Brand != "visa" {
				t.Errorf("with a card: %+v", bl)
			}
			if hs := changed(since); !slices.Contains(hs, hash) {
				t.Errorf("after the card was stored, reported %v", hs)
			}

			// The gateway's lookup carries all of it.
			gk, err := s.KeyByHash(ctx, hash)
			if err != nil {
				t.Fatal(err)
			}
			ab := gk.Account.Admission()
			if ab.Standing != usage.StandingActive || ab.MonthlySpendCap == nil || !ab.MonthlySpendCap.Equal(spendCap) ||
				!ab.CreditGranted.Equal(decimal.RequireFromString("20")) || !ab.CreditConsumed.Equal(decimal.RequireFromString("30.5")) || ab.CreditCurrency != "USD" {
				t.Errorf("key lookup's account billing: %+v", ab)
			}
			// Removing the cap; the other account is untouched throughout.
			if bl, err := s.SetSpendCap(ctx, a.ID, nil); err != nil || bl.MonthlySpendCap != nil {
				t.Errorf("remove cap: %+v %v", bl, err)
			}
			ob, err := s.Billing(ctx, other.ID)
			if err != nil || ob.MonthlySpendCap != nil || ob.PaymentMethod != nil || !ob.CreditGranted.IsZero() || ob.Standing != usage.StandingFreeOnly {
				t.Errorf("the other account: %+v %v", ob, err)
			}
			// TouchBilling of an id that is no account does nothing.
			if err := accounts.TouchBilling(db.DB, "acc_missing", clock.Now()); err != nil {
				t.Errorf("touch a missing account: %v", err)
			}
		})
	}
}
