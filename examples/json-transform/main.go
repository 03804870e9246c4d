//go:build wasip1

// Command json-transform is an example fnmarket function for GOOS=wasip1
// GOARCH=wasm: it reads a JSON object from the request body and answers it
// with every key rewritten in snake_case and every string value trimmed, plus
// a count of the fields it saw. It shows the CGI contract: the request body
// on stdin, the request in environment variables, and a header block, an
// empty line and the body on stdout.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

func main() {
	if m := os.Getenv("REQUEST_METHOD"); m != "POST" && m != "PUT" {
		answer(405, map[string]string{"error": "send a JSON object with POST"})
		return
	}
	var in map[string]any
	if err := json.NewDecoder(io.LimitReader(os.Stdin, 1<<20)).Decode(&in); err != nil {
		// Stderr goes to the vendor's log, never to the consumer.
		fmt.Fprintf(os.Stderr, "bad input: %v\n", err)
		answer(400, map[string]string{"error": "the body must be a JSON object"})
		return
	}
	out, n := transform(in)
	answer(200, map[string]any{"fields": n, "result": out})
}

// transform rewrites keys in snake_case and trims strings, recursively, and
// counts the fields it rewrote.
func transform(v any) (any, int) {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		n := 0
		for k, val := range x {
			tv, c := transform(val)
			out[snake(k)] = tv
			n += 1 + c
		}
		return out, n
	case []any:
		out := make([]any, len(x))
		n := 0
		for i, val := range x {
			tv, c := transform(val)
			out[i] = tv
			n += c
		}
		return out, n
	case string:
		return strings.TrimSpace(x), 0
	default:
		return v, 0
	}
}

// snake turns "userName" and "User Name" into "user_name".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == ' ' || r == '-':
			b.WriteByte('_')
		case unicode.IsUpper(r):
			if i > 0 && !strings.HasSuffix(b.String(), "_") {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// answer writes the CGI header block, the empty line and a JSON body.
func answer(status int, body any) {
	fmt.Printf("Content-Type: application/json\nStatus: %d\n\n", status)
	_ = json.NewEncoder(os.Stdout).Encode(body)
}
