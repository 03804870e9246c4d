package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

// canMapMemory reports whether memories are mapped on this platform.
func canMapMemory() bool {
	b, ok := mapMemory(pageBytes)
	if ok {
		unmapMemory(b)
	}
	return ok
}

// TestSpareMemoryStartsZero: a memory built on a closed instance's array
// (sparePool) reads as zero everywhere it grows into, whatever the last
// owner wrote, and is bounded by the new owner's limit; for mapped memories
// (where the platform has them) and heap ones alike.
func TestSpareMemoryStartsZero(t *testing.T) {
	const size = 4 * pageBytes
	for _, mapped := range []bool{true, false} {
		t.Run(fmt.Sprint("mapped=", mapped), func(t *testing.T) {
			if mapped && !canMapMemory() {
				t.Skip("no mapped memory on this platform")
			}
			spare := &sparePool{}
			t.Cleanup(spare.release)
			alloc := func(c *callMemory, capBytes, maxBytes uint64) *linearMemory {
				if mapped {
					return c.Allocate(capBytes, maxBytes).(*linearMemory)
				}
				return c.heapMemory(capBytes)
			}
			var old []*linearMemory
			for range 3 {
				m := alloc(&callMemory{limitBytes: 1 << 30, spare: spare}, size, 16*pageBytes)
				if m.mapped != mapped {
					t.Fatalf("mapped = %v", m.mapped)
				}
				b := m.Reallocate(size)
				for i := range b {
					b[i] = 0xAA
				}
				old = append(old, m)
			}
			for _, m := range old {
				m.Free()
			}
			if n := len(spare.kept); n != 3 {
				t.Fatalf("%d arrays kept, want 3", n)
			}
			// Mapped: the pool counts what was touched (4 pages each), not
			// the 16 pages reserved.
			if spare.bytes != 3*size {
				t.Fatalf("pool counts %d bytes, want %d", spare.bytes, 3*size)
			}
			m := alloc(&callMemory{limitBytes: 8 * pageBytes, spare: spare}, pageBytes, 8*pageBytes)
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
		})
	}
}

// TestMappedMemoryGrowsInPlace: a mapped memory reserves the lower of the
// call's limit and the module's maximum, grows without moving (wazero's
// slice stays valid), refuses past the limit without touching what it has,
// and its pages count nowhere on the Go heap.
func TestMappedMemoryGrowsInPlace(t *testing.T) {
	if !canMapMemory() {
		t.Skip("no mapped memory on this platform")
	}
	for _, tc := range []struct{ limit, max, reserve uint64 }{
		{8 * pageBytes, 64 * pageBytes, 8 * pageBytes},
		{64 * pageBytes, 8 * pageBytes, 8 * pageBytes},
	} {
		c := &callMemory{limitBytes: tc.limit}
		m := c.Allocate(pageBytes, tc.max).(*linearMemory)
		if !m.mapped || uint64(cap(m.buf)) != tc.reserve {
			t.Fatalf("limit %d max %d: mapped %v, reserved %d, want %d", tc.limit, tc.max, m.mapped, cap(m.buf), tc.reserve)
		}
		first := m.Reallocate(pageBytes)
		first[0] = 1
		b := m.Reallocate(tc.reserve)
		if &b[0] != &first[0] || len(b) != int(tc.reserve) || b[0] != 1 {
			t.Fatalf("growing moved or lost the memory")
		}
		if cap(b) != len(b) {
			t.Fatalf("wazero's slice has capacity %d past its length %d", cap(b), len(b))
		}
		b[len(b)-1] = 2
		if m.Reallocate(tc.reserve+pageBytes) != nil {
			t.Fatal("growing over the reservation was not refused")
		}
		if refused := c.refused.Load(); refused != (tc.limit == tc.reserve) {
			t.Fatalf("refused = %v for limit %d", refused, tc.limit)
		}
		if b[0] != 1 || b[len(b)-1] != 2 {
			t.Fatal("a refused grow changed the memory")
		}
		m.Free() // no pool: unmapped
	}
	if n := unmapFailures.Load(); n != 0 {
		t.Fatalf("%d unmaps failed", n)
	}
}

