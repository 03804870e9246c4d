//go:build wasip1

// Command guest is the test function for package wasm: ?mode= picks a
// behaviour (echo, created, custom, env, loop, alloc, big, counter, stderr,
// badstatus, sleep, time, rand, exit, panic) so one module covers every case of the CGI contract and the
// limits.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// calls counts main's runs in this instance: a fresh instance per call keeps
// it at 1.
var calls int

// sink keeps allocations alive so the compiler cannot drop them.
var sink [][]byte

func main() {
	calls++
	q, _ := url.ParseQuery(os.Getenv("QUERY_STRING"))
	n, _ := strconv.Atoi(q.Get("n"))
	switch q.Get("mode") {
	case "echo": // no header block: the whole stdout is the body
		_, _ = io.Copy(os.Stdout, os.Stdin)
	case "created":
		fmt.Print("Content-Type: application/json\nStatus: 201 Created\n\n{\"created\":true}")
	case "custom":
		fmt.Print("X-Custom: yes\r\nX-Multi: a\r\nX-Multi: b\r\n\r\ncustom body")
	case "env":
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		fmt.Print("Content-Type: application/json\n\n")
		_ = json.NewEncoder(os.Stdout).Encode(env)
	case "loop":
		for i := 0; ; i++ {
			if i < 0 {
				break
			}
		}
	case "alloc": // n MiB, touched
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			sink = append(sink, b)
		}
		fmt.Printf("allocated %d MiB", n)
	case "big": // n bytes of body
		chunk := []byte(strings.Repeat("x", 4096))
		for w := 0; w < n; w += len(chunk) {
			if _, err := os.Stdout.Write(chunk[:min(len(chunk), n-w)]); err != nil {
				fmt.Fprintf(os.Stderr, "write: %v\n", err)
				os.Exit(1)
			}
		}
	case "counter":
		fmt.Print(calls)
	case "stderr": // n lines on stderr, then a body
		for i := 0; i < n; i++ {
			fmt.Fprintf(os.Stderr, "line %d\n", i)
		}
		fmt.Print("logged")
	case "badstatus":
		fmt.Print("Status: great\n\nbody")
	case "sleep": // n milliseconds
		time.Sleep(time.Duration(n) * time.Millisecond)
		fmt.Print("slept")
	case "time":
		fmt.Print(time.Now().Unix())
	case "rand":
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		fmt.Print(hex.EncodeToString(b))
	case "exit":
		fmt.Print("partial")
		os.Exit(3)
	case "panic":
		panic("guest panic")
	default:
		fmt.Print("Status: 400\n\nunknown mode")
	}
}
