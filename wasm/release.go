package wasm

import (
	"runtime/debug"
	"sync"
	"time"
)

// releaseAfterCompile is how long after the last compile the runtime hands
// the memory compiles left behind back to the operating system.
const releaseAfterCompile = 2 * time.Second

// heapReleaser returns freed heap to the operating system once compiles
// have stopped for a while. Compiling a module allocates several times the
// module's size and keeps little of it (a 2.9 MB Go module: about 50 MB of
// garbage); left to the collector, a gateway that has just compiled sits on
// that heap, and then on the pages the heap grew into, long after. One
// forced collection after a burst of compiles (a replica warming up, a
// vendor publishing) gives them back: BENCHMARKS.md, "Memory".
type heapReleaser struct {
	delay   time.Duration
	release func() // debug.FreeOSMemory outside tests

	mu    sync.Mutex
	timer *time.Timer
}

func newHeapReleaser() *heapReleaser {
	return &heapReleaser{delay: releaseAfterCompile, release: debug.FreeOSMemory}
}

// compiled notes a compile: the release runs delay after the last one.
func (h *heapReleaser) compiled() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer == nil {
		h.timer = time.AfterFunc(h.delay, h.release)
		return
	}
	h.timer.Reset(h.delay)
}

// stop cancels a pending release.
func (h *heapReleaser) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.timer != nil {
		h.timer.Stop()
	}
}
