package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// lastMonthUsage publishes acme/<name>, signs up consumers and records one
// hour of usage for each in the month before this one, straight into
// usage_hourly as the roll-up would, so `bill` can issue (not draft) that
// month. It returns the month as YYYY-MM.
func lastMonthUsage(t *testing.T, env map[string]string, consumers ...string) string {
	t.Helper()
	inst := start(t, "api", env)
	c := client{t: t, base: inst.url}
	_, fnID := c.publishFunction("work", map[string]any{"type": "http", "url": "https://example.com/work"}, map[string]any{"per_call": "0.01", "per_compute_ms": "0"})
	for _, email := range consumers {
		c.signup(email)
	}
	if err := inst.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := database.Open(ctx, env["DATABASE_URL"], env["FNMARKET_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC()
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1, 0)
	for _, email := range consumers {
		var id string
		if err := db.Raw("SELECT id FROM accounts WHERE email = ?", email).Scan(&id).Error; err != nil || id == "" {
			t.Fatalf("account %s: %q, %v", email, id, err)
		}
		err := db.Exec(`INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors)
			VALUES (?, ?, 'key_test', ?, 1, 100, 100, 0, 0)`, month.Add(time.Hour).Unix(), id, fnID).Error
		if err != nil {
			t.Fatal(err)
		}
	}
	return month.Format("2006-01")
}

// TestBillReportsStripeSync bills a finished month with Stripe (stripe-mock)
// configured and checks the command says how many invoices it pushed: the
// sync happens inside billing, so a second look found nothing and the
// command used to print "0 invoices synced" after syncing them all.
func TestBillReportsStripeSync(t *testing.T) {
	mock := testenv.StripeMock(t)
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			env["STRIPE_SECRET_KEY"] = "sk_test_fnmarket"
			env["STRIPE_API_BASE"] = mock
			period := lastMonthUsage(t, env, "a@example.com", "b@example.com")
			var out bytes.Buffer
			err := run(context.Background(), []string{"fnmarket", "bill", "--period", period}, func(k string) string { return env[k] }, &out, &bytes.Buffer{})
			if err != nil {
				t.Fatalf("bill: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), "2 invoices created, 2 finalized") {
				t.Fatalf("bill output %q, want 2 invoices issued", out.String())
			}
			if m := regexp.MustCompile(`stripe: (\d+) invoices synced \((\d+) failed`).FindStringSubmatch(out.String()); m == nil || m[1] != "2" || m[2] != "0" {
				t.Errorf("bill output %q, want \"stripe: 2 invoices synced (0 failed\"", out.String())
			}
			// While another run holds the billing lease, bill exits saying so.
			db, err := database.Open(context.Background(), env["DATABASE_URL"], env["FNMARKET_DATA_DIR"])
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			held := time.Now().Add(time.Hour).UnixMilli()
			if err := db.Exec("INSERT INTO billing_leases (name, holder, acquired_at, expires_at) VALUES ('bill', 'other-host pid 7', 0, ?)", held).Error; err != nil {
				t.Fatal(err)
			}
			err = run(context.Background(), []string{"fnmarket", "bill", "--period", period}, func(k string) string { return env[k] }, &out, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "another process (other-host pid 7)") {
				t.Errorf("bill while another run holds the lease: %v, want a refusal naming it", err)
			}
			if err := db.Exec("DELETE FROM billing_leases").Error; err != nil {
				t.Fatal(err)
			}
			// Re-running pushes nothing and says so.
			out.Reset()
			if err := run(context.Background(), []string{"fnmarket", "bill", "--period", period}, func(k string) string { return env[k] }, &out, &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "2 unchanged") || !strings.Contains(out.String(), "stripe: 0 invoices synced") {
				t.Errorf("second bill output %q", out.String())
			}
		})
	}
}
