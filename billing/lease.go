package billing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
)

// Lease names (billing_leases.name).
const (
	// leaseBill is held by a billing run, whatever its month: runs of
	// different months take turns too, since both could charge the same late
	// usage of an earlier month.
	leaseBill = "bill"
	// leaseStripeSync is held by a Stripe sync pass.
	leaseStripeSync = "stripe-sync"
)

// DefaultLeaseTTL is how long a lease outlives its holder's last renewal.
const DefaultLeaseTTL = 2 * time.Minute

type leaseRow struct {
	Name       string `gorm:"primaryKey"`
	Holder     string
	AcquiredAt int64
	ExpiresAt  int64
}

func (leaseRow) TableName() string { return "billing_leases" }

// heldLease is a lease this process holds. Its context is cancelled when the
// lease is lost (another process took it over after it lapsed), so work done
// under it stops.
type heldLease struct {
	b      *Biller
	name   string
	holder string
	ctx    context.Context
	stop   context.CancelFunc
	done   chan struct{}
}

// newHolder names one claim: the host and process, for the operator reading
// a refusal, and a random id, so two claims by one process differ.
func newHolder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s pid %d %s", host, os.Getpid(), fnmarket.NewID("run"))
}

// tryLease claims the lease name, or returns an ECONFLICT error naming its
// holder when another claim holds it and has not lapsed.
func (b *Biller) tryLease(ctx context.Context, name string) (*heldLease, error) {
	holder := newHolder()
	now := b.clock.Now()
	res := b.db.WithContext(ctx).Exec(`INSERT INTO billing_leases (name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
		WHERE billing_leases.expires_at <= ?`, name, holder, now.UnixMilli(), now.Add(b.leaseTTL).UnixMilli(), now.UnixMilli())
	if res.Error != nil {
		return nil, fmt.Errorf("claim %s lease: %w", name, res.Error)
	}
	if res.RowsAffected != 1 {
		var cur leaseRow
		err := b.db.WithContext(ctx).Where("name = ?", name).Take(&cur).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			// Released between the two statements: try once more.
			return b.tryLease(ctx, name)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s lease: %w", name, err)
		}
		return nil, fnmarket.Errorf(fnmarket.ECONFLICT, "another process (%s) has been running %s since %s; it holds the lease until it ends, or until %s if it was killed",
			cur.Holder, name, time.UnixMilli(cur.AcquiredAt).UTC().Format(time.RFC3339), time.UnixMilli(cur.ExpiresAt).UTC().Format(time.RFC3339))
	}
	lctx, stop := context.WithCancel(ctx)
	l := &heldLease{b: b, name: name, holder: holder, ctx: lctx, stop: stop, done: make(chan struct{})}
	go l.renew()
	return l, nil
}

// waitLease claims the lease name, waiting while another claim holds it,
// for at most wait.
func (b *Biller) waitLease(ctx context.Context, name string, wait time.Duration) (*heldLease, error) {
	deadline := time.Now().Add(wait)
	for {
		l, err := b.tryLease(ctx, name)
		if err == nil || fnmarket.ErrorCode(err) != fnmarket.ECONFLICT || time.Now().After(deadline) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// renew keeps the lease alive while its work runs, and cancels the work if
// the lease was lost.
func (l *heldLease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.b.leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			res := l.b.db.WithContext(l.ctx).Model(&leaseRow{}).Where("name = ? AND holder = ?", l.name, l.holder).
				Update("expires_at", l.b.clock.Now().Add(l.b.leaseTTL).UnixMilli())
			if res.Error == nil && res.RowsAffected == 0 {
				l.b.log.Error("billing lease lost; stopping", "lease", l.name, "holder", l.holder)
				l.stop()
				return
			}
			if res.Error != nil && l.ctx.Err() == nil {
				l.b.log.Warn("renew billing lease", "lease", l.name, "err", res.Error)
			}
		}
	}
}

// release ends the claim, so the next run need not wait for it to lapse.
func (l *heldLease) release() {
	l.stop()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.b.db.WithContext(ctx).Where("name = ? AND holder = ?", l.name, l.holder).Delete(&leaseRow{}).Error; err != nil {
		l.b.log.Warn("release billing lease; it lapses on its own", "lease", l.name, "err", err)
	}
}
