package alerts_test

import (
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/alerts"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/webhooks"
)

type outboxEvent struct {
	AccountID, Type, DedupeKey string
	Data                       map[string]any
}

func outbox(t *testing.T, db *database.DB, typ string) []outboxEvent {
	t.Helper()
	var rows []struct{ AccountID, Type, Payload, DedupeKey string }
	if err := db.Table("webhook_events").Where("type = ?", typ).Order("dedupe_key").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := make([]outboxEvent, len(rows))
	for i, r := range rows {
		var body struct{ Data map[string]any }
		if err := json.Unmarshal([]byte(r.Payload), &body); err != nil {
			t.Fatal(err)
		}
		out[i] = outboxEvent{AccountID: r.AccountID, Type: r.Type, DedupeKey: r.DedupeKey, Data: body.Data}
	}
	return out
}

func addUsage(t *testing.T, db *database.DB, hour time.Time, consumer, key, fn string, calls, errs int64, cost string) {
	t.Helper()
	pico := decimal.RequireFromString(cost).Shift(12).IntPart()
	err := db.Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors, free_calls, cost_pico, credit_pico)
		VALUES (?, ?, ?, ?, 1, ?, ?, 0, ?, 0, ?, 0)`, hour.Unix(), consumer, key, fn, calls, calls, errs, pico).Error
	if err != nil {
		t.Fatal(err)
	}
}

// TestThresholdsExactlyOnce: a burst of usage that crosses 50, 80 and 100
// percent of a key's cap at once, checked by several checkers concurrently
// while it lands, raises each threshold exactly once; the account's default
// thresholds (80, 100) follow its own cap; checking again raises nothing, a
// new month starts afresh.
func TestThresholdsExactlyOnce(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := testenv.DB(t, b)
			ctx := t.Context()
			clock := fnmarket.NewTestClock(time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC))
			store := accounts.NewStore(db, clock, bcrypt.MinCost)
			acc, err := store.SignUp(ctx, "c@example.com", "C", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			one := decimal.RequireFromString("1.00")
			key, err := store.CreateKeyAlerting(ctx, acc.ID, "k", &one, []int{50, 80, 100})
			if err != nil {
				t.Fatal(err)
			}
			uncapped, err := store.CreateKey(ctx, acc.ID, "u", nil)
			if err != nil {
				t.Fatal(err)
			}
			two := decimal.RequireFromString("2.00")
			if _, err := store.SetSpendCap(ctx, acc.ID, &two); err != nil {
				t.Fatal(err)
			}
			// Last month's spend counts for nothing this month.
			addUsage(t, db, time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC), acc.ID, key.ID, "fn_a", 100, 0, "5.00")

			// The burst: 4 rows of 0.30 land (1.20 in all, 120% of the key's
			// cap, 60% of the account's) while 6 checkers run.
			var wg sync.WaitGroup
			var mu sync.Mutex
			total := 0
			for i := range 10 {
				wg.Go(func() {
					if i < 4 {
						addUsage(t, db, time.Date(2026, 11, 1+i, 0, 0, 0, 0, time.UTC), acc.ID, key.ID, "fn_a", 3, 0, "0.30")
						return
					}
					n, err := alerts.NewChecker(db, clock).Thresholds(ctx)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					total += n
					mu.Unlock()
				})
			}
			wg.Wait()
			// Two more checkers after the burst, at once.
			for range 2 {
				wg.Go(func() {
					n, err := alerts.NewChecker(db, clock).Thresholds(ctx)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					total += n
					mu.Unlock()
				})
			}
			wg.Wait()
			evs := outbox(t, db, webhooks.TypeThresholdReached)
			var keys []string
			for _, e := range evs {
				keys = append(keys, e.DedupeKey)
				if e.AccountID != acc.ID || e.Data["scope"] != "key" || e.Data["key_id"] != key.ID || e.Data["cap"] != "1.00" {
					t.Errorf("event %+v", e)
				}
			}
			want := []string{"threshold:key:" + key.ID + ":202611:100", "threshold:key:" + key.ID + ":202611:50", "threshold:key:" + key.ID + ":202611:80"}
			sort.Strings(want)
			if len(keys) != 3 || keys[0] != want[0] || keys[1] != want[1] || keys[2] != want[2] || total != 3 {
				t.Fatalf("events %v (checkers reported %d written), want each of 50, 80, 100 once: %v", keys, total, want)
			}
			if evs[0].Data["threshold_percent"] != float64(100) || evs[0].Data["month_to_date"] != "1.20" {
				t.Fatalf("the 100%% event's data: %v", evs[0].Data)
			}

			// The uncapped key's spend takes the account to 80% (1.60 of 2.00).
			addUsage(t, db, time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC), acc.ID, uncapped.ID, "fn_a", 4, 0, "0.40")
			if n, err := alerts.NewChecker(db, clock).Thresholds(ctx); err != nil || n != 1 {
				t.Fatalf("after the account reached 80%%: %d events, %v; want 1", n, err)
			}
			if n, err := alerts.NewChecker(db, clock).Thresholds(ctx); err != nil || n != 0 {
				t.Fatalf("checking again: %d events, %v; want none", n, err)
			}
			evs = outbox(t, db, webhooks.TypeThresholdReached)
			var acct []outboxEvent
			for _, e := range evs {
				if e.Data["scope"] == "account" {
					acct = append(acct, e)
				}
			}
			if len(acct) != 1 || acct[0].DedupeKey != "threshold:account:"+acc.ID+":202611:80" || acct[0].Data["month_to_date"] != "1.60" ||
				acct[0].Data["cap"] != "2.00" || acct[0].Data["key_id"] != nil {
				t.Fatalf("account events %+v", acct)
			}

			// December: nothing until December's usage reaches a threshold.
			clock.Set(time.Date(2026, 12, 1, 0, 30, 0, 0, time.UTC))
			if n, err := alerts.NewChecker(db, clock).Thresholds(ctx); err != nil || n != 0 {
				t.Fatalf("a new month with no usage: %d events, %v", n, err)
			}
			addUsage(t, db, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), acc.ID, key.ID, "fn_a", 5, 0, "0.55")
			if n, err := alerts.NewChecker(db, clock).Thresholds(ctx); err != nil || n != 1 {
				t.Fatalf("December's 55%%: %d events, %v; want the 50%% one", n, err)
			}
		})
	}
}

// TestErrorRateOncePerWindow: a function whose errors reach the vendor's
// percent over the window raises function.error_rate_high once per window;
// below the percent, nothing.
func TestErrorRateOncePerWindow(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := testenv.DB(t, b)
			ctx := t.Context()
			clock := fnmarket.NewTestClock(time.Date(2026, 11, 20, 12, 30, 0, 0, time.UTC))
			store := accounts.NewStore(db, clock, bcrypt.MinCost)
			vendor, err := store.SignUp(ctx, "v@example.com", "V", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			now := clock.Now()
			if err := db.Exec("INSERT INTO vendors (id, account_id, slug, display_name, created_at) VALUES ('ven_1', ?, 'acme', 'Acme', ?)", vendor.ID, now).Error; err != nil {
				t.Fatal(err)
			}
			if err := db.Exec("INSERT INTO functions (id, vendor_id, name, description, created_at, updated_at) VALUES ('fn_1', 'ven_1', 'f', '', ?, ?)", now, now).Error; err != nil {
				t.Fatal(err)
			}
			c := alerts.NewChecker(db, clock)
			if err := c.SetErrorAlert(ctx, alerts.ErrorAlert{FunctionID: "fn_1", Percent: 10, WindowMinutes: 30}); fnmarket.ErrorCode(err) != fnmarket.EINVALID {
				t.Fatalf("a 30-minute window was accepted: %v", err)
			}
			if err := c.SetErrorAlert(ctx, alerts.ErrorAlert{FunctionID: "fn_1", Percent: 10, WindowMinutes: 120}); err != nil {
				t.Fatal(err)
			}
			// Window [12:00, 14:00): 100 calls, 9 errors: under 10%.
			addUsage(t, db, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "acc_x", "key_x", "fn_1", 100, 9, "0")
			// Earlier windows do not count.
			addUsage(t, db, time.Date(2026, 11, 20, 11, 0, 0, 0, time.UTC), "acc_x", "key_x", "fn_1", 10, 10, "0")
			if n, err := c.ErrorRates(ctx); err != nil || n != 0 {
				t.Fatalf("9%% errors: %d events, %v", n, err)
			}
			addUsage(t, db, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "acc_y", "key_y", "fn_1", 10, 3, "0")
			for range 3 {
				if _, err := c.ErrorRates(ctx); err != nil {
					t.Fatal(err)
				}
			}
			evs := outbox(t, db, webhooks.TypeErrorRateHigh)
			if len(evs) != 1 || evs[0].AccountID != vendor.ID || evs[0].Data["calls"] != float64(110) || evs[0].Data["errors"] != float64(12) ||
				evs[0].Data["error_rate_percent"] != "10.91" || evs[0].Data["window_start"] != "2026-11-20T12:00:00Z" {
				t.Fatalf("events %+v, want one for the window", evs)
			}
			// The next window raises its own once its errors reach the percent.
			clock.Set(time.Date(2026, 11, 20, 14, 10, 0, 0, time.UTC))
			addUsage(t, db, time.Date(2026, 11, 20, 14, 0, 0, 0, time.UTC), "acc_x", "key_x", "fn_1", 5, 5, "0")
			if n, err := c.ErrorRates(ctx); err != nil || n != 1 {
				t.Fatalf("next window: %d events, %v", n, err)
			}
		})
	}
}
