package accounts_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestKeysForTheGateway checks what the gateway's key cache relies on: a key
// is found by the hash of its secret only, revocation is reported by
// KeysChangedSince, and last use only moves forward.
func TestKeysForTheGateway(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := fnmarket.NewTestClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			db := testenv.DB(t, b)
			s := accounts.NewStore(db, clock, bcrypt.MinCost)
			a, err := s.SignUp(ctx, "Key.Owner@Example.com", "Owner", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.SignUp(ctx, "key.owner@example.com", "Again", "correct horse battery"); fnmarket.ErrorCode(err) != fnmarket.ECONFLICT {
				t.Errorf("same email in another case: %v, want conflict", err)
			}
			spendCap := decimal.RequireFromString("12.50")
			k, err := s.CreateKey(ctx, a.ID, "app", &spendCap)
			if err != nil {
				t.Fatal(err)
			}
			var stored string
			if err := db.Raw("SELECT key_hash FROM api_keys WHERE id = ?", k.ID).Scan(&stored).Error; err != nil {
				t.Fatal(err)
			}
			if stored == k.Secret || stored != fnmarket.HashAPIKey(k.Secret) {
				t.Fatal("the key is not stored as the hash of its secret")
			}
			gk, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(k.Secret))
			if err != nil || gk.AccountID != a.ID || gk.Revoked || !gk.MonthlySpendCap.Equal(spendCap) {
				t.Errorf("key by hash: %+v %v", gk, err)
			}
			if _, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(k.Secret+"x")); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Errorf("a wrong secret: %v, want not found", err)
			}

			clock.Advance(time.Minute)
			since := clock.Now()
			if err := s.RevokeKey(ctx, a.ID, k.ID); err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeKey(ctx, a.ID, k.ID); err != nil {
				t.Errorf("revoking twice: %v", err)
			}
			changed, err := s.KeysChangedSince(ctx, since)
			if err != nil || len(changed) != 1 || changed[0] != fnmarket.HashAPIKey(k.Secret) {
				t.Errorf("changed since revoke: %v %v", changed, err)
			}
			if gk, _ := s.KeyByHash(ctx, fnmarket.HashAPIKey(k.Secret)); !gk.Revoked {
				t.Error("revoked key not marked revoked")
			}

			later, earlier := since.Add(time.Hour), since.Add(-time.Hour)
			for _, at := range []time.Time{later, earlier} {
				if err := accounts.TouchKeys(db.DB, map[string]time.Time{k.ID: at}); err != nil {
					t.Fatal(err)
				}
			}
			keys, err := s.Keys(ctx, a.ID)
			if err != nil || len(keys) != 1 || keys[0].LastUsedAt == nil || !keys[0].LastUsedAt.Equal(later) {
				t.Errorf("last used %v, want %v (it only moves forward)", keys[0].LastUsedAt, later)
			}
		})
	}
}

// TestUnknownEmailCostsARealHash checks that a login for an unknown email is
// checked against a hash of the same bcrypt cost as the stored ones, so the
// answer's timing does not tell which emails are registered.
func TestUnknownEmailCostsARealHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.DB(t, testenv.Backends()[0])
	for _, cost := range []int{0, bcrypt.MinCost + 1} {
		s := accounts.NewStore(db, nil, cost)
		email := fmt.Sprintf("cost%d@example.com", cost)
		a, err := s.SignUp(ctx, email, "Cost", "correct horse battery")
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := db.Raw("SELECT password_hash FROM accounts WHERE id = ?", a.ID).Scan(&stored).Error; err != nil {
			t.Fatal(err)
		}
		real, err := bcrypt.Cost([]byte(stored))
		if err != nil {
			t.Fatal(err)
		}
		dummy, err := bcrypt.Cost(s.DummyHash())
		if err != nil {
			t.Fatal(err)
		}
		if dummy != real {
			t.Errorf("store cost %d: unknown emails are checked at cost %d, stored hashes have cost %d", cost, dummy, real)
		}
		if cost == 0 && real != accounts.BcryptCost {
			t.Errorf("default cost %d, want %d", real, accounts.BcryptCost)
		}
		if _, err := s.Authenticate(ctx, "nobody-"+email, "correct horse battery"); fnmarket.ErrorCode(err) != fnmarket.EUNAUTHORIZED {
			t.Errorf("unknown email: %v, want unauthenticated", err)
		}
	}
}
