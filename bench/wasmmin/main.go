// Command wasmmin prints, base64-encoded, a minimal WebAssembly function
// the gateway load test calls: a hand-assembled module that writes a short
// body to stdout (no toolchain needed). By default a command module (_start,
// a fresh instance per call); with -reactor a WASI reactor (_initialize and
// handle) for "instance_reuse": true.
package main

import (
	"encoding/base64"
	"flag"
	"fmt"

	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

func main() {
	reactor := flag.Bool("reactor", false, "print the reactor for instance reuse instead of the command module")
	flag.Parse()
	const body = `{"ok":true}`
	code := wasmtest.MinimalModule(wasmtest.Spec{Msg: body})
	if *reactor {
		code = wasmtest.MinimalReactor(body)
	}
	fmt.Print(base64.StdEncoding.EncodeToString(code))
}
