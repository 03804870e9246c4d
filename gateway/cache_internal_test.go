package gateway

import (
	"testing"
	"time"
)

// TestDroppedEntryNotServedStale checks a dropped entry (a revocation or
// unpublication seen by the poller) is gone for stale-if-error too, and a
// load that began before the drop cannot bring it back.
func TestDroppedEntryNotServedStale(t *testing.T) {
	c := newLRUCache[string, int](10, nil)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	c.put("k", 1, t0.Add(time.Second), t0.Add(10*time.Second), c.currentEpoch())
	if _, ok := c.get("k", t0.Add(5*time.Second)); ok {
		t.Fatal("entry fresh past its expiry")
	}
	if v, ok := c.getStale("k", t0.Add(5*time.Second)); !ok || v != 1 {
		t.Fatalf("getStale = %d, %v within staleUntil", v, ok)
	}
	epoch := c.currentEpoch()
	c.drop("k")
	c.retryAt("k", t0.Add(6*time.Second), epoch)
	if _, ok := c.getStale("k", t0.Add(5*time.Second)); ok {
		t.Fatal("dropped entry still served stale")
	}
	c.put("k", 2, t0.Add(time.Second), t0.Add(10*time.Second), epoch)
	if _, ok := c.getStale("k", t0); ok {
		t.Fatal("a load begun before the drop stored its answer")
	}
	c.put("k", 3, t0.Add(time.Second), t0.Add(10*time.Second), c.currentEpoch())
	if _, ok := c.getStale("k", t0.Add(10*time.Second)); ok {
		t.Fatal("entry served past staleUntil")
	}
}
