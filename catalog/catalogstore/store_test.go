package catalogstore_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

func newVersion(url string) catalog.NewVersion {
	return catalog.NewVersion{
		Backend:   catalog.Backend{Type: "http", Spec: json.RawMessage(`{"url":"` + url + `"}`)},
		Pricing:   catalog.Pricing{Currency: "USD", PerCall: decimal.RequireFromString("0.0001"), PerComputeMs: decimal.Zero},
		TimeoutMs: 1000,
	}
}

// TestRoutesAndChanges checks what the gateway relies on: routes for the
// published and pinned versions, 404 once unpublished, and every change
// reported by FunctionsChangedSince.
func TestRoutesAndChanges(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := fnmarket.NewTestClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
			db := testenv.DB(t, b)
			acc := "acc_" + testenv.RandomSuffix()
			if err := db.Exec("INSERT INTO accounts (id, email, name, password_hash, created_at) VALUES (?, ?, 'A', 'x', ?)", acc, acc+"@example.com", clock.Now()).Error; err != nil {
				t.Fatal(err)
			}
			s := catalogstore.NewStore(db, clock)
			v, err := s.CreateVendor(ctx, acc, "acme", "Acme")
			if err != nil {
				t.Fatal(err)
			}
			f, err := s.CreateFunction(ctx, v, "scan", "", newVersion("https://a.example.com"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Route(ctx, "acme", "scan", 0); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Errorf("unpublished route: %v, want not found", err)
			}

			// Concurrent version creation numbers versions in turn.
			var wg sync.WaitGroup
			for i := 0; i < 5; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.AddVersion(ctx, v, f.ID, newVersion("https://b.example.com")); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			got, err := s.Function(ctx, v, f.ID)
			if err != nil {
				t.Fatal(err)
			}
			for i, ver := range got.Versions {
				if ver.Version != i+1 {
					t.Fatalf("versions %v are not numbered 1..6", got.Versions)
				}
			}

			clock.Advance(time.Minute)
			since := clock.Now()
			if _, err := s.Publish(ctx, v, f.ID, 2); err != nil {
				t.Fatal(err)
			}
			r, err := s.Route(ctx, "acme", "scan", 0)
			if err != nil || r.Version.Version != 2 || string(r.Version.Backend.Spec) != `{"url":"https://b.example.com"}` {
				t.Errorf("published route: %+v %v", r, err)
			}
			if _, err := s.Route(ctx, "acme", "scan", 3); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Errorf("pinning a version never published: %v, want not found", err)
			}
			if _, err := s.Publish(ctx, v, f.ID, 3); err != nil {
				t.Fatal(err)
			}
			if r, err := s.Route(ctx, "acme", "scan", 2); err != nil || r.Version.Version != 2 {
				t.Errorf("pinning a version published before: %+v %v", r, err)
			}
			changed, err := s.FunctionsChangedSince(ctx, since)
			if err != nil || len(changed) != 1 || changed[0] != (catalog.FunctionRef{VendorSlug: "acme", Name: "scan"}) {
				t.Errorf("changed since publish: %v %v", changed, err)
			}
			clock.Advance(time.Minute)
			if changed, _ := s.FunctionsChangedSince(ctx, clock.Now()); len(changed) != 0 {
				t.Errorf("changes reported with nothing changed: %v", changed)
			}
			if _, err := s.Unpublish(ctx, v, f.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Route(ctx, "acme", "scan", 2); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Errorf("pinned route of an unpublished function: %v, want not found", err)
			}
			if changed, _ := s.FunctionsChangedSince(ctx, clock.Now()); len(changed) != 1 {
				t.Errorf("unpublish not reported as a change: %v", changed)
			}
		})
	}
}
