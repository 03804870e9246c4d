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

// sparePool keeps the backing arrays of a runtime's closed instances'
// memories, up to maxSpareMemoryBytes in all, for its next instances: a new
// instance then writes to pages the process has already touched instead of
// faulting in fresh ones, which was most of a fresh Go instance's memory
// set-up. Only the arrays are kept, never their contents: a new memory
// starts at length zero and every page it grows into is zeroed by
// Reallocate's append. The pool is per runtime: wazero frees an instance's
// memory when the instance is closed, which is after its last call returned,
// except when the runtime itself is closed under running calls, and then the
// runtime makes no new instances to hand the arrays to.
type sparePool struct {
	mu    sync.Mutex
	bufs  [][]byte
	bytes int
}

// take returns a kept array of at least want bytes' capacity, at length
// zero, or nil.
func (p *sparePool) take(want uint64) []byte {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, b := range p.bufs {
		if uint64(cap(b)) >= want {
			last := len(p.bufs) - 1
			p.bufs[i] = p.bufs[last]
			p.bufs[last] = nil
			p.bufs = p.bufs[:last]
			p.bytes -= cap(b)
			return b[:0]
		}
	}
	return nil
}

// keep keeps b's array for a later memory when there is room.
func (p *sparePool) keep(b []byte) {
	if p == nil || cap(b) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bytes+cap(b) > maxSpareMemoryBytes {
		return
	}
	p.bufs = append(p.bufs, b[:0])
	p.bytes += cap(b)
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

// Allocate implements experimental.MemoryAllocator.
func (c *callMemory) Allocate(capBytes, _ uint64) experimental.LinearMemory {
	want := min(capBytes, c.limitBytes)
	buf := c.spare.take(want)
	if buf == nil {
		buf = make([]byte, 0, want)
	}
	return &linearMemory{owner: c, buf: buf}
}

// linearMemory is one instance's memory: a byte slice grown by append, as
// wazero's own default memory does, so a call pays only for the pages it
// touches rather than for zeroing its whole limit up front.
type linearMemory struct {
	owner *callMemory
	buf   []byte
}

// Reallocate implements experimental.LinearMemory. Wasm memory never
// shrinks, so size is at least the current length. The bytes it adds are
// zero, also when the array was another instance's (append of make).
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.owner.limitBytes {
		m.owner.refused.Store(true)
		return nil
	}
	if n := uint64(len(m.buf)); size > n {
		m.buf = append(m.buf, make([]byte, size-n)...)
	}
	return m.buf
}

// Free implements experimental.LinearMemory. wazero calls it when the
// instance is closed, after its last call returned.
func (m *linearMemory) Free() {
	m.owner.spare.keep(m.buf)
	m.buf = nil
}