// TestSparePoolHoldsMemoryFreedWhileClosing: memories freed while the
// runtime closes (possibly under running calls) stay mapped and are never
// handed out until release, which unmaps them; afterwards frees unmap.
func TestSparePoolHoldsMemoryFreedWhileClosing(t *testing.T) {
	if !canMapMemory() {
		t.Skip("no mapped memory on this platform")
	}
	spare := &sparePool{}
	c := &callMemory{limitBytes: 4 * pageBytes, spare: spare}
	kept := c.Allocate(0, 4*pageBytes).(*linearMemory)
	kept.Reallocate(pageBytes)
	kept.Free()
	running := c.Allocate(0, 4*pageBytes).(*linearMemory)
	if len(spare.kept) != 0 {
		t.Fatal("the kept memory was not handed out")
	}
	b := running.Reallocate(2 * pageBytes)
	spare.close()
	running.Free()
	b[len(b)-1] = 7 // a guest still running writes on: still mapped
	if _, ok := spare.take(pageBytes, true); ok || len(spare.late) != 1 {
		t.Fatalf("a memory freed while closing was handed out or lost (%d noted)", len(spare.late))
	}
	spare.release()
	if len(spare.late) != 0 || len(spare.kept) != 0 || !spare.closed {
		t.Fatal("release kept memories")
	}
	after := c.Allocate(0, 4*pageBytes).(*linearMemory)
	after.Reallocate(pageBytes)
	after.Free()
	if len(spare.kept) != 0 {
		t.Fatal("a released pool kept a memory")
	}
	if n := unmapFailures.Load(); n != 0 {
		t.Fatalf("%d unmaps failed", n)
	}
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

// sleb appends v as a signed LEB128 (an i32.const operand).
func sleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// commandModule encodes a hand-assembled command module whose _start has
// body (locals declaration included) and whose one-page memory holds data
// at address 0. It imports fd_write (function 0), proc_exit (1) and
// poll_oneoff (2).
func commandModule(body, data []byte) []byte {
	const (
		i32     = 0x7f
		funcTyp = 0x60
	)
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	// Types: 0 = fd_write (i32 i32 i32 i32) -> i32, 1 = proc_exit (i32) -> (), 2 = () -> ().
	out = wasmtest.AppendSection(out, 1, []byte{3,
		funcTyp, 4, i32, i32, i32, i32, 1, i32,
		funcTyp, 1, i32, 0,
		funcTyp, 0, 0})
	imp := []byte{3}
	imp = append(wasmtest.AppendName(wasmtest.AppendName(imp, "wasi_snapshot_preview1"), "fd_write"), 0x00, 0)
	imp = append(wasmtest.AppendName(wasmtest.AppendName(imp, "wasi_snapshot_preview1"), "proc_exit"), 0x00, 1)
	imp = append(wasmtest.AppendName(wasmtest.AppendName(imp, "wasi_snapshot_preview1"), "poll_oneoff"), 0x00, 0)
	out = wasmtest.AppendSection(out, 2, imp)
	out = wasmtest.AppendSection(out, 3, []byte{1, 2})
	out = wasmtest.AppendSection(out, 5, []byte{1, 0x00, 1}) // one memory, min 1 page
	exp := append(wasmtest.AppendName([]byte{2}, "_start"), 0x00, 3)
	exp = append(wasmtest.AppendName(exp, "memory"), 0x02, 0)
	out = wasmtest.AppendSection(out, 7, exp)
	out = wasmtest.AppendSection(out, 10, append(binary.AppendUvarint([]byte{1}, uint64(len(body))), body...))
	seg := binary.AppendUvarint([]byte{1, 0x00, 0x41, 0, 0x0b}, uint64(len(data)))
	out = wasmtest.AppendSection(out, 11, append(seg, data...))
	return out
}

// snoopModule is a hand-assembled command module that reports what an
// earlier instance left in its memory: _start grows the memory from 1 to 4
// pages, writes the bytes at addresses 1000 (first page, past the data) and
// 3*65536+100 (a grown page) to stdout, then stores 0xAA at both, for the
// next instance to find if memories were handed over dirty.
func snoopModule() []byte {
	const (
		addrA = 1000
		addrB = 3*pageBytes + 100
		msg   = 16 // the two reported bytes
	)
	body := []byte{0, 0x41, 3, 0x40, 0x00, 0x1a} // drop(memory.grow(3))
	for i, addr := range []int64{addrA, addrB} {
		body = sleb(append(body, 0x41), msg+int64(i))
		body = sleb(append(body, 0x41), addr)
		body = append(body, 0x2d, 0, 0, 0x3a, 0, 0) // store8(msg+i, load8_u(addr))
		body = sleb(append(body, 0x41), addr)
		body = sleb(append(body, 0x41), 0xAA)
		body = append(body, 0x3a, 0, 0) // store8(addr, 0xAA)
	}
	body = append(body,
		0x41, 1, 0x41, 0, 0x41, 1, 0x41, 8, 0x10, 0, 0x1a, // drop(fd_write(1, iovs=0, 1, nwritten=8))
		0x41, 0, 0x10, 1, // proc_exit(0)
		0x0b)
	data := make([]byte, 16, 18)
	binary.LittleEndian.PutUint32(data[0:], msg)
	binary.LittleEndian.PutUint32(data[4:], 2)
	return commandModule(body, append(data, '?', '?'))
}

// TestCloseUnderRunningCall: a runtime closed (its context ending first)
// while a guest runs frees the guest's memory under it; the memory stays
// mapped until the call is out, and is unmapped then. The guest sleeps in
// poll_oneoff when the runtime closes, and stores to its memory when it
// wakes: were the memory unmapped by then, that store would crash the
// process.
func TestCloseUnderRunningCall(t *testing.T) {
	if raceDetector {
		// wazero itself races here: closing the runtime clears the
		// module's WASI context (ModuleInstance.Sys) while the guest's
		// poll_oneoff reads it, unsynchronized; ours is not in question.
		t.Skip("wazero's close under a running host call is a data race")
	}
	ctx := context.Background()
	rt, err := New(ctx, Config{CacheDir: sharedCacheDir}, NewMemoryStore())
	if err != nil {
		t.Fatal(err)
	}
	// loop { poll_oneoff(subscriptions=0, events=100, 1, nevents=200);
	// store8(60000, 1) }: one relative clock subscription of 500 ms at
	// address 0, and a store as soon as the sleep is over (wazero checks
	// for a closed module only at loop heads and calls).
	sub := make([]byte, 48)
	binary.LittleEndian.PutUint32(sub[16:], 1) // clock id: monotonic
	binary.LittleEndian.PutUint64(sub[24:], uint64(500*time.Millisecond))
	body := []byte{0, 0x03, 0x40} // loop
	for _, arg := range []int64{0, 100, 1, 200} {
		body = sleb(append(body, 0x41), arg)
	}
	body = append(body, 0x10, 2, 0x1a) // drop(poll_oneoff(...))
	body = sleb(append(body, 0x41), 60000)
	body = append(body, 0x41, 1, 0x3a, 0, 0, // store8(60000, 1)
		0x0c, 0x00, 0x0b, 0x0b) // br 0; end loop; end
	info, err := rt.Prepare(ctx, commandModule(body, sub))
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan Response, 1)
	go func() {
		resp, _ := rt.Run(ctx, info.SHA256, Request{Method: "GET"}, Limits{Timeout: time.Minute})
		ran <- resp
	}()
	// Prepare's trial instance left its memory in the pool; the call's
	// instance takes it, then its _start goes to sleep at once.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		rt.spare.mu.Lock()
		kept := len(rt.spare.kept)
		rt.spare.mu.Unlock()
		if kept == 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the call did not start")
		}
	}
	time.Sleep(100 * time.Millisecond) // the guest sleeps in poll_oneoff
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_ = rt.Close(cctx)
	rt.spare.mu.Lock()
	late := len(rt.spare.late)
	rt.spare.mu.Unlock()
	if late != 1 {
		t.Fatalf("%d memories noted while closing, want the running guest's", late)
	}
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not return after the runtime closed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		rt.spare.mu.Lock()
		closed, late, kept := rt.spare.closed, len(rt.spare.late), len(rt.spare.kept)
		rt.spare.mu.Unlock()
		if closed && late == 0 && kept == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spare pool not released after the call: closed %v, %d noted, %d kept", closed, late, kept)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := unmapFailures.Load(); n != 0 {
		t.Fatalf("%d unmaps failed", n)
	}
}

