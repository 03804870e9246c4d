package billing

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestBillingRunsTakeTurns: while one run (or one that was killed) holds the
// billing lease, a second run for the month refuses, saying so, and pushes
// nothing to Stripe; once the holder is done, or its lease has lapsed, the
// next run goes ahead. Before the lease both runs pushed every invoice.
func TestBillingRunsTakeTurns(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		alice, _, _, _, _ := seedJanuary(f)

		first, err := f.biller.tryLease(f.ctx, leaseBill)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.biller.BillPeriod(f.ctx, jan, Options{})
		wantCode(t, err, fnmarket.ECONFLICT)
		if msg := fnmarket.ErrorMessage(err); !strings.Contains(msg, "another process") || !strings.Contains(msg, first.holder) {
			t.Errorf("refusal says %q, want it to name the run holding the lease", msg)
		}
		if calls := rec.take(); len(calls) != 0 || f.count("invoices") != 0 {
			t.Fatalf("a refused run made %d Stripe calls and %d invoices", len(calls), f.count("invoices"))
		}
		first.release()
		if rep := f.bill(jan, Options{}); rep.Created != 2 || rep.Sync.Invoices != 2 {
			t.Fatalf("run after the holder finished = %+v", rep)
		}
		if n := f.count("billing_leases"); n != 0 {
			t.Errorf("%d leases left after the run, want 0", n)
		}
		rec.take()

		// A run that was killed leaves its lease behind: it blocks others
		// only until it lapses.
		killed := leaseRow{Name: leaseBill, Holder: "dead-host pid 1", AcquiredAt: f.clock.Now().UnixMilli(), ExpiresAt: f.clock.Now().Add(DefaultLeaseTTL).UnixMilli()}
		if err := f.db.Create(&killed).Error; err != nil {
			t.Fatal(err)
		}
		_, err = f.biller.BillPeriod(f.ctx, jan, Options{})
		wantCode(t, err, fnmarket.ECONFLICT)
		f.clock.Advance(DefaultLeaseTTL + time.Second)
		if rep := f.bill(jan, Options{}); rep.Unchanged != 2 {
			t.Errorf("run after the lease lapsed = %+v", rep)
		}
		if got := f.only(alice, jan); got.SyncStatus != SyncSynced {
			t.Errorf("invoice %+v", got)
		}

		// One Stripe sync pass at a time, too.
		sync, err := f.biller.tryLease(f.ctx, leaseStripeSync)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.biller.SyncPending(f.ctx)
		wantCode(t, err, fnmarket.ECONFLICT)
		sync.release()
		if _, err := f.biller.SyncPending(f.ctx); err != nil {
			t.Fatal(err)
		}
		if calls := rec.take(); len(calls) != 0 {
			t.Errorf("re-runs made Stripe calls: %+v", calls)
		}
	})
}

// TestConcurrentBillingRunsPushOnce starts two runs of one month at once:
// whichever way they interleave, every Stripe request is made once.
func TestConcurrentBillingRunsPushOnce(t *testing.T) {
	base := startStripeMock(t)
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		rec := &recorder{next: http.DefaultTransport}
		f := stripeFixture(t, be, base, rec)
		seedJanuary(f)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = f.biller.BillPeriod(f.ctx, jan, Options{})
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && fnmarket.ErrorCode(err) != fnmarket.ECONFLICT {
				t.Fatalf("run: %v", err)
			}
		}
		seen := map[string]bool{}
		for _, c := range rec.take() {
			if seen[c.Key] {
				t.Errorf("idempotency key %s sent twice: two runs pushed the same object", c.Key)
			}
			seen[c.Key] = true
		}
		if f.count("invoices") != 2 {
			t.Errorf("%d invoices, want 2", f.count("invoices"))
		}
	})
}

// TestLostLeaseStopsTheWork: a holder whose lease was taken over (it stalled
// past the lease's end) has its work cancelled at the next renewal.
func TestLostLeaseStopsTheWork(t *testing.T) {
	eachBackend(t, func(t *testing.T, be testenv.Backend) {
		f := newFixture(t, be, func(c *Config) { c.LeaseTTL = 300 * time.Millisecond })
		l, err := f.biller.tryLease(f.ctx, leaseBill)
		if err != nil {
			t.Fatal(err)
		}
		defer l.release()
		if err := f.db.Model(&leaseRow{}).Where("name = ?", leaseBill).Update("holder", "someone else").Error; err != nil {
			t.Fatal(err)
		}
		select {
		case <-l.ctx.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("work under a lost lease was not cancelled")
		}
		var holder string
		f.db.Model(&leaseRow{}).Where("name = ?", leaseBill).Select("holder").Scan(&holder)
		if holder != "someone else" {
			t.Errorf("lease holder %q: the loser must not take it back", holder)
		}
	})
}
