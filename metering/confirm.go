package metering

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/fnmarket/fnmarket"
)

// confirmerConfig wires a confirmer to its Meter.
type confirmerConfig struct {
	// mu guards the confirmer's state: the Meter's lock, because a flush
	// found lost moves from the confirmer back to the Meter's unacknowledged
	// flushes in one step (a rotation in between would drop it from the
	// spool).
	mu sync.Locker
	// confirmed is MeterConfig.Confirmed.
	confirmed func(ctx context.Context, flushIDs []string) (map[string]bool, error)
	// markers reports, per flush, whether Redis still has its applied marker.
	markers func(ctx context.Context, fs []*flush) ([]bool, error)
	// settled is called with mu held with the ids of flushes the database
	// holds, or that the confirmer gave up on to bound the spool.
	settled func(ids []string)
	// lost is called with mu held with the flushes Redis lost before they
	// reached the database; they must be sent again.
	lost func(fs []*flush)
	// closed, called with mu held, reports whether the Meter is closed.
	closed func() bool

	clock      fnmarket.Clock
	grace      time.Duration // MeterConfig.RedisLossGrace
	appliedTTL time.Duration
	maxBytes   int64 // intents kept at most (RotateBytes/2)
	log        *slog.Logger
}

// confirmer keeps the flushes Redis acknowledged until the database holds
// them (MeterConfig.Confirmed), and sends again those Redis lost first: a
// flush unconfirmed for grace has its applied marker looked up; one whose
// marker is missing and that the database, asked at least grace later,
// still does not hold is handed to lost.
type confirmer struct {
	cfg confirmerConfig

	// Guarded by cfg.mu: the flushes awaiting the database, oldest first,
	// their calls and intent bytes, and how many were given up on.
	flushes   []*flush
	calls     int64
	bytes     int64
	forgotten int64

	reported int64 // forgotten flushes already logged; touched only by tick
}

func newConfirmer(cfg confirmerConfig) *confirmer { return &confirmer{cfg: cfg} }

// addLocked keeps an acknowledged flush until the database has it,
// forgetting the oldest ones past maxBytes so the spool stays bounded while
// the database is unreachable. Callers hold mu.
func (c *confirmer) addLocked(f *flush) {
	if f.ackedAt.IsZero() {
		f.ackedAt = c.cfg.clock.Now()
	}
	if f.size == 0 {
		f.size = intentSize(f)
	}
	c.flushes = append(c.flushes, f)
	c.calls += f.agg.n
	c.bytes += f.size
	var drop []string
	for c.bytes > c.cfg.maxBytes && len(c.flushes) > 1 {
		old := c.flushes[0]
		c.flushes = c.flushes[1:]
		c.calls -= old.agg.n
		c.bytes -= old.size
		drop = append(drop, old.id)
	}
	if len(drop) > 0 {
		c.forgotten += int64(len(drop))
		c.cfg.settled(drop)
	}
}

