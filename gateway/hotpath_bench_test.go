package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/usage"
)

// The hot-path benchmarks (issue 14) put the gateway's whole handler next to
// a bare httputil.ReverseProxy, on the same loopback upstream, with the same
// request and the same throwaway ResponseWriter, so the difference is what
// the gateway does per call: key and route from the caches, admission (an
// admitter that always admits), the proxying itself, metering (a meter that
// drops) and metrics. The upstream answers as bench/upstream does.
//
//	go test -run '^$' -bench 'BenchmarkGateway$|BenchmarkBareReverseProxy' -benchmem ./gateway/

// admitAll admits every call, holding nothing, as a key without a cap under
// no rate limit is admitted.
type admitAll struct{}

func (admitAll) Admit(context.Context, usage.AdmissionRequest) (usage.Admission, error) {
	return usage.Admission{Allowed: true}, nil
}

func (admitAll) Settle(context.Context, usage.AdmissionRequest, usage.Admission, bool, decimal.Decimal) (decimal.Decimal, error) {
	return decimal.Zero, nil
}

// dropMeter forgets every call.
type dropMeter struct{}

func (dropMeter) Record(usage.Call) {}

// benchWriter is a ResponseWriter that keeps nothing but the status, reused
// from call to call (its header map is cleared, not reallocated).
type benchWriter struct {
	h      http.Header
	status int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(status int)      { w.status = status }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) Flush()                      {}

// SetReadDeadline succeeds, as a server connection's does (through
// http.ResponseController), so the gateway's body idle deadline is exercised.
func (w *benchWriter) SetReadDeadline(time.Time) error { return nil }

func (w *benchWriter) reset() {
	clear(w.h)
	w.status = 0
}

// benchCall is one reusable request: a GET, or a POST whose body is
// rewound before every call.
type benchCall struct {
	req  *http.Request
	body *bytes.Reader
	w    benchWriter
}

func newBenchCall(path string, body []byte) *benchCall {
	c := &benchCall{w: benchWriter{h: http.Header{}}}
	if body == nil {
		c.req = httptest.NewRequest(http.MethodGet, path, nil)
	} else {
		c.body = bytes.NewReader(body)
		c.req = httptest.NewRequest(http.MethodPost, path, nil)
		c.req.ContentLength = int64(len(body))
		c.req.Header.Set("Content-Type", "application/json")
	}
	c.req.Header.Set("Authorization", "Bearer "+testKey)
	c.req.Header.Set("User-Agent", "bench/1")
	c.req.Header.Set("Accept", "*/*")
	return c
}

// serve makes the call and returns the status.
func (c *benchCall) serve(h http.Handler) int {
	c.w.reset()
	if c.body != nil {
		_, _ = c.body.Seek(0, io.SeekStart)
		c.req.Body = io.NopCloser(c.body)
	}
	h.ServeHTTP(&c.w, c.req)
	return c.w.status
}

// benchAnswer is what the trivial function answers.
var benchAnswer = []byte(`{"ok":true,"verdict":"clean"}`)

// benchUpstream is the trivial function both proxies call over loopback.
func benchUpstream(b *testing.B) *httptest.Server {
	return upstream(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(benchAnswer)
	})
}

// memUpstream is the same function as a RoundTripper: no sockets, no HTTP
// framing, so what remains is the proxy's own work (and this answer's few
// allocations, the same for both proxies).
type memUpstream struct{}

func (memUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if t := httptrace.ContextClientTrace(r.Context()); t != nil && t.WroteHeaders != nil {
		t.WroteHeaders()
	}
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		ContentLength: int64(len(benchAnswer)),
		Body:          io.NopCloser(bytes.NewReader(benchAnswer)),
		Request:       r,
	}, nil
}

// memURL is the upstream address both proxies hand to memUpstream.
const memURL = "http://fn.invalid"

func benchGateway(b *testing.B, upURL string, rt http.RoundTripper) http.Handler {
	clock := fnmarket.SystemClock{}
	keys := newFakeKeys(clock)
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1"})
	routes := newFakeRoutes(clock)
	routes.addVersion("acme", "fn", 1, upURL, true)
	cfg := private()
	cfg.Registerer = prometheus.NewRegistry()
	gw, err := gateway.New(cfg, keys, routes, admitAll{}, dropMeter{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = gw.Close() })
	if rt != nil {
		gateway.RegisterUpstreamProtocol(gw, "http", rt)
	}
	return gw
}

func benchBareProxy(b *testing.B, upURL string, rt http.RoundTripper) http.Handler {
	u, err := url.Parse(upURL)
	if err != nil {
		b.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	if rt != nil {
		p.Transport = rt
		return p
	}
	t := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	p.Transport = t
	b.Cleanup(t.CloseIdleConnections)
	return p
}

// runHotPath runs h serially and in parallel, for a GET and a POST of 1 KiB.
func runHotPath(b *testing.B, h http.Handler, path string) {
	post := bytes.Repeat([]byte("x"), 1024)
	for _, c := range []struct {
		name string
		body []byte
	}{{"GET", nil}, {"POST1k", post}} {
		b.Run(c.name, func(b *testing.B) {
			call := newBenchCall(path, c.body)
			if st := call.serve(h); st != http.StatusOK { // warms the caches and the pool
				b.Fatalf("status %d", st)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			for b.Loop() {
				if st := call.serve(h); st != http.StatusOK {
					b.Fatalf("status %d", st)
				}
			}
			reportCPU(b, cpu)
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			defer reportCPU(b, cpu)
			b.RunParallel(func(pb *testing.PB) {
				call := newBenchCall(path, c.body)
				for pb.Next() {
					if st := call.serve(h); st != http.StatusOK {
						b.Errorf("status %d", st)
						return
					}
				}
			})
		})
	}
}

// reportCPU reports the process's CPU time per call since start as
// cpu-ns/op: the gateway or proxy, the upstream and the benchmark's side
// together. Other processes on the machine slow a call's wall time down far
// more than its CPU time, so this compares better across runs than ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 && start > 0 {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkGateway is one call through the whole gateway handler, to the
// function over loopback ("loopback") and in memory ("inmem").
func BenchmarkGateway(b *testing.B) {
	b.Run("loopback", func(b *testing.B) {
		up := benchUpstream(b)
		runHotPath(b, benchGateway(b, up.URL, nil), "/v1/invoke/acme/fn")
	})
	b.Run("inmem", func(b *testing.B) {
		runHotPath(b, benchGateway(b, memURL, memUpstream{}), "/v1/invoke/acme/fn")
	})
}

// BenchmarkBareReverseProxy is the yardstick: the same calls through a bare
// httputil.ReverseProxy, with a big idle pool over loopback.
func BenchmarkBareReverseProxy(b *testing.B) {
	b.Run("loopback", func(b *testing.B) {
		up := benchUpstream(b)
		runHotPath(b, benchBareProxy(b, up.URL, nil), "/v1/invoke/acme/fn")
	})
	b.Run("inmem", func(b *testing.B) {
		runHotPath(b, benchBareProxy(b, memURL, memUpstream{}), "/v1/invoke/acme/fn")
	})
}