// TestNextInstanceSeesZeroes: what one consumer's instance wrote to its
// memory (in its first page and in pages it grew into) reads as zero in the
// next instances, whoever runs them, though their memories are the closed
// instances' (kept mapped in the spare pool where the platform maps
// memories).
func TestNextInstanceSeesZeroes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rt := newRuntime(t, Config{}, nil)
	info, err := rt.Prepare(ctx, snoopModule())
	if err != nil {
		t.Fatal(err)
	}
	for i, who := range []string{"alice", "alice", "bob", "carol"} {
		resp, err := rt.Run(ctx, info.SHA256, Request{Method: "GET", LogKey: who}, Limits{Timeout: 30 * time.Second})
		if err != nil || resp.Status != 200 {
			t.Fatalf("run %d (%s): %+v %v", i, who, resp, err)
		}
		if string(resp.Body) != "\x00\x00" {
			t.Fatalf("run %d (%s) found %q in its new memory, want zeroes", i, who, resp.Body)
		}
		rt.spare.mu.Lock()
		kept := slices.Clone(rt.spare.kept)
		rt.spare.mu.Unlock()
		if len(kept) != 1 {
			t.Fatalf("after run %d the pool keeps %d memories, want 1", i, len(kept))
		}
		if canMapMemory() && (!kept[0].mapped || kept[0].dirty != 4*pageBytes) {
			t.Fatalf("kept memory: mapped %v, %d bytes touched; want mapped, 4 pages", kept[0].mapped, kept[0].dirty)
		}
	}
}
