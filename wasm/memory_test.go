package wasm

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSpareMemoryStartsZero: a memory built on a closed instance's array
// (sparePool) reads as zero everywhere it grows into, whatever the last
// owner wrote, and is bounded by the new owner's limit.
func TestSpareMemoryStartsZero(t *testing.T) {
	const size = 4 * pageBytes
	spare := &sparePool{}
	var old []*linearMemory
	for range 3 {
		m := (&callMemory{limitBytes: 1 << 30, spare: spare}).Allocate(size, size).(*linearMemory)
		b := m.Reallocate(size)
		for i := range b {
			b[i] = 0xAA
		}
		old = append(old, m)
	}
	for _, m := range old {
		m.Free()
	}
	if n := len(spare.bufs); n != 3 {
		t.Fatalf("%d arrays kept, want 3", n)
	}
	m := (&callMemory{limitBytes: 8 * pageBytes, spare: spare}).Allocate(pageBytes, pageBytes).(*linearMemory)
	if cap(m.buf) < size {
		t.Fatalf("new memory did not take a kept array (cap %d)", cap(m.buf))
	}
	b := m.Reallocate(pageBytes)
	b = m.Reallocate(2 * pageBytes)
	b = m.Reallocate(6 * pageBytes)
	if len(b) != 6*pageBytes || !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("new memory of %d bytes is not all zero", len(b))
	}
	if m.Reallocate(9*pageBytes) != nil || !m.owner.refused.Load() {
		t.Fatal("growing over the limit was not refused")
	}
	m.Free()
}

// TestFreshInstanceSeesNoOldMemory: a Go guest run after another consumer's
// calls (whose closed instances' arrays are kept as spares) starts from a
// clean memory: its answer is the same as on a new runtime.
func TestFreshInstanceSeesNoOldMemory(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{ReuseMaxCalls: 1})
	for range 3 {
		echo(t, rt, sha, "alice", "", Limits{})
	}
	resp, err := rt.RunReused(context.Background(), sha, "bob", Request{Method: "GET"}, Limits{Timeout: 30 * time.Second})
	if err != nil || resp.Status != 200 || !strings.Contains(string(resp.Body), "body=0 calls=1 ") {
		t.Fatalf("bob after alice's closed instances: %+v %v", resp, err)
	}
}
