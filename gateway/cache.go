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
	expires time.Time
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

// get returns the live entry for k, if any.
func (c *lruCache[K, V]) get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*lruEntry[K, V])
	if !now.Before(e.expires) {
		c.removeLocked(el)
		var zero V
		return zero, false
	}
	c.ll.MoveToFront(el)
	return e.val, true
}

// currentEpoch is read before a load; put only stores when no drop happened since.
func (c *lruCache[K, V]) currentEpoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put stores v under k until expires, unless something was dropped since epoch.
func (c *lruCache[K, V]) put(k K, v V, expires time.Time, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch || c.max <= 0 {
		return
	}
	if el, ok := c.items[k]; ok {
		e := el.Value.(*lruEntry[K, V])
		e.val, e.expires = v, expires
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(&lruEntry[K, V]{key: k, val: v, expires: expires})
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

// readThrough is a cache in front of a store lookup: found values live for
// maxAge, ENOTFOUND answers for negTTL in a separate bounded cache (so a flood
// of made-up keys cannot push real ones out), other errors are not kept.
type readThrough[K comparable, V any] struct {
	found    *lruCache[K, V]
	missing  *lruCache[K, struct{}]
	flight   flightGroup[K, V]
	maxAge   time.Duration
	negTTL   time.Duration
	timeout  time.Duration
	clock    fnmarket.Clock
	load     func(ctx context.Context, k K) (V, error)
	onLookup func(hit bool)
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
			c.found.put(k, v, now.Add(c.maxAge), foundEpoch)
		case fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND:
			c.missing.put(k, struct{}{}, now.Add(c.negTTL), missingEpoch)
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
