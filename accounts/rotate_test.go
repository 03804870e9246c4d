package accounts_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestKeyLimitsAndRotation: a key's expiry, scopes and rate limit are
// stored and reach the gateway; rotation keeps the id, finds both secrets
// during the grace (the old one with the grace's end as its expiry), ends an
// earlier grace on a second rotation, and reports every hash involved to
// KeysChangedSince; revoking revokes both; another account's key is not
// found.
func TestKeyLimitsAndRotation(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := fnmarket.NewTestClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			db := testenv.DB(t, b)
			s := accounts.NewStore(db, clock, bcrypt.MinCost)
			a, err := s.SignUp(ctx, "rot@example.com", "Rot", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			other, err := s.SignUp(ctx, "other@example.com", "Other", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			expires := clock.Now().Add(48 * time.Hour)
			k, err := s.CreateKeyWith(ctx, a.ID, accounts.NewKey{Name: "app", ExpiresAt: &expires,
				AllowedFunctions: []string{"acme/greet", "acme/sum"}, RateLimitPerSecond: 7})
			if err != nil {
				t.Fatal(err)
			}
			gk, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(k.Secret))
			if err != nil || gk.Rotated || gk.ExpiresAt == nil || !gk.ExpiresAt.Equal(expires) || gk.RateLimitPerSecond != 7 ||
				!slices.Equal(gk.AllowedFunctions, []string{"acme/greet", "acme/sum"}) {
				t.Fatalf("key by hash: %+v %v", gk, err)
			}

			if _, err := s.RotateKey(ctx, other.ID, k.ID, time.Hour); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Errorf("rotating another account's key: %v, want not found", err)
			}
			clock.Advance(time.Minute)
			since := clock.Now()
			r1, err := s.RotateKey(ctx, a.ID, k.ID, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if r1.ID != k.ID || r1.Secret == "" || r1.Secret == k.Secret || r1.Prefix == k.Prefix || r1.RateLimitPerSecond != 7 {
				t.Errorf("rotated key %+v, want the same id with a new secret and prefix", r1)
			}
			graceEnd := clock.Now().Add(time.Hour)
			if r1.PreviousExpiresAt == nil || !r1.PreviousExpiresAt.Equal(graceEnd) {
				t.Errorf("previous expires at %v, want %v", r1.PreviousExpiresAt, graceEnd)
			}
			oldK, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(k.Secret))
			if err != nil || oldK.ID != k.ID || !oldK.Rotated || !oldK.ExpiresAt.Equal(graceEnd) {
				t.Errorf("old secret during the grace: %+v %v", oldK, err)
			}
			newK, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(r1.Secret))
			if err != nil || newK.ID != k.ID || newK.Rotated || !newK.ExpiresAt.Equal(expires) {
				t.Errorf("new secret: %+v %v", newK, err)
			}
			changed, err := s.KeysChangedSince(ctx, since)
			if err != nil || !sameSet(changed, fnmarket.HashAPIKey(k.Secret), fnmarket.HashAPIKey(r1.Secret)) {
				t.Errorf("changed since the rotation: %v %v", changed, err)
			}

			// A grace past the key's own expiry ends with the key.
			clock.Advance(time.Minute)
			since = clock.Now()
			r2, err := s.RotateKey(ctx, a.ID, k.ID, 30*24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !r2.PreviousExpiresAt.Equal(expires) {
				t.Errorf("grace ends %v, want the key's expiry %v", r2.PreviousExpiresAt, expires)
			}
			if _, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(k.Secret)); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Errorf("the first secret after a second rotation: %v, want not found", err)
			}
			changed, err = s.KeysChangedSince(ctx, since)
			if err != nil || !sameSet(changed, fnmarket.HashAPIKey(k.Secret), fnmarket.HashAPIKey(r1.Secret), fnmarket.HashAPIKey(r2.Secret)) {
				t.Errorf("changed since the second rotation: %v %v (the ended grace's hash must be reported)", changed, err)
			}
			if _, err := s.RotateKey(ctx, a.ID, k.ID, accounts.MaxGrace+time.Second); fnmarket.ErrorCode(err) != fnmarket.EINVALID {
				t.Errorf("a grace over 30 days: %v, want invalid", err)
			}

			if err := s.RevokeKey(ctx, a.ID, k.ID); err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{r1.Secret, r2.Secret} {
				if gk, err := s.KeyByHash(ctx, fnmarket.HashAPIKey(secret)); err != nil || !gk.Revoked {
					t.Errorf("after revoking: %+v %v, want revoked", gk, err)
				}
			}
			if _, err := s.RotateKey(ctx, a.ID, k.ID, 0); fnmarket.ErrorCode(err) != fnmarket.ECONFLICT {
				t.Errorf("rotating a revoked key: %v, want conflict", err)
			}
		})
	}
}

