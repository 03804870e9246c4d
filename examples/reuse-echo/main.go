//go:build wasip1

// Command reuse-echo is an example fnmarket function for instance reuse
// ("instance_reuse": true): a WASI reactor, built with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fn.wasm ./examples/reuse-echo
//
// Its Go runtime starts once (in _initialize), then fnmarket calls the
// exported handle once per request on the same instance. Per call, stdin
// holds the request frame (the CGI variables, one NAME=value line each,
// ending with an empty line) followed by the body; handle writes a CGI
// answer (headers, an empty line, the body) to stdout and returns 0.
//
// It answers, as text/plain, the method, the path, the query, the
// X-Greeting header, the body's length, and how many calls this instance
// has served with the instance's random id: state that lives as long as the
// instance, which fnmarket keeps for one consumer only. ?fail=trap panics, ?fail=code returns 1 and
// ?fail=loop spins until the call's timeout stops it: each time the
// instance is thrown away and the next call gets a new one.
package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {}

// calls and instance survive from one call to the next on the same
// instance; instance is set once, when the instance starts. in and env are
// kept too, emptied at the start of each call: a reused instance need not
// allocate them per request (here that halved the time in handle).
var (
	calls    int
	instance = rand.Text()[:8]
	hog      [][]byte
	in       = bufio.NewReader(os.Stdin)
	env      = map[string]string{}
)

//go:wasmexport handle
func handle() int32 {
	in.Reset(os.Stdin) // drops anything a previous request left unread
	clear(env)
	if err := readFrame(in, env); err != nil {
		return 1
	}
	body, err := io.Copy(io.Discard, in)
	if err != nil {
		return 1
	}
	calls++
	switch {
	case strings.Contains(env["QUERY_STRING"], "fail=trap"):
		panic("asked to trap")
	case strings.Contains(env["QUERY_STRING"], "fail=code"):
		return 1
	case strings.Contains(env["QUERY_STRING"], "fail=mem"):
		hog = append(hog, make([]byte, 128<<20))
	case strings.Contains(env["QUERY_STRING"], "fail=loop"):
		for n := 0; ; n++ {
			calls += n & 1
		}
	}
	fmt.Fprintf(os.Stdout, "Content-Type: text/plain\n\nmethod=%s path=%s query=%s greeting=%s body=%d calls=%d instance=%s\n",
		env["REQUEST_METHOD"], env["PATH_INFO"], env["QUERY_STRING"], env["HTTP_X_GREETING"], body, calls, instance)
	return 0
}

// readFrame reads the request frame into env: NAME=value lines up to an
// empty line. Read it anew on every call: each call's stdin is a new request.
func readFrame(in *bufio.Reader, env map[string]string) error {
	for {
		line, err := in.ReadSlice('\n')
		if err == bufio.ErrBufferFull { // a line longer than the buffer
			head := string(line) // copied: the next read reuses the buffer
			var rest string
			rest, err = in.ReadString('\n')
			line = []byte(head + rest)
		}
		if err != nil {
			return err
		}
		line = line[:len(line)-1]
		if len(line) == 0 {
			return nil
		}
		name, value, _ := strings.Cut(string(line), "=")
		env[name] = value
	}
}
