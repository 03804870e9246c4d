package wasm

import (
	"container/list"
	"context"
	"sync"

	"github.com/tetratelabs/wazero"
)

// compiledCache keeps at most max compiled modules in memory, keyed by
// SHA-256, evicting the least recently used. A module is compiled once even
// when many calls miss at the same time, and an evicted module is closed only
// after the last call using it has let it go: wazero must not instantiate a
// closed CompiledModule.
type compiledCache struct {
	max int

	mu      sync.Mutex
	entries map[string]*compiledEntry
	order   *list.List // of *compiledEntry; front is most recently used
}

type compiledEntry struct {
	sha  string
	elem *list.Element // nil once evicted or failed

	ready chan struct{} // closed when compiled or failed
	mod   wazero.CompiledModule
	info  moduleFacts
	err   error

	refs    int  // calls holding mod, guarded by compiledCache.mu
	evicted bool // guarded by compiledCache.mu
}

// moduleFacts is what validation learned about a module and every call needs.
type moduleFacts struct {
	minMemoryPages uint32
	// reactor means the module exports _initialize and handle as a WASI
	// reactor for instance reuse must (see RunReused).
	reactor bool
	// command means it exports _start () -> () as a fresh call needs.
	command bool
}

func newCompiledCache(max int) *compiledCache {
	return &compiledCache{max: max, entries: map[string]*compiledEntry{}, order: list.New()}
}

// acquire returns sha's compiled module, compiling it with compile on a miss,
// and a release func the caller must call when it no longer instantiates it.
func (c *compiledCache) acquire(ctx context.Context, sha string, compile func(context.Context) (wazero.CompiledModule, moduleFacts, error)) (wazero.CompiledModule, moduleFacts, func(), error) {
	c.mu.Lock()
	e, ok := c.entries[sha]
	if ok {
		e.refs++
		if e.elem != nil {
			c.order.MoveToFront(e.elem)
		}
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			c.release(e)
			return nil, moduleFacts{}, nil, ctx.Err()
		}
		if e.err != nil {
			c.release(e)
			return nil, moduleFacts{}, nil, e.err
		}
		return e.mod, e.info, func() { c.release(e) }, nil
	}
	e = &compiledEntry{sha: sha, ready: make(chan struct{}), refs: 1}
	e.elem = c.order.PushFront(e)
	c.entries[sha] = e
	victims := c.evictLocked()
	c.mu.Unlock()
	closeAll(victims)

	// The compile is not tied to the first caller's context alone: others
	// may be waiting on it, and a half-made entry must still be resolved.
	mod, info, err := compile(context.WithoutCancel(ctx))
	c.mu.Lock()
	e.mod, e.info, e.err = mod, info, err
	if err != nil {
		if c.entries[sha] == e {
			delete(c.entries, sha)
		}
		if e.elem != nil {
			c.order.Remove(e.elem)
			e.elem = nil
		}
	}
	c.mu.Unlock()
	close(e.ready)
	if e.err != nil {
		c.release(e)
		return nil, moduleFacts{}, nil, e.err
	}
	return e.mod, e.info, func() { c.release(e) }, nil
}

// contains reports whether sha is compiled (or compiling) in memory.
func (c *compiledCache) contains(sha string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[sha]
	return ok
}

// len returns how many modules are cached.
func (c *compiledCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// evictLocked drops the least recently used entries beyond max and returns
// the compiled modules nobody holds, for the caller to close outside the lock.
func (c *compiledCache) evictLocked() []wazero.CompiledModule {
	var victims []wazero.CompiledModule
	for c.order.Len() > c.max {
		back := c.order.Back()
		e := back.Value.(*compiledEntry)
		c.order.Remove(back)
		e.elem = nil
		e.evicted = true
		delete(c.entries, e.sha)
		if e.refs == 0 && e.mod != nil {
			victims = append(victims, e.mod)
		}
	}
	return victims
}

// release lets go of one hold on e, closing its module when e was evicted
// and this was the last hold.
func (c *compiledCache) release(e *compiledEntry) {
	c.mu.Lock()
	e.refs--
	last := e.refs == 0 && e.evicted && e.mod != nil
	c.mu.Unlock()
	if last {
		_ = e.mod.Close(context.Background())
	}
}

// closeAll closes every compiled module still cached.
func (c *compiledCache) closeAll(ctx context.Context) {
	c.mu.Lock()
	var mods []wazero.CompiledModule
	for _, e := range c.entries {
		e.evicted = true
		if e.elem != nil {
			c.order.Remove(e.elem)
			e.elem = nil
		}
		if e.refs == 0 && e.mod != nil {
			mods = append(mods, e.mod)
		}
	}
	c.entries = map[string]*compiledEntry{}
	c.mu.Unlock()
	for _, m := range mods {
		_ = m.Close(ctx)
	}
}

func closeAll(mods []wazero.CompiledModule) {
	for _, m := range mods {
		_ = m.Close(context.Background())
	}
}