func sameSet(got []string, want ...string) bool {
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	return slices.Equal(slices.Compact(g), w)
}

// TestNotifyExpiringKeys: key.expiring is enqueued once per key and
// expiry, three days ahead, never for a revoked, expired or later key.
func TestNotifyExpiringKeys(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := fnmarket.NewTestClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			db := testenv.DB(t, b)
			s := accounts.NewStore(db, clock, bcrypt.MinCost)
			a, err := s.SignUp(ctx, "exp@example.com", "Exp", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			at := func(d time.Duration) *time.Time { x := clock.Now().Add(d); return &x }
			soon, err := s.CreateKeyWith(ctx, a.ID, accounts.NewKey{Name: "soon", ExpiresAt: at(72 * time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			later, err := s.CreateKeyWith(ctx, a.ID, accounts.NewKey{Name: "later", ExpiresAt: at(72*time.Hour + time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			revoked, err := s.CreateKeyWith(ctx, a.ID, accounts.NewKey{Name: "revoked", ExpiresAt: at(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.RevokeKey(ctx, a.ID, revoked.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.CreateKey(ctx, a.ID, "forever", nil); err != nil {
				t.Fatal(err)
			}
			for i, want := range []int{1, 0} {
				if n, err := s.NotifyExpiringKeys(ctx, clock.Now()); err != nil || n != want {
					t.Fatalf("pass %d: %d events %v, want %d", i, n, err, want)
				}
			}
			clock.Advance(time.Second)
			if n, err := s.NotifyExpiringKeys(ctx, clock.Now()); err != nil || n != 1 {
				t.Fatalf("a second later: %d events %v, want 1 (the later key)", n, err)
			}
			clock.Advance(80 * time.Hour) // both expired
			if n, err := s.NotifyExpiringKeys(ctx, clock.Now()); err != nil || n != 0 {
				t.Fatalf("after expiry: %d events %v, want 0", n, err)
			}
			var rows []struct {
				Type, DedupeKey, Payload string
			}
			if err := db.Raw("SELECT type, dedupe_key, payload FROM webhook_events WHERE account_id = ? AND type = ? ORDER BY dedupe_key", a.ID, "key.expiring").Scan(&rows).Error; err != nil {
				t.Fatal(err)
			}
			want := []string{
				"key.expiring:" + later.ID + ":" + strconv.FormatInt(later.ExpiresAt.Unix(), 10),
				"key.expiring:" + soon.ID + ":" + strconv.FormatInt(soon.ExpiresAt.Unix(), 10),
			}
			slices.Sort(want)
			if len(rows) != 2 || rows[0].DedupeKey != want[0] || rows[1].DedupeKey != want[1] || rows[0].Type != "key.expiring" {
				t.Fatalf("events %+v, want dedupe keys %v", rows, want)
			}
			for _, r := range rows {
				for _, field := range []string{`"key_id"`, `"name"`, `"prefix"`, `"expires_at"`} {
					if !strings.Contains(r.Payload, field) {
						t.Errorf("payload %s lacks %s", r.Payload, field)
					}
				}
			}
		})
	}
}
