//go:build wasip1

// Command sha-hash is an example fnmarket function for GOOS=wasip1
// GOARCH=wasm: a CPU-bound hash. It answers the hex SHA-256 of the request
// body, hashed again ?rounds=N times (1 by default, at most 1,000,000), as
// text/plain. With ?rounds large it shows what per-compute-millisecond
// pricing is for.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
)

const maxRounds = 1_000_000

func main() {
	q, err := url.ParseQuery(os.Getenv("QUERY_STRING"))
	if err != nil {
		fail(400, "the query string does not parse")
		return
	}
	rounds := 1
	if s := q.Get("rounds"); s != "" {
		rounds, err = strconv.Atoi(s)
		if err != nil || rounds < 1 || rounds > maxRounds {
			fail(400, fmt.Sprintf("rounds must be a whole number from 1 to %d", maxRounds))
			return
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, os.Stdin); err != nil {
		fmt.Fprintf(os.Stderr, "read body: %v\n", err)
		fail(500, "could not read the body")
		return
	}
	sum := h.Sum(nil)
	for i := 1; i < rounds; i++ {
		s := sha256.Sum256(sum)
		sum = s[:]
	}
	fmt.Printf("Content-Type: text/plain; charset=utf-8\nX-Rounds: %d\n\n%s\n", rounds, hex.EncodeToString(sum))
}

// fail answers status with a one-line text body.
func fail(status int, msg string) {
	fmt.Printf("Content-Type: text/plain; charset=utf-8\nStatus: %d\n\n%s\n", status, msg)
}
