//go:build wasip1

// Command reactor is the instance-reuse experiment of bench_test.go: built
// with -buildmode=c-shared it is a WASI reactor whose Go runtime starts once
// (in _initialize), after which the host calls the exported handle once per
// request on the same instance. handle reads stdin to EOF and writes the hex
// SHA-256 of it to stdout, like examples/sha-hash with one round.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
)

func main() {}

//go:wasmexport handle
func handle() int32 {
	h := sha256.New()
	if _, err := io.Copy(h, os.Stdin); err != nil {
		return 1
	}
	if _, err := os.Stdout.WriteString(hex.EncodeToString(h.Sum(nil))); err != nil {
		return 1
	}
	return 0
}
