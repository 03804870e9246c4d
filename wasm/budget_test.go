package wasm

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// holdSlots starts n looping calls of sha with memory limit pages and waits
// until the runtime has admitted them all; cancel ends them.
func holdSlots(t *testing.T, rt *Runtime, sha string, n int, pages uint32) (cancel func()) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, _ = rt.Run(ctx, sha, Request{Method: "GET"}, Limits{Timeout: time.Minute, MemoryPages: pages})
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for rt.admit.running() < n {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("only %d of %d looping calls started", rt.admit.running(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() { stop(); wg.Wait() }
}

// TestProcessWideBounds: calls over the memory budget or the concurrency
// limit wait for AdmissionWait, then get ErrBusy without running; once room
// is freed, calls run again.
func TestProcessWideBounds(t *testing.T) {
	t.Parallel()
	const pages = 16 // 1 MiB per call
	tests := []struct {
		name    string
		cfg     Config
		holders int
	}{
		// Room for two calls' memory, however many may run.
		{"memory budget", Config{MaxMemoryPages: pages, MemoryBudgetBytes: 2 * pages * pageBytes, MaxConcurrency: 100}, 2},
		// Room for two calls, however much memory.
		{"concurrency", Config{MaxMemoryPages: pages, MemoryBudgetBytes: 1000 * pages * pageBytes, MaxConcurrency: 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.AdmissionWait = 50 * time.Millisecond
			rt := newRuntime(t, cfg, nil)
			ctx := context.Background()
			loop, err := rt.Prepare(ctx, minimalModule(minimalSpec{Loop: true}))
			if err != nil {
				t.Fatal(err)
			}
			hello, err := rt.Prepare(ctx, minimalModule(minimalSpec{Msg: "hello"}))
			if err != nil {
				t.Fatal(err)
			}
			release := holdSlots(t, rt, loop.SHA256, tt.holders, pages)
			resp, err := rt.Run(ctx, hello.SHA256, Request{Method: "GET"}, Limits{Timeout: time.Second, MemoryPages: pages})
			if !errors.Is(err, ErrBusy) || fnmarket.ErrorCode(err) != fnmarket.EUNAVAILABLE || resp.Compute != 0 {
				t.Errorf("over the bounds: %+v, %v; want ErrBusy without running", resp, err)
			}
			// The invoker turns it into an unbilled 503 with Retry-After.
			w := httptest.NewRecorder()
			out, err := NewKind(rt).Invoke(w, httptest.NewRequest(http.MethodGet, "/v1/invoke/v/f", nil), &gateway.Invocation{
				ID: "x", Timeout: time.Second,
				Route: catalog.Route{Version: catalog.Version{Backend: catalog.Backend{Type: BackendWasm, Spec: backend.Spec(spec{ModuleSHA256: hello.SHA256, MemoryPages: pages})}}},
			})
			if fnmarket.HTTPStatus(fnmarket.ErrorCode(err)) != 503 || out.Reached || out.HeadersSent || w.Header().Get("Retry-After") == "" {
				t.Errorf("invoker over the bounds: %+v, %v, Retry-After %q; want unbilled 503 with Retry-After", out, err, w.Header().Get("Retry-After"))
			}
			release()
			resp, err = rt.Run(ctx, hello.SHA256, Request{Method: "GET"}, Limits{Timeout: 10 * time.Second, MemoryPages: pages})
			if err != nil || string(resp.Body) != "hello" {
				t.Errorf("after the holders ended: %+v (%q), %v; want hello", resp, resp.Body, err)
			}
			if n := rt.admit.running(); n != 0 {
				t.Errorf("%d calls still hold room after all ended", n)
			}
		})
	}
}

// TestBudgetBelowOneCallIsRefused: a budget that could never admit a call at
// MaxMemoryPages is a configuration error.
func TestBudgetBelowOneCallIsRefused(t *testing.T) {
	t.Parallel()
	_, err := New(context.Background(), Config{MaxMemoryPages: 64, MemoryBudgetBytes: 63 * pageBytes}, NewMemoryStore())
	if err == nil {
		t.Fatal("New accepted a memory budget below one call's limit")
	}
}
