//go:build !(linux || darwin)

package wasm

// mapMemory is not used on this platform: memories live on the Go heap.
func mapMemory(uint64) ([]byte, bool) { return nil, false }

// unmapMemory is never called on this platform.
func unmapMemory([]byte) {}