// sortReplayed sorts the flushes Redis acknowledged to an earlier run:
// those the database holds are done; the others go out again with their ids
// (a no-op where Redis still has their applied markers, a resend of lost
// counts where it does not). When the database cannot answer they stay
// acknowledged and the confirm loop sorts them out.
func (c *confirmer) sortReplayed(st *spoolState, timeout time.Duration) {
	ids := make([]string, len(st.acked))
	for i, f := range st.acked {
		ids[i] = f.id
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done, err := c.cfg.confirmed(ctx, ids)
	if err != nil {
		c.cfg.log.Warn("metering spool: cannot look up acknowledged flushes in the database; will retry", "flushes", len(ids), "err", err)
		return
	}
	var resend []*flush
	for _, f := range st.acked {
		if !done[f.id] {
			resend = append(resend, f)
		}
	}
	if len(resend) > 0 {
		c.cfg.log.Info("metering spool: resending acknowledged flushes not yet in the database", "flushes", len(resend), "in_database", len(ids)-len(resend))
	}
	st.unacked = append(resend, st.unacked...)
	st.acked = nil
}

// unconfirmedCalls is how many calls the flushes awaiting the database hold.
func (c *confirmer) unconfirmedCalls() int64 {
	c.cfg.mu.Lock()
	defer c.cfg.mu.Unlock()
	return c.calls
}

// confirmOnce drops the flushes the database holds. With detectLoss it then
// looks for signs that Redis lost the others: a flush unconfirmed for grace
// has its applied marker looked up (at most once per grace); one whose
// marker is missing and that the database, asked at least grace after the
// marker was found missing, still does not hold was lost with Redis's data
// and is handed to lost. Markers older than appliedTTL expire by themselves,
// so those flushes are never taken for lost.
func (c *confirmer) confirmOnce(ctx context.Context, detectLoss bool) error {
	c.cfg.mu.Lock()
	if c.cfg.closed() || len(c.flushes) == 0 {
		c.cfg.mu.Unlock()
		return nil
	}
	ids := make([]string, len(c.flushes))
	for i, f := range c.flushes {
		ids[i] = f.id
	}
	c.cfg.mu.Unlock()
	done, err := c.cfg.confirmed(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up flushes: %w", err)
	}
	now := c.cfg.clock.Now()
	grace := c.cfg.grace
	var confirmed []string
	var requeued, check []*flush
	var requeuedCalls int64
	c.cfg.mu.Lock()
	if c.cfg.closed() {
		c.cfg.mu.Unlock()
		return nil
	}
	keep := c.flushes[:0]
	for _, f := range c.flushes {
		switch {
		case done[f.id]:
			confirmed = append(confirmed, f.id)
		case detectLoss && !f.missingSince.IsZero() && now.Sub(f.missingSince) >= grace:
			// Not in the database although Redis lost it long enough ago
			// for any roll-up that had read it to have committed.
			requeued = append(requeued, f)
			requeuedCalls += f.agg.n
		default:
			if detectLoss && f.missingSince.IsZero() && now.Sub(f.ackedAt) >= grace &&
				now.Sub(f.checkedAt) >= grace && now.Sub(f.ackedAt) < c.cfg.appliedTTL-2*grace {
				check = append(check, f)
			}
			keep = append(keep, f)
			continue
		}
		c.calls -= f.agg.n
		c.bytes -= f.size
	}
	clear(c.flushes[len(keep):])
	c.flushes = keep
	if len(confirmed) > 0 {
		c.cfg.settled(confirmed)
	}
	if len(requeued) > 0 {
		c.cfg.lost(requeued)
	}
	c.cfg.mu.Unlock()
	if len(requeued) > 0 {
		c.cfg.log.Warn("metering: redis lost acknowledged flushes before they reached the database; sending them again",
			"flushes", len(requeued), "calls", requeuedCalls)
	}
	if len(check) == 0 {
		return nil
	}
	present, err := c.cfg.markers(ctx, check)
	if err != nil {
		return fmt.Errorf("look up applied markers: %w", err)
	}
	c.cfg.mu.Lock()
	defer c.cfg.mu.Unlock()
	for i, f := range check {
		f.checkedAt = now
		if !present[i] {
			f.missingSince = now
		}
	}
	return nil
}

// tick is one pass of the confirm loop: confirmOnce with loss detection,
// bounded by timeout, and the failures and forgotten flushes logged.
func (c *confirmer) tick(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := c.confirmOnce(ctx, true)
	cancel()
	if err != nil {
		c.cfg.log.Warn("metering: confirming flushes in the database failed; will retry", "err", err, "unconfirmed_calls", c.unconfirmedCalls())
	}
	c.cfg.mu.Lock()
	forgotten := c.forgotten
	c.cfg.mu.Unlock()
	if forgotten > c.reported {
		c.cfg.log.Error("metering: spool full of flushes the database has not confirmed; forgot the oldest (they are lost if redis loses its data before they are rolled up)",
			"flushes", forgotten-c.reported, "max_bytes", c.cfg.maxBytes)
		c.reported = forgotten
	}
}
