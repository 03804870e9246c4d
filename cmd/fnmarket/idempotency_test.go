package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestIdempotentRetryAfterBrokenConnection: a call whose client connection
// breaks before the answer still runs to its end and is billed; the retry
// with the same Idempotency-Key replays that answer, and the consumer is
// billed one call.
func TestIdempotentRetryAfterBrokenConnection(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			var calls atomic.Int64
			arrived, finish := make(chan struct{}), make(chan struct{})
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if calls.Add(1) == 1 {
					close(arrived)
					<-finish
				}
				_, _ = fmt.Fprintf(w, "charged %s", body)
			}))
			defer upstream.Close()
			env := baseEnv(t, b)
			env["FNMARKET_ROLLUP_INTERVAL"] = "300ms"
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			c.publishFunction("charge", map[string]any{"type": "http", "url": upstream.URL}, map[string]any{"per_call": "0.01", "per_compute_ms": "0", "free_calls_per_month": 5})
			tok := c.signup("c@example.com")
			key := c.call("POST", "/api/v1/keys", tok, map[string]any{"name": "k"}, 201)["key"].(string)

			// The first call, on a raw connection that breaks before the answer.
			host := strings.TrimPrefix(inst.url, "http://")
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST /v1/invoke/acme/charge HTTP/1.1\r\nHost: %s\r\nX-API-Key: %s\r\nIdempotency-Key: order-7\r\nContent-Length: 3\r\n\r\n$10", host, key)
			<-arrived
			_ = conn.Close()
			close(finish)

			retry := func() (*http.Response, string) {
				req, _ := http.NewRequest("POST", inst.url+"/v1/invoke/acme/charge", strings.NewReader("$10"))
				req.Header.Set("X-API-Key", key)
				req.Header.Set("Idempotency-Key", "order-7")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				raw, _ := io.ReadAll(res.Body)
				return res, string(raw)
			}
			var res *http.Response
			var body string
			// Until the first call has finished, the retry gets 409.
			eventually(t, 10*time.Second, "the retry is answered", func() bool {
				res, body = retry()
				return res.StatusCode != http.StatusConflict
			})
			if res.StatusCode != 200 || body != "charged $10" || res.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("retry: %d %q replayed %q", res.StatusCode, body, res.Header.Get("Idempotent-Replayed"))
			}
			if res.Header.Get("X-Cost") == "" {
				t.Errorf("the replay has no X-Cost")
			}
			if n := calls.Load(); n != 1 {
				t.Fatalf("the function ran %d times; want 1", n)
			}
			eventually(t, 10*time.Second, "the call rolled up", func() bool { return usageCalls(t, inst.url, tok) >= 1 })
			time.Sleep(time.Second) // a few more roll-ups: nothing may be added twice
			if n := usageCalls(t, inst.url, tok); n != 1 {
				t.Fatalf("usage shows %d calls; want 1", n)
			}
			// The same key with another body is refused.
			req, _ := http.NewRequest("POST", inst.url+"/v1/invoke/acme/charge", strings.NewReader("$99"))
			req.Header.Set("X-API-Key", key)
			req.Header.Set("Idempotency-Key", "order-7")
			mm, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			mm.Body.Close()
			if mm.StatusCode != 422 {
				t.Errorf("another body with the same key: %d, want 422", mm.StatusCode)
			}
		})
	}
}

// checkIdempotencyOnCluster runs the Redis idempotency store over many API
// key ids, which hash to slots on every master of the cluster at seeds.
func checkIdempotencyOnCluster(t *testing.T, seeds string) {
	t.Helper()
	ctx := context.Background()
	conn, err := redisx.Open(ctx, seeds)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s := redisx.NewIdempotency(conn, "fnm:")
	for i := 0; i < 30; i++ {
		scope := fmt.Sprintf("key-%d", i)
		lock, answer := []byte("L"+scope), []byte("A"+scope)
		if _, claimed, err := s.Claim(ctx, scope, "k", lock, time.Minute); err != nil || !claimed {
			t.Fatalf("claim %s: %v %v", scope, claimed, err)
		}
		if held, claimed, err := s.Claim(ctx, scope, "k", []byte("Lother"), time.Minute); err != nil || claimed || string(held) != string(lock) {
			t.Fatalf("second claim %s: %q %v %v", scope, held, claimed, err)
		}
		if ok, err := s.Replace(ctx, scope, "k", lock, answer, time.Hour); err != nil || !ok {
			t.Fatalf("replace %s: %v %v", scope, ok, err)
		}
		if held, _, err := s.Claim(ctx, scope, "k", lock, time.Minute); err != nil || string(held) != string(answer) {
			t.Fatalf("kept answer %s: %q %v", scope, held, err)
		}
		if err := s.Release(ctx, scope, "k", answer); err != nil {
			t.Fatal(err)
		}
	}
}

// idempotentCallOnCluster calls the product twice with one Idempotency-Key
// and checks the second answer is a replay.
func idempotentCallOnCluster(t *testing.T, base, key string) {
	t.Helper()
	var first string
	for i, want := range []string{"", "true"} {
		req, _ := http.NewRequest("POST", base+"/v1/invoke/acme/echo", strings.NewReader("x"))
		req.Header.Set("X-API-Key", key)
		req.Header.Set("Idempotency-Key", "cluster-1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = bufio.NewReader(res.Body).WriteTo(io.Discard)
		res.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("Idempotent-Replayed") != want {
			t.Fatalf("idempotent call %d: %d replayed %q", i, res.StatusCode, res.Header.Get("Idempotent-Replayed"))
		}
		if i == 0 {
			first = res.Header.Get("X-Invocation-Id")
		} else if got := res.Header.Get("X-Invocation-Id"); got != first {
			t.Errorf("replayed X-Invocation-Id %q, want %q", got, first)
		}
	}
}
