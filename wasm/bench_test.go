package wasm

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/wasm/wasmtest"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// reportCompute adds the mean Compute per call, the part a consumer pays for.
func reportCompute(b *testing.B, total time.Duration, calls int) {
	b.ReportMetric(float64(total.Microseconds())/float64(max(calls, 1)), "compute-µs/op")
}

func mustRun(b *testing.B, rt *Runtime, sha string, req Request) Response {
	resp, err := rt.Run(context.Background(), sha, req, Limits{Timeout: 30 * time.Second})
	if err != nil || resp.Status >= 500 {
		b.Fatalf("run: %+v %v", resp, err)
	}
	return resp
}

// BenchmarkColdStart is the first call of a module: Prepare (validate,
// compile, store) then Run, on a runtime with an empty disk cache; and the
// first Run after a restart, when the module is on disk but not in memory.
func BenchmarkColdStart(b *testing.B) {
	ctx := context.Background()
	b.Run("minimal/prepare+run", func(b *testing.B) {
		rt := newRuntime(b, Config{CacheDir: b.TempDir()}, nil)
		for i := 0; b.Loop(); i++ {
			info, err := rt.Prepare(ctx, minimalModule(minimalSpec{Msg: fmt.Sprint("cold ", i)})) // new bytes: a true compile
			if err != nil {
				b.Fatal(err)
			}
			mustRun(b, rt, info.SHA256, Request{Method: "GET"})
		}
	})
	for _, name := range []string{"sha-hash"} {
		code := guests(b)[name]
		b.Run("go-"+name+"/prepare+run", func(b *testing.B) {
			for b.Loop() {
				rt, err := New(ctx, Config{CacheDir: b.TempDir()}, NewMemoryStore())
				if err != nil {
					b.Fatal(err)
				}
				info, err := rt.Prepare(ctx, code)
				if err != nil {
					b.Fatal(err)
				}
				mustRun(b, rt, info.SHA256, Request{Method: "POST", Body: strings.NewReader("abc")})
				_ = rt.Close(ctx)
			}
		})
		b.Run("go-"+name+"/restart-warm-disk", func(b *testing.B) {
			dir, store := b.TempDir(), NewMemoryStore()
			warm, err := New(ctx, Config{CacheDir: dir}, store)
			if err != nil {
				b.Fatal(err)
			}
			info, err := warm.Prepare(ctx, code)
			if err != nil {
				b.Fatal(err)
			}
			_ = warm.Close(ctx)
			for b.Loop() {
				rt, err := New(ctx, Config{CacheDir: dir}, store)
				if err != nil {
					b.Fatal(err)
				}
				mustRun(b, rt, info.SHA256, Request{Method: "POST", Body: strings.NewReader("abc")})
				_ = rt.Close(ctx)
			}
		})
	}
}

// BenchmarkCall is a warm call (module compiled in memory), fresh instance
// each time: sequentially for latency, in parallel for throughput.
func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	rt := newRuntime(b, Config{}, nil)
	type target struct {
		name string
		code []byte
		req  func() Request
	}
	g := guests(b)
	targets := []target{
		{"minimal", minimalModule(minimalSpec{Msg: "hello"}), func() Request { return Request{Method: "GET"} }},
		{"go-sha-hash", g["sha-hash"], func() Request { return Request{Method: "POST", Body: strings.NewReader("abc")} }},
		{"go-json-transform", g["json-transform"], func() Request {
			return Request{Method: "POST", Body: strings.NewReader(`{"userName":" Ann ","tags":["a"]}`)}
		}},
	}
	for _, tg := range targets {
		info, err := rt.Prepare(ctx, tg.code)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tg.name+"/sequential", func(b *testing.B) {
			var compute time.Duration
			n := 0
			for b.Loop() {
				compute += mustRun(b, rt, info.SHA256, tg.req()).Compute
				n++
			}
			reportCompute(b, compute, n)
		})
		b.Run(tg.name+"/parallel", func(b *testing.B) {
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mustRun(b, rt, info.SHA256, tg.req())
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
		})
	}
}

