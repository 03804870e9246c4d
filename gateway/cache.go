package gateway

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/fnmarket/fnmarket"
)

// lruCache is a bounded, expiring, least-recently-used map. Entries may carry a
// tag (a function's vendor/name for routes) so that all entries of one tag can
// be dropped at once. Every drop bumps an epoch; a load that began before a drop
// does not store its (possibly stale) answer.
type lruCache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // of *lruEntry[K, V], most recently used first
	items map[K]*list.Element
	tagOf func(K) string // nil: entries are untagged
	tags  map[string]map[K]struct{}
	epoch uint64
}

type lruEntry[K comparable, V any] struct {
	key     K
	val     V
	expires time.Time // fresh before this
	// staleUntil (at or after expires) is how long the entry is kept to be
	// served should the store fail (stale-if-error); see getStale.
	staleUntil time.Time
}

func newLRUCache[K comparable, V any](max int, tagOf func(K) string) *lruCache[K, V] {
	return &lruCache[K, V]{
		max:   max,
		ll:    list.New(),
		items: make(map[K]*list.Element),
		tagOf: tagOf,
		tags:  make(map[string]map[K]struct{}),
	}
}

// get returns the fresh entry for k, if any.
func (c *lruCache[K, V]) get(k K, now time.Time) (V, bool) {
	return c.lookup(k, now, false)
}

// getStale returns the entry for k even if it is no longer fresh, as long
// as it is kept for stale-if-error.
func (c *lruCache[K, V]) getStale(k K, now time.Time) (V, bool) {
	return c.lookup(k, now, true)
}

func (c *lruCache[K, V]) lookup(k K, now time.Time, stale bool) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var zero V
	el, ok := c.items[k]
	if !ok {
		return zero, false
	}
	e := el.Value.(*lruEntry[K, V])
	if !now.Before(e.staleUntil) {
		c.removeLocked(el)
		return zero, false
	}
	if !stale && !now.Before(e.expires) {
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// retryAt makes the entry for k fresh again until at (but not past its
// staleUntil), unless something was dropped since epoch: a stale entry
// served because the store failed is served until then without asking the
// store on every call.
func (c *lruCache[K, V]) retryAt(k K, at time.Time, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if el, ok := c.items[k]; ok {
		e := el.Value.(*lruEntry[K, V])
		if at.After(e.staleUntil) {
			at = e.staleUntil
		}
		e.expires = at
	}
}

// currentEpoch is read before a load; put only stores when no drop happened since.
func (c *lruCache[K, V]) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put stores v under k, fresh until expires and kept for stale-if-error until
// staleUntil, unless something was dropped since epoch.
func (c *lruCache[K, V]) put(k K, v V, expires, staleUntil time.Time, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch || c.max <= 0 {
		return
	}
	if el, ok := c.items[k]; ok {
		e := el.Value.(*lruEntry[K, V])
		e.val, e.expires, e.staleUntil = v, expires, staleUntil
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(&lruEntry[K, V]{key: k, val: v, expires: expires, staleUntil: staleUntil})
	if c.tagOf != nil {
		t := c.tagOf(k)
		set := c.tags[t]
		if set == nil {
			set = make(map[K]struct{})
			c.tags[t] = set
		}
		set[k] = struct{}{}
	}
	for c.ll.Len() > c.max {
		c.removeLocked(c.ll.Back())
	}
}

// drop removes k.
func (c *lruCache[K, V]) drop(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if el, ok := c.items[k]; ok {
		c.removeLocked(el)
	}
}

// dropTag removes every entry tagged t.
func (c *lruCache[K, V]) dropTag(t string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for k := range c.tags[t] {
		if el, ok := c.items[k]; ok {
			c.removeLocked(el)
		}
	}
}

func (c *lruCache[K, V]) removeLocked(el *list.Element) {
	e := c.ll.Remove(el).(*lruEntry[K, V])
	delete(c.items, e.key)
	if c.tagOf != nil {
		t := c.tagOf(e.key)
		if set := c.tags[t]; set != nil {
			delete(set, e.key)
			if len(set) == 0 {
				delete(c.tags, t)
			}
		}
	}
}

// flightGroup makes concurrent misses for one key share a single store lookup.
type flightGroup[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*flightCall[V]
}

type flightCall[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func (g *flightGroup[K, V]) do(k K, fn func() (V, error)) (V, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = make(map[K]*flightCall[V])
	}
	if c, ok := g.calls[k]; ok {
		g.mu.Unlock()
		<-c.done
		return c.val, c.err
	}
	c := &flightCall[V]{done: make(chan struct{})}
	g.calls[k] = c
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.calls, k)
		g.mu.Unlock()
		close(c.done)
	}()
	c.val, c.err = fn()
	return c.val, c.err
}

// DefaultMaxStale is Config.MaxStale's default: how long past MaxEntryAge a
// cached key or route is still served while its store is unreachable.
const DefaultMaxStale = 15 * time.Minute

// DefaultStaleRetry is how long a stale entry served because the store failed
// is served before the store is asked again.
const DefaultStaleRetry = time.Second

