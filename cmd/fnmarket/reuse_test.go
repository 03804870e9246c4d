package main

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// buildReactor compiles one of examples/ as a WASI reactor (GOOS=wasip1
// GOARCH=wasm, -buildmode=c-shared), as instance_reuse needs.
func buildReactor(t *testing.T, name string) []byte {
	t.Helper()
	return buildExample(t, name, "-buildmode=c-shared")
}

// echoAnswer is what reuse-echo tells of the instance that served a call.
type echoAnswer struct {
	calls    int
	instance string
}

// parseEcho reads the calls= and instance= fields of a reuse-echo answer.
func parseEcho(t *testing.T, body string) echoAnswer {
	t.Helper()
	_, rest, ok := strings.Cut(strings.TrimSpace(body), "calls=")
	calls, instance, ok2 := strings.Cut(rest, " instance=")
	n, err := strconv.Atoi(calls)
	if !ok || !ok2 || err != nil || instance == "" {
		t.Fatalf("answer %q is not reuse-echo's", body)
	}
	return echoAnswer{n, instance}
}

// TestReuseThroughGateway: the whole product, with reuse-echo published with
// "instance_reuse": true. Two consumers calling it, one after the other and
// then at once, never reach each other's instance: no instance id is seen by
// both, and each instance's call counter runs 1..k over exactly the calls
// its consumer made on it. A trapped instance is replaced: the next call
// runs on a new instance that starts counting at 1.
func TestReuseThroughGateway(t *testing.T) {
	module := buildReactor(t, "reuse-echo")
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			env["FNMARKET_RATE_LIMIT_PER_KEY"] = "0"
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			c.publishFunction("echo", map[string]any{"type": "wasm", "module_base64": base64.StdEncoding.EncodeToString(module), "instance_reuse": true},
				map[string]any{"per_call": "0.001", "per_compute_ms": "0.00001"})
			keys := map[string]string{}
			for _, who := range []string{"alice", "bob"} {
				tok := c.signup(who + "@example.com")
				keys[who] = c.call("POST", "/api/v1/keys", tok, map[string]any{"name": "k"}, 201)["key"].(string)
			}
			var mu sync.Mutex
			seen := map[string][]echoAnswer{} // consumer -> answers
			call := func(who, query string) (int, string) {
				res, body := c.invoke("/v1/invoke/acme/echo"+query, keys[who], "hello")
				if res.StatusCode == 200 {
					a := parseEcho(t, body)
					mu.Lock()
					seen[who] = append(seen[who], a)
					mu.Unlock()
				}
				return res.StatusCode, body
			}

			// Interleaved: each consumer's counter counts only its own calls.
			for i := 1; i <= 3; i++ {
				for _, who := range []string{"alice", "bob"} {
					if code, body := call(who, ""); code != 200 || parseEcho(t, body).calls != i {
						t.Fatalf("%s's call %d: %d %q, want 200 and calls=%d", who, i, code, body, i)
					}
				}
			}
			// At once: four callers per consumer.
			var wg sync.WaitGroup
			for _, who := range []string{"alice", "bob"} {
				for range 4 {
					wg.Go(func() {
						for range 10 {
							if code, body := call(who, ""); code != 200 {
								t.Errorf("%s: %d %q", who, code, body)
								return
							}
						}
					})
				}
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			owner := map[string]string{}
			counts := map[string][]int{}
			for who, answers := range seen {
				for _, a := range answers {
					if o, ok := owner[a.instance]; ok && o != who {
						t.Fatalf("instance %s served both %s and %s", a.instance, o, who)
					}
					owner[a.instance] = who
					counts[a.instance] = append(counts[a.instance], a.calls)
				}
			}
			for in, cs := range counts {
				slices.Sort(cs)
				for i, n := range cs {
					if n != i+1 {
						t.Fatalf("instance %s (%s) counted %v, want 1..%d: a call of another consumer, or a lost one", in, owner[in], cs, len(cs))
					}
				}
			}
			if n := len(seen["alice"]) + len(seen["bob"]); n != 86 {
				t.Fatalf("%d answers, want 86", n)
			}

			// A trap throws the instance away; the next call gets a new one.
			// carol calls one at a time, so she has one instance at most.
			tok := c.signup("carol@example.com")
			keys["carol"] = c.call("POST", "/api/v1/keys", tok, map[string]any{"name": "k"}, 201)["key"].(string)
			var got []echoAnswer
			for _, q := range []string{"", "", "?fail=trap", ""} {
				code, body := call("carol", q)
				if q != "" {
					if code != 500 {
						t.Fatalf("trap: %d %q, want 500", code, body)
					}
					continue
				}
				if code != 200 {
					t.Fatalf("carol: %d %q", code, body)
				}
				got = append(got, parseEcho(t, body))
			}
			if got[0].calls != 1 || got[1] != (echoAnswer{2, got[0].instance}) {
				t.Fatalf("carol's first two calls %v, want one instance counting 1, 2", got[:2])
			}
			if got[2].calls != 1 || got[2].instance == got[0].instance || owner[got[2].instance] != "" {
				t.Fatalf("after a trap carol's call ran on %v, want a new instance counting 1 (the trapped one was %s)", got[2], got[0].instance)
			}
		})
	}
}
