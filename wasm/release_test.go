package wasm

import (
	"sync/atomic"
	"testing"
	"time"
)

// A burst of compiles leads to one release, after the last of them; a
// compile after that leads to another.
func TestHeapReleaserRunsOnceAfterABurst(t *testing.T) {
	var runs atomic.Int32
	h := &heapReleaser{delay: 300 * time.Millisecond, release: func() { runs.Add(1) }}
	for range 5 {
		h.compiled()
	}
	if n := runs.Load(); n != 0 {
		t.Fatalf("released %d times during the burst, want 0", n)
	}
	waitFor(t, func() bool { return runs.Load() == 1 })
	time.Sleep(600 * time.Millisecond)
	if n := runs.Load(); n != 1 {
		t.Fatalf("released %d times after one burst, want 1", n)
	}
	h.compiled()
	waitFor(t, func() bool { return runs.Load() == 2 })
	h.compiled()
	h.stop()
	time.Sleep(600 * time.Millisecond)
	if n := runs.Load(); n != 2 {
		t.Fatalf("released %d times, want 2: stop cancels the pending release", n)
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