// readThrough is a cache in front of a store lookup: found values live for
// maxAge, ENOTFOUND answers for negTTL in a separate bounded cache (so a flood
// of made-up keys cannot push real ones out), other errors are not kept.
//
// Stale-if-error: a found value is kept maxStale past its maxAge. While the
// store fails (any error but ENOTFOUND: unreachable, timing out), a lookup
// whose value is no longer fresh gets the kept one instead of the error, and
// the store is asked again for it only every staleRetry. Nothing can be
// missed by this: a revocation or unpublication is a database write, which
// cannot happen while the database is unreachable, and the poller (whose
// position only advances on success) drops the entries it changes once the
// database answers again. Only a change committed within one poll interval
// before the outage began can go unseen, until the database is back or
// maxStale runs out. Values not cached, and unknown keys, still fail.
type readThrough[K comparable, V any] struct {
	found      *lruCache[K, V]
	missing    *lruCache[K, struct{}]
	flight     flightGroup[K, V]
	maxAge     time.Duration
	maxStale   time.Duration // 0: no stale-if-error
	staleRetry time.Duration // 0: DefaultStaleRetry
	negTTL     time.Duration
	timeout    time.Duration
	clock      fnmarket.Clock
	load       func(ctx context.Context, k K) (V, error)
	onLookup   func(hit bool)
	health     *storeHealth // nil: not tracked
}

// storeHealth remembers whether the last store lookup failed, and since when.
type storeHealth struct {
	mu      sync.Mutex
	failing time.Time // zero: the last lookup reached the store
	lastErr error
}

func (h *storeHealth) record(err error, now time.Time) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.failing, h.lastErr = time.Time{}, nil
		return
	}
	if h.failing.IsZero() {
		h.failing = now
	}
	h.lastErr = err
}

func (h *storeHealth) state() (since time.Time, err error) {
	if h == nil {
		return time.Time{}, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failing, h.lastErr
}

// staleIfError serves found values up to maxStale past their maxAge while
// the store fails, and tracks whether it does (see StoreStatus); a negative
// maxStale only tracks.
func (c *readThrough[K, V]) staleIfError(maxStale time.Duration) {
	c.maxStale = max(maxStale, 0)
	c.health = &storeHealth{}
}

func (c *readThrough[K, V]) get(ctx context.Context, k K) (V, error) {
	now := c.clock.Now()
	if v, ok := c.found.get(k, now); ok {
		c.onLookup(true)
		return v, nil
	}
	if _, ok := c.missing.get(k, now); ok {
		c.onLookup(true)
		var zero V
		return zero, fnmarket.Errorf(fnmarket.ENOTFOUND, "not found")
	}
	c.onLookup(false)
	return c.flight.do(k, func() (V, error) {
		foundEpoch, missingEpoch := c.found.currentEpoch(), c.missing.currentEpoch()
		// The lookup is shared by every caller waiting on k, so it must not
		// die with the first caller's request; it is bounded by its own timeout.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
		defer cancel()
		v, err := c.load(lctx, k)
		now := c.clock.Now()
		switch {
		case err == nil:
			c.health.record(nil, now)
			c.found.put(k, v, now.Add(c.maxAge), now.Add(c.maxAge+c.maxStale), foundEpoch)
		case fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND:
			c.health.record(nil, now)
			c.missing.put(k, struct{}{}, now.Add(c.negTTL), now.Add(c.negTTL), missingEpoch)
		default:
			c.health.record(err, now)
			// Stale-if-error: the entry is still there only if nothing
			// dropped it (drops remove it) and maxStale has not run out.
			if old, ok := c.found.getStale(k, now); ok {
				retry := c.staleRetry
				if retry <= 0 {
					retry = DefaultStaleRetry
				}
				c.found.retryAt(k, now.Add(retry), foundEpoch)
				return old, nil
			}
		}
		return v, err
	})
}

func (c *readThrough[K, V]) drop(k K) {
	c.found.drop(k)
	c.missing.drop(k)
}

func (c *readThrough[K, V]) dropTag(t string) {
	c.found.dropTag(t)
	c.missing.dropTag(t)
}

// StoreStatus says whether the gateway's key and route lookups reach their
// stores.
type StoreStatus struct {
	// Unreachable is set while the last key or route lookup failed (other
	// than by finding nothing); cached keys and routes are then served up
	// to MaxStale past their MaxEntryAge.
	Unreachable bool
	// Since is when the first of the failing lookups failed.
	Since time.Time
	// Err is the last failure.
	Err error
	// MaxStale is how long past MaxEntryAge cached entries are served.
	MaxStale time.Duration
}

// StoreStatus reports whether key and route lookups currently fail.
func (g *Gateway) StoreStatus() StoreStatus {
	st := StoreStatus{MaxStale: g.keys.maxStale}
	for _, h := range []*storeHealth{g.keys.health, g.routes.health} {
		since, err := h.state()
		if err == nil {
			continue
		}
		if !st.Unreachable || since.Before(st.Since) {
			st.Since = since
		}
		st.Unreachable, st.Err = true, err
	}
	return st
}