// BenchmarkCloseOnContextDone measures what wazero's close-on-context-done
// (the only way to stop a runaway loop) costs a CPU-bound Go guest:
// sha-hash with 100,000 rounds, with the checks and without.
func BenchmarkCloseOnContextDone(b *testing.B) {
	ctx := context.Background()
	code := guests(b)["sha-hash"]
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprint("checks=", on), func(b *testing.B) {
			rt, err := open(ctx, Config{CacheDir: sharedCacheDir}, NewMemoryStore(), on)
			if err != nil {
				b.Fatal(err)
			}
			defer rt.Close(ctx)
			info, err := rt.Prepare(ctx, code)
			if err != nil {
				b.Fatal(err)
			}
			var compute time.Duration
			n := 0
			for b.Loop() {
				compute += mustRun(b, rt, info.SHA256, Request{Method: "POST", RawQuery: "rounds=100000", Body: strings.NewReader("abc")}).Compute
				n++
			}
			reportCompute(b, compute, n)
		})
	}
}

// swapReader is a reused instance's stdin: the host points it at each
// request's body in turn.
type swapReader struct{ r bytes.Reader }

func (s *swapReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// BenchmarkReuseExperiment is the experiment toward sub-millisecond Go
// guests. A Go command module pays the Go runtime's start on every fresh
// instance. Built as a WASI reactor (-buildmode=c-shared, //go:wasmexport
// handle), the runtime starts once in _initialize and each request is one
// call of handle on the same instance, with stdin and stdout swapped per
// request. "fresh" re-instantiates the reactor per request (the floor this
// removes); "reused" keeps one instance.
func BenchmarkReuseExperiment(b *testing.B) {
	ctx := context.Background()
	code := guests(b)["reactor"]
	cache, err := wazero.NewCompilationCacheWithDir(sharedCacheDir)
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close(ctx)
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(true))
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	cm, err := rt.CompileModule(ctx, code)
	if err != nil {
		b.Fatal(err)
	}
	want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	in := &swapReader{}
	var out bytes.Buffer
	cfg := wazero.NewModuleConfig().WithName("").WithStdin(in).WithStdout(&out).
		WithSysWalltime().WithSysNanotime().WithStartFunctions("_initialize")

	b.Run("fresh", func(b *testing.B) {
		var compute time.Duration
		n := 0
		for b.Loop() {
			in.r.Reset([]byte("abc"))
			out.Reset()
			began := time.Now()
			mod, err := rt.InstantiateModule(ctx, cm, cfg)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := mod.ExportedFunction("handle").Call(ctx); err != nil {
				b.Fatal(err)
			}
			compute += time.Since(began)
			n++
			_ = mod.Close(ctx)
			if out.String() != want {
				b.Fatalf("out = %q", out.String())
			}
		}
		reportCompute(b, compute, n)
	})
	b.Run("reused", func(b *testing.B) {
		mod, err := rt.InstantiateModule(ctx, cm, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer mod.Close(ctx)
		handle := mod.ExportedFunction("handle")
		var compute time.Duration
		n := 0
		for b.Loop() {
			in.r.Reset([]byte("abc"))
			out.Reset()
			began := time.Now()
			if _, err := handle.Call(ctx); err != nil {
				b.Fatal(err)
			}
			compute += time.Since(began)
			n++
			if out.String() != want {
				b.Fatalf("out = %q", out.String())
			}
		}
		reportCompute(b, compute, n)
	})
}

// BenchmarkReuseInvoke is a call through the wasm kind's Invoke (what the
// gateway runs after admission), p50 and p99 of the per-call latency, for
// the Go guest and the hand-assembled minimal modules: reuse-echo with
// instance_reuse on one consumer's reused instance ("go/reused"), the same
// module with a new instance per call (ReuseMaxCalls 1, "go/fresh-reactor"),
// the sha-hash command module, fresh as without the flag
// ("go/fresh-command"); the minimal reactor reused and fresh, and the
// minimal command module (always fresh).
func BenchmarkReuseInvoke(b *testing.B) {
	ctx := context.Background()
	g := guests(b)
	minReactor := wasmtest.MinimalReactor(`{"ok":true}`)
	minCommand := wasmtest.MinimalModule(wasmtest.Spec{Msg: `{"ok":true}`})
	for _, tc := range []struct {
		name     string
		code     []byte
		reuse    bool
		maxCalls int
	}{
		{"go/reused", g["reuse-echo"], true, 0},
		{"go/fresh-reactor", g["reuse-echo"], true, 1},
		{"go/fresh-command", g["sha-hash"], false, 0},
		{"minimal/reused", minReactor, true, 0},
		{"minimal/fresh-reactor", minReactor, true, 1},
		{"minimal/fresh-command", minCommand, false, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			rt := newRuntime(b, Config{ReuseMaxCalls: tc.maxCalls}, nil)
			k := NewKind(rt)
			prepare := rt.Prepare
			if tc.reuse {
				prepare = rt.PrepareReactor
			}
			info, err := prepare(ctx, tc.code)
			if err != nil {
				b.Fatal(err)
			}
			sp := backend.Spec(spec{ModuleSHA256: info.SHA256, InstanceReuse: tc.reuse})
			call := func() {
				w := httptest.NewRecorder()
				r := httptest.NewRequest(http.MethodPost, "/v1/invoke/v/f", strings.NewReader("abc"))
				inv := &gateway.Invocation{ID: "0123", ConsumerID: "c1", Timeout: 5 * time.Second, Route: catalog.Route{
					FunctionID: "fn", Version: catalog.Version{Version: 1, Backend: catalog.Backend{Type: BackendWasm, Spec: sp}},
				}}
				if _, err := k.Invoke(w, r, inv); err != nil || w.Code != 200 {
					b.Fatalf("invoke: %d %v", w.Code, err)
				}
			}
			call() // warm: compiled, and for "reused" the instance exists
			var lat []time.Duration
			for b.Loop() {
				began := time.Now()
				call()
				lat = append(lat, time.Since(began))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// BenchmarkLiveInstances measures where live Go guests' memories are: 32
// idle reused reuse-echo instances (32 consumers), alive together in one
// runtime, after a forced collection: the Go heap in use and the process's
// resident set (Linux), beyond what they were before the instances, per
// instance. A memory on the Go heap also raises the collector's target by
// as much again (GOGC=100).
func BenchmarkLiveInstances(b *testing.B) {
	const n = 32
	ctx := context.Background()
	rt := newRuntime(b, Config{MaxIdleInstances: n, MaxIdlePerVersion: n}, nil)
	info, err := rt.PrepareReactor(ctx, guests(b)["reuse-echo"])
	if err != nil {
		b.Fatal(err)
	}
	measure := func() (heap, rss uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, residentBytes()
	}
	heap0, rss0 := measure()
	for i := range n {
		resp, err := rt.RunReused(ctx, info.SHA256, fmt.Sprint("consumer-", i), Request{Method: "POST", Body: strings.NewReader("abc")}, Limits{Timeout: 30 * time.Second})
		if err != nil || resp.Status != 200 {
			b.Fatalf("run: %+v %v", resp, err)
		}
	}
	if got := rt.IdleInstances(); got != n {
		b.Fatalf("%d idle instances, want %d", got, n)
	}
	var heap, rss uint64
	for b.Loop() {
		heap, rss = measure()
	}
	perMB := func(after, before uint64) float64 {
		return (float64(after) - float64(before)) / n / (1 << 20)
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-inuse-MB")
	b.ReportMetric(perMB(heap, heap0), "heap-MB/instance")
	if rss != 0 {
		b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
		b.ReportMetric(perMB(rss, rss0), "rss-MB/instance")
	}
}

// residentBytes is the process's resident set (VmRSS) on Linux, else 0.
func residentBytes() uint64 {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(s)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
