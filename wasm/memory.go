package wasm

import (
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// pageBytes is the size of one WebAssembly memory page.
const pageBytes = 64 << 10

// maxSpareMemoryBytes bounds the closed instances' memories a runtime keeps
// for its next instances (see sparePool).
const maxSpareMemoryBytes = 64 << 20

// unmapFailures counts munmap calls that failed (see unmapMemory).
var unmapFailures atomic.Int64

// backing is the array behind one memory, kept by a sparePool between
// owners. A mapped one (see mapMemory) is the whole reservation, and every
// byte of it from dirty on is zero: pages an owner never touched are still
// the kernel's zero pages. A heap one is at length zero with its capacity.
type backing struct {
	buf    []byte
	dirty  int
	mapped bool
}

// resident is what a kept backing costs the process: the pages its owners
// touched (mapped), or the whole array, which is live Go heap and so also
// raises the collector's target.
func (b backing) resident() int {
	if b.mapped {
		return b.dirty
	}
	return cap(b.buf)
}

// release gives the array back: unmapped now, or left to the collector.
func (b backing) release() {
	if b.mapped {
		unmapMemory(b.buf)
	}
}

// sparePool keeps the arrays of a runtime's closed instances' memories, up
// to maxSpareMemoryBytes resident in all, for its next instances: a new
// instance then writes to pages the process has already touched instead of
// faulting in fresh ones, which was most of a fresh Go instance's memory
// set-up. Only the arrays are kept, never their contents: a new memory
// starts at length zero and every byte it grows into is zero (Reallocate).
// A kept mapping stays resident as far as its owners touched it (dirty),
// and that is what the bound counts; the next owner clears that part as it
// grows into it. Giving the pages back instead (madvise MADV_DONTNEED at
// Free) made every next instance fault them in again: a fresh Go instance
// took 4.6 ms p50 instead of 3.9 (BenchmarkReuseInvoke/go/fresh-command),
// a sha-hash call 4.7 ms instead of 4.0 (BenchmarkCall).
//
// The pool is per runtime: wazero frees an instance's memory when the
// instance is closed, which is after its last call returned, except when
// the runtime itself is closed under running calls. Runtime.Close therefore
// closes the pool first (close): memories freed from then on are neither
// handed out nor unmapped, only noted, and unmapped with the kept ones once
// no call is in flight (release), so a guest still running never touches
// an unmapped page.
type sparePool struct {
	mu      sync.Mutex
	kept    []backing
	bytes   int // resident bytes of kept
	closing bool
	late    []backing // freed while closing
	closed  bool
}

// take returns a kept backing of the kind asked for with at least want
// bytes of capacity, and true; or false.
func (p *sparePool) take(want uint64, mapped bool) (backing, bool) {
	if p == nil {
		return backing{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.kept {
		if b.mapped == mapped && uint64(cap(b.buf)) >= want {
			last := len(p.kept) - 1
			p.kept[i] = p.kept[last]
			p.kept[last] = backing{}
			p.kept = p.kept[:last]
			p.bytes -= b.resident()
			return b, true
		}
	}
	return backing{}, false
}

// keep keeps b for a later memory when there is room, and releases it
// otherwise; while the pool is closing it only notes b for release.
func (p *sparePool) keep(b backing) {
	if cap(b.buf) == 0 {
		return
	}
	if p == nil {
		b.release()
		return
	}
	p.mu.Lock()
	switch {
	case p.closing:
		p.late = append(p.late, b)
		p.mu.Unlock()
		return
	case p.closed || p.bytes+b.resident() > maxSpareMemoryBytes:
		p.mu.Unlock()
		b.release()
		return
	}
	p.kept = append(p.kept, b)
	p.bytes += b.resident()
	p.mu.Unlock()
}

// close stops handing out and releasing memories until release: the
// runtime is closing, and its instances may be freed under running calls.
func (p *sparePool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closing = true
}

// release gives back every kept and noted memory; memories freed later are
// released at once. The runtime calls it when no call is in flight.
func (p *sparePool) release() {
	p.mu.Lock()
	all := append(p.kept, p.late...)
	p.kept, p.late, p.bytes = nil, nil, 0
	p.closing, p.closed = false, true
	p.mu.Unlock()
	for _, b := range all {
		b.release()
	}
}

// callMemory enforces one call's memory limit below the runtime-wide ceiling
// (wazero's WithMemoryLimitPages), so versions with different limits share
// one wazero runtime and one compiled module. wazero asks it for every
// memory.grow; a refusal makes memory.grow return -1 to the guest, exactly as
// hitting the declared maximum would, and is remembered so the call can be
// reported as MemoryExceeded.
type callMemory struct {
	limitBytes uint64
	spare      *sparePool // where memories come from and go back to; nil: none
	refused    atomic.Bool
}

var _ experimental.MemoryAllocator = (*callMemory)(nil)

// Allocate implements experimental.MemoryAllocator. The memory reserves its
// largest size (the call's limit or the module's declared maximum, the
// lower) as one private anonymous mapping outside the Go heap, where the
// platform has one (mapMemory), so that growing it never moves or copies it
// and the Go collector neither scans it nor counts it toward its target
// (which doubled it: GOGC=100); else it lives on the Go heap (heapMemory).
// With 32 idle reused Go instances alive (BenchmarkLiveInstances) the Go
// heap in use went from 154 to 54 MB and the resident set from 204 to
// 151 MB; a fresh Go instance costs the same time as on the heap (3.9 ms
// p50, within the noise).
func (c *callMemory) Allocate(capBytes, maxBytes uint64) experimental.LinearMemory {
	reserve := min(maxBytes, c.limitBytes)
	if b, ok := c.spare.take(reserve, true); ok {
		return &linearMemory{owner: c, buf: b.buf[:0], dirty: b.dirty, mapped: true}
	}
	if reserve > 0 {
		if buf, ok := mapMemory(reserve); ok {
			return &linearMemory{owner: c, buf: buf[:0], mapped: true}
		}
	}
	return c.heapMemory(capBytes)
}

// heapMemory is a memory on the Go heap, starting at capBytes of capacity
// (wazero's suggestion), or a kept heap array at least that large.
func (c *callMemory) heapMemory(capBytes uint64) *linearMemory {
	want := min(capBytes, c.limitBytes)
	b, ok := c.spare.take(want, false)
	if !ok {
		b.buf = make([]byte, 0, want)
	}
	return &linearMemory{owner: c, buf: b.buf[:0]}
}

// linearMemory is one instance's memory. A mapped one is resliced within
// its reservation, so a call pays only for the pages it touches, and the
// slice wazero holds stays valid until Free. A heap one is a byte slice
// grown by append, as wazero's own default memory does.
type linearMemory struct {
	owner  *callMemory
	buf    []byte // mapped: cap is the whole reservation
	dirty  int    // mapped: from here on the reservation is all zero
	mapped bool
}

// Reallocate implements experimental.LinearMemory. Wasm memory never
// shrinks, so size is at least the current length. The bytes it adds are
// zero, also when the array was another instance's: a mapped memory clears
// what an earlier owner may have written there (below dirty); a heap one
// appends zeroes.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.owner.limitBytes {
		m.owner.refused.Store(true)
		return nil
	}
	n := uint64(len(m.buf))
	if !m.mapped {
		if size > n {
			m.buf = append(m.buf, make([]byte, size-n)...)
		}
		return m.buf
	}
	if size > uint64(cap(m.buf)) {
		// Over the module's declared maximum: wazero refuses that itself
		// before asking, so this is only a guard.
		return nil
	}
	if size > n {
		if d := min(size, uint64(m.dirty)); d > n {
			clear(m.buf[n:d])
		}
		m.buf = m.buf[:size]
	}
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory. wazero calls it when the
// instance is closed: after its last call returned, or, when the runtime is
// closed under running calls, while one may still run (see sparePool).
func (m *linearMemory) Free() {
	b := backing{buf: m.buf[:0], mapped: m.mapped}
	if m.mapped {
		b.buf = m.buf[:cap(m.buf)]
		b.dirty = max(m.dirty, len(m.buf))
	}
	m.buf = nil
	m.owner.spare.keep(b)
}
