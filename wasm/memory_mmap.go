//go:build linux || darwin

package wasm

import (
	"math"

	"golang.org/x/sys/unix"
)

// mapMemory reserves size bytes of zeroed memory outside the Go heap: a
// private anonymous mapping, MAP_NORESERVE so that reserving a memory's
// whole limit takes no swap or overcommit room, of which only the pages a
// guest touches become resident. It reports false when the kernel refuses
// (address space, map count), and the memory then lives on the Go heap.
func mapMemory(size uint64) ([]byte, bool) {
	if size > math.MaxInt {
		return nil, false
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return nil, false
	}
	return b, true
}

// unmapMemory gives back a mapping from mapMemory, whole (b at its full
// length). Nothing may use b afterwards. A failure (a bug: not a whole
// mapping) leaves the mapping in place and is counted for the tests.
func unmapMemory(b []byte) {
	if err := unix.Munmap(b); err != nil {
		unmapFailures.Add(1)
	}
}
