// Command wasmmin prints, base64-encoded, the minimal WebAssembly function
// the gateway load test calls: a hand-assembled module that writes a short
// body to stdout (no toolchain needed).
package main

import (
	"encoding/base64"
	"fmt"

	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

func main() {
	fmt.Print(base64.StdEncoding.EncodeToString(wasmtest.MinimalModule(wasmtest.Spec{Msg: `{"ok":true}`})))
}
