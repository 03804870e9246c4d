package wasm

import (
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// pageBytes is the size of one WebAssembly memory page.
const pageBytes = 64 << 10

// maxSpareMemoryBytes bounds the closed instances' memories kept for the
// next instances (see spareMemory).
const maxSpareMemoryBytes = 64 << 20

// spareMemory keeps the backing arrays of closed instances' memories, up to
// maxSpareMemoryBytes in all, for the next instances: a new instance then
// writes to pages the process has already touched instead of faulting in
// fresh ones, which was most of a fresh Go instance's memory set-up. Only
// the arrays are kept, never their contents: a new memory starts at length
// zero and every page it grows into is zeroed by Reallocate's append.
var spareMemory struct {
	mu    sync.Mutex
	bufs  [][]byte
	bytes int
}

// takeSpare returns a kept array of at least want bytes' capacity, at
// length zero, or nil.
func takeSpare(want uint64) []byte {
	spareMemory.mu.Lock()
	defer spareMemory.mu.Unlock()
	for i, b := range spareMemory.bufs {
		if uint64(cap(b)) >= want {
			last := len(spareMemory.bufs) - 1
			spareMemory.bufs[i] = spareMemory.bufs[last]
			spareMemory.bufs[last] = nil
			spareMemory.bufs = spareMemory.bufs[:last]
			spareMemory.bytes -= cap(b)
			return b[:0]
		}
	}
	return nil
}

// keepSpare keeps b's array for a later memory when there is room.
func keepSpare(b []byte) {
	if cap(b) == 0 {
		return
	}
	spareMemory.mu.Lock()
	defer spareMemory.mu.Unlock()
	if spareMemory.bytes+cap(b) > maxSpareMemoryBytes {
		return
	}
	spareMemory.bufs = append(spareMemory.bufs, b[:0])
	spareMemory.bytes += cap(b)
}

// callMemory enforces one call's memory limit below the runtime-wide ceiling
// (wazero's WithMemoryLimitPages), so versions with different limits share
// one wazero runtime and one compiled module. wazero asks it for every
// memory.grow; a refusal makes memory.grow return -1 to the guest, exactly as
// hitting the declared maximum would, and is remembered so the call can be
// reported as MemoryExceeded.
type callMemory struct {
	limitBytes uint64
	refused    atomic.Bool
}

var _ experimental.MemoryAllocator = (*callMemory)(nil)

// Allocate implements experimental.MemoryAllocator.
func (c *callMemory) Allocate(capBytes, _ uint64) experimental.LinearMemory {
	want := min(capBytes, c.limitBytes)
	buf := takeSpare(want)
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
	keepSpare(m.buf)
	m.buf = nil
}
