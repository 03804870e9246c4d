package wasm

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// pageBytes is the size of one WebAssembly memory page.
const pageBytes = 64 << 10

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
	return &linearMemory{owner: c, buf: make([]byte, 0, min(capBytes, c.limitBytes))}
}

// linearMemory is one instance's memory: a byte slice grown by append, as
// wazero's own default memory does, so a call pays only for the pages it
// touches rather than for zeroing its whole limit up front.
type linearMemory struct {
	owner *callMemory
	buf   []byte
}

// Reallocate implements experimental.LinearMemory. Wasm memory never
// shrinks, so size is at least the current length.
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

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() { m.buf = nil }
