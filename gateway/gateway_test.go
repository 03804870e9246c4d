package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// private lets the gateway call test upstreams, which live on loopback.
func private() gateway.Config { return gateway.Config{AllowPrivateUpstreams: true} }

// wantProblem checks that resp is a problem+json refusal with status and code.
func wantProblem(t *testing.T, resp *http.Response, status int, code string) {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != status {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	if len(resp.Header.Get("X-Invocation-Id")) != 32 {
		t.Errorf("X-Invocation-Id = %q, want 32 hex digits", resp.Header.Get("X-Invocation-Id"))
	}
	var p struct {
		Type, Title, Detail, Code string
		Status                    int
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	if p.Status != status || p.Code != code || p.Title == "" || p.Type == "" || p.Detail == "" {
		t.Errorf("problem = %+v, want status %d code %q with type, title and detail", p, status, code)
	}
}

func echoUpstream(t *testing.T, answer string) *httptest.Server {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, answer)
	})
}

func TestCallIsForwardedAndMetered(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "hello")
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "greet", 1, up.URL, true)

	for _, hdr := range []http.Header{
		{"Authorization": {"Bearer " + testKey}},
		{"Authorization": {"bearer " + testKey}},
		{"X-Api-Key": {testKey}},
	} {
		resp := e.do(http.MethodGet, "/v1/invoke/acme/greet", nil, hdr)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "hello" {
			t.Fatalf("%v: got %d %q, want 200 hello", hdr, resp.StatusCode, body)
		}
		ms, err := strconv.ParseInt(resp.Header.Get("X-Compute-Ms"), 10, 64)
		if err != nil || ms < 1 {
			t.Errorf("X-Compute-Ms = %q, want an integer >= 1", resp.Header.Get("X-Compute-Ms"))
		}
	}
	calls := e.meter.recorded()
	if len(calls) != 3 {
		t.Fatalf("recorded %d calls, want 3", len(calls))
	}
	c := calls[0]
	if !c.Billable || c.Error || c.KeyID != "key-1" || c.ConsumerID != "consumer-1" ||
		c.FunctionID != "fn-acme-greet" || c.Version != 1 || c.ComputeMs < 1 || c.InvocationID == "" || c.At.IsZero() {
		t.Errorf("recorded call = %+v", c)
	}
	if calls[1].CallsBefore != 1 || calls[2].CallsBefore != 2 {
		t.Errorf("CallsBefore = %d, %d; want 1, 2 (from the admission)", calls[1].CallsBefore, calls[2].CallsBefore)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	var hits sync.Map
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	})
	cfg := private()
	cfg.MaxBodyBytes = 1024
	e := newEnv(t, envOptions{cfg: cfg})
	e.keys.add("fnm_revoked", gateway.Key{ID: "key-r", ConsumerID: "consumer-1"})
	e.keys.revoke("fnm_revoked")
	e.routes.addVersion("acme", "greet", 1, up.URL, true)
	e.routes.addVersion("acme", "hidden", 1, up.URL, false)
	auth := http.Header{"Authorization": {"Bearer " + testKey}}

	tests := []struct {
		name   string
		method string
		path   string
		header http.Header
		body   func() io.Reader
		status int
		code   string
	}{
		{"no key", "GET", "/v1/invoke/acme/greet", http.Header{}, nil, 401, fnmarket.EUNAUTHORIZED},
		{"unknown key", "GET", "/v1/invoke/acme/greet", http.Header{"Authorization": {"Bearer fnm_nope"}}, nil, 401, fnmarket.EUNAUTHORIZED},
		{"unknown key in X-API-Key", "GET", "/v1/invoke/acme/greet", http.Header{"X-Api-Key": {"fnm_nope"}}, nil, 401, fnmarket.EUNAUTHORIZED},
		{"revoked key", "GET", "/v1/invoke/acme/greet", http.Header{"Authorization": {"Bearer fnm_revoked"}}, nil, 401, fnmarket.EUNAUTHORIZED},
		{"basic auth is not a key", "GET", "/v1/invoke/acme/greet", http.Header{"Authorization": {"Basic " + testKey}}, nil, 401, fnmarket.EUNAUTHORIZED},
		{"unknown function", "GET", "/v1/invoke/acme/nope", auth, nil, 404, fnmarket.ENOTFOUND},
		{"unknown vendor", "GET", "/v1/invoke/nobody/greet", auth, nil, 404, fnmarket.ENOTFOUND},
		{"unpublished function", "GET", "/v1/invoke/acme/hidden", auth, nil, 404, fnmarket.ENOTFOUND},
		{"version never there", "GET", "/v1/invoke/acme/greet@7", auth, nil, 404, fnmarket.ENOTFOUND},
		{"malformed version", "GET", "/v1/invoke/acme/greet@x", auth, nil, 404, fnmarket.ENOTFOUND},
		{"no function name", "GET", "/v1/invoke/acme", auth, nil, 404, fnmarket.ENOTFOUND},
		{"body over limit, with length", "POST", "/v1/invoke/acme/greet/big", auth,
			func() io.Reader { return bytes.NewReader(make([]byte, 1025)) }, 413, fnmarket.ETOOLARGE},
		{"body over limit, chunked", "POST", "/v1/invoke/acme/greet/chunked", auth,
			// A plain io.Reader has no known length, so the client sends it chunked.
			func() io.Reader {
				return io.MultiReader(bytes.NewReader(make([]byte, 600)), bytes.NewReader(make([]byte, 600)))
			},
			413, fnmarket.ETOOLARGE},
	}
	for _, tt := range tests {
		var body io.Reader
		if tt.body != nil {
			body = tt.body()
		}
		resp := e.do(tt.method, tt.path, body, tt.header)
		t.Run(tt.name, func(t *testing.T) { wantProblem(t, resp, tt.status, tt.code) })
	}
	if _, ok := hits.Load("/big"); ok {
		t.Error("a body over the limit with a Content-Length reached the upstream")
	}
	if n := len(e.meter.recorded()); n != 0 {
		t.Errorf("refusals recorded %d calls, want none", n)
	}

	// At the limit exactly, chunked, the call goes through.
	resp := e.do("POST", "/v1/invoke/acme/greet", io.MultiReader(bytes.NewReader(make([]byte, 1000)), bytes.NewReader(make([]byte, 24))), auth)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("body at the limit: status %d, want 200", resp.StatusCode)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 1, 12, 0, 0, 250e6, time.UTC))
	cfg := private()
	cfg.Clock = clock
	cfg.DefaultRateLimitPerKey = 100
	e := newEnv(t, envOptions{cfg: cfg})
	// The version lowers the key's limit from 100 to 2 per second.
	e.routes.addVersion("acme", "slow", 1, up.URL, true, func(v *catalog.Version) { v.RateLimitPerSecond = 2 })

	for i, wantRemaining := range []string{"1", "0"} {
		resp, _ := e.get("/v1/invoke/acme/slow")
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: status %d, want 200", i, resp.StatusCode)
		}
		if got := resp.Header.Get("X-RateLimit-Limit"); got != "2" {
			t.Errorf("X-RateLimit-Limit = %q, want 2", got)
		}
		if got := resp.Header.Get("X-RateLimit-Remaining"); got != wantRemaining {
			t.Errorf("X-RateLimit-Remaining = %q, want %s", got, wantRemaining)
		}
	}
	resp := e.do("GET", "/v1/invoke/acme/slow", nil, nil)
	if resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-RateLimit-Remaining") != "0" ||
		resp.Header.Get("X-RateLimit-Reset") != "1" || resp.Header.Get("X-RateLimit-Limit") != "2" {
		t.Errorf("429 headers = %v", resp.Header)
	}
	wantProblem(t, resp, 429, fnmarket.ERATELIMITED)
	if n := len(e.meter.recorded()); n != 2 {
		t.Errorf("recorded %d calls, want 2 (the refusal is not billed)", n)
	}

	clock.Advance(time.Second)
	if resp, _ := e.get("/v1/invoke/acme/slow"); resp.StatusCode != 200 {
		t.Errorf("next second: status %d, want 200", resp.StatusCode)
	}
}

func TestSpendCap(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	cfg := private()
	keys := newFakeKeys(fnmarket.SystemClock{})
	spendCap := decimal.RequireFromString("0.0002")
	keys.add(testKey, gateway.Key{ID: "key-capped", ConsumerID: "consumer-1", MonthlySpendCap: &spendCap})
	e := newEnv(t, envOptions{cfg: cfg, keys: keys})
	e.routes.addVersion("acme", "flat", 1, up.URL, true, func(v *catalog.Version) {
		v.Pricing.PerComputeMs = decimal.Zero // 0.0001 a call, nothing else
	})
	for i := range 2 {
		if resp, _ := e.get("/v1/invoke/acme/flat"); resp.StatusCode != 200 {
			t.Fatalf("call %d: status %d, want 200", i, resp.StatusCode)
		}
	}
	wantProblem(t, e.do("GET", "/v1/invoke/acme/flat", nil, nil), 402, fnmarket.ESPENDCAP)
	if n := len(e.meter.recorded()); n != 2 {
		t.Errorf("recorded %d calls, want 2", n)
	}
}

func TestHeadersForwardedAndStripped(t *testing.T) {
	t.Parallel()
	type seen struct {
		header http.Header
		host   string
		method string
		body   string
	}
	got := make(chan seen, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Header.Clone(), r.Host, r.Method, string(b)}
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Answer", "yes")
		w.Header().Set("X-Invocation-Id", "forged-by-upstream")
		w.Header().Set("X-Compute-Ms", "999999")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout")
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "tea", 1, up.URL, true)

	resp := e.do(http.MethodPut, "/v1/invoke/acme/tea", strings.NewReader("the body"), http.Header{
		"Authorization":       {"Bearer " + testKey},
		"X-Api-Key":           {testKey},
		"Cookie":              {"session=secret"},
		"Connection":          {"X-Hop"},
		"X-Hop":               {"dropped"},
		"Proxy-Authorization": {"Basic c2VjcmV0"},
		"X-Custom":            {"kept"},
		"X-Forwarded-For":     {"203.0.113.7"},
	})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := <-got

	if resp.StatusCode != http.StatusTeapot || string(body) != "short and stout" {
		t.Errorf("answer = %d %q, want 418 as the function sent it", resp.StatusCode, body)
	}
	if s.method != http.MethodPut || s.body != "the body" {
		t.Errorf("upstream saw %s %q, want PUT \"the body\"", s.method, s.body)
	}
	for _, k := range []string{"Authorization", "X-Api-Key", "Cookie", "X-Hop", "Proxy-Authorization"} {
		if v, ok := s.header[k]; ok {
			t.Errorf("upstream saw %s: %q; it must be stripped", k, v)
		}
	}
	id := resp.Header.Get("X-Invocation-Id")
	for k, want := range map[string]string{
		"X-Custom":          "kept",
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Host":  strings.TrimPrefix(e.srv.URL, "http://"),
		"X-Forwarded-Proto": "http",
		"X-Invocation-Id":   id,
	} {
		if got := s.header.Get(k); got != want {
			t.Errorf("upstream saw %s = %q, want %q", k, got, want)
		}
	}
	if len(id) != 32 {
		t.Errorf("X-Invocation-Id = %q, want 32 hex digits", id)
	}
	if s.host != strings.TrimPrefix(up.URL, "http://") {
		t.Errorf("upstream saw Host %q, want its own %q", s.host, up.URL)
	}
	if resp.Header.Get("X-Up-Hop") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop answer headers reached the caller: %v", resp.Header)
	}
	if resp.Header.Get("X-Answer") != "yes" {
		t.Errorf("X-Answer = %q, want yes", resp.Header.Get("X-Answer"))
	}
	calls := e.meter.recorded()
	if len(calls) != 1 || strconv.FormatInt(calls[0].ComputeMs, 10) != resp.Header.Get("X-Compute-Ms") || calls[0].InvocationID != id {
		t.Errorf("X-Compute-Ms %q, id %s; recorded %+v", resp.Header.Get("X-Compute-Ms"), id, calls)
	}
}

func TestRestPathAndQuery(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.EscapedPath() + "?" + r.URL.RawQuery
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "paths", 1, up.URL+"/base?fixed=1", true)
	tests := []struct{ path, want string }{
		{"/v1/invoke/acme/paths", "/base?fixed=1"},
		{"/v1/invoke/acme/paths/", "/base/?fixed=1"},
		{"/v1/invoke/acme/paths/a/b%2Fc?x=1&y=two", "/base/a/b%2Fc?fixed=1&x=1&y=two"},
		{"/v1/invoke/acme/paths@1/deep?q=%20", "/base/deep?fixed=1&q=%20"},
	}
	for _, tt := range tests {
		resp, _ := e.get(tt.path)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", tt.path, resp.StatusCode)
		}
		if g := <-got; g != tt.want {
			t.Errorf("%s: upstream saw %q, want %q", tt.path, g, tt.want)
		}
	}
}

func TestVersionPinning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{cfg: private()})
	v1, v2, v3 := echoUpstream(t, "v1"), echoUpstream(t, "v2"), echoUpstream(t, "v3")
	e.routes.addVersion("acme", "fn", 1, v1.URL, true)
	e.routes.addVersion("acme", "fn", 2, v2.URL, true)  // published now
	e.routes.addVersion("acme", "fn", 3, v3.URL, false) // never published
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/v1/invoke/acme/fn", 200, "v2"},
		{"/v1/invoke/acme/fn@2", 200, "v2"},
		{"/v1/invoke/acme/fn@1", 200, "v1"},
		{"/v1/invoke/acme/fn@3", 404, ""},
		{"/v1/invoke/acme/fn@0", 404, ""},
	}
	for _, tt := range tests {
		resp, body := e.get(tt.path)
		if resp.StatusCode != tt.status || (tt.body != "" && body != tt.body) {
			t.Errorf("%s: got %d %q, want %d %q", tt.path, resp.StatusCode, body, tt.status, tt.body)
		}
	}
	for _, c := range e.meter.recorded() {
		if c.Version == 3 {
			t.Errorf("version 3 was called: %+v", c)
		}
	}
}

// readEvent reads one SSE event ("data: ...\n\n") or fails after a while:
// if the gateway buffered the stream, the event would never come.
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil || line == "\n" {
				ch <- result{b.String(), err}
				return
			}
		}
	}()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("read event: %v", res.err)
		}
		return res.s
	case <-time.After(5 * time.Second):
		t.Fatal("the event did not arrive while the function was still running: the answer is buffered")
		return ""
	}
}

func TestServerSentEventsStream(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			_ = http.NewResponseController(w).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "events", 1, up.URL, true)

	resp := e.do("GET", "/v1/invoke/acme/events", nil, nil)
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	if _, err := strconv.Atoi(resp.Header.Get("X-Compute-Ms")); err != nil {
		t.Errorf("X-Compute-Ms header = %q, want the time to headers", resp.Header.Get("X-Compute-Ms"))
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		// Each event arrives while the function is blocked waiting for next.
		if got, want := readEvent(t, br), fmt.Sprintf("data: event %d\n\n", i); got != want {
			t.Fatalf("event %d = %q, want %q", i, got, want)
		}
		next <- struct{}{}
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the events: %q, %v", rest, err)
	}
	final := resp.Trailer.Get("X-Compute-Ms")
	calls := e.meter.recorded()
	if len(calls) != 1 || final == "" || strconv.FormatInt(calls[0].ComputeMs, 10) != final {
		t.Errorf("trailer X-Compute-Ms = %q, recorded %+v; want equal", final, calls)
	}
}

func TestChunkedAnswerStreams(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Vendor-Trailer-Demo", "1")
		w.Header().Set("Trailer", "X-Checksum")
		for i := range 3 {
			fmt.Fprintf(w, "chunk %d\n", i)
			_ = http.NewResponseController(w).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("X-Checksum", "abc")
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "chunks", 1, up.URL, true)

	resp := e.do("GET", "/v1/invoke/acme/chunks", nil, nil)
	defer resp.Body.Close()
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("TransferEncoding = %v, want chunked", resp.TransferEncoding)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 3 {
		line := make(chan string, 1)
		go func() { s, _ := br.ReadString('\n'); line <- s }()
		select {
		case got := <-line:
			if want := fmt.Sprintf("chunk %d\n", i); got != want {
				t.Fatalf("chunk %d = %q, want %q", i, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("chunk did not arrive while the function was running")
		}
		next <- struct{}{}
	}
	_, _ = io.ReadAll(br)
	if resp.Trailer.Get("X-Checksum") != "abc" {
		t.Errorf("function's trailer X-Checksum = %q, want abc", resp.Trailer.Get("X-Checksum"))
	}
	calls := e.meter.recorded()
	if len(calls) != 1 || strconv.FormatInt(calls[0].ComputeMs, 10) != resp.Trailer.Get("X-Compute-Ms") {
		t.Errorf("trailer X-Compute-Ms = %q, recorded %+v", resp.Trailer.Get("X-Compute-Ms"), calls)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/partial" {
			_, _ = io.WriteString(w, "first part\n")
			_ = http.NewResponseController(w).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "sleepy", 1, up.URL, true, func(v *catalog.Version) { v.TimeoutMs = 150 })

	t.Run("before headers: 504, billed at timeout_ms", func(t *testing.T) {
		resp := e.do("GET", "/v1/invoke/acme/sleepy", nil, nil)
		if got := resp.Header.Get("X-Compute-Ms"); got != "150" {
			t.Errorf("X-Compute-Ms = %q, want 150", got)
		}
		wantProblem(t, resp, 504, fnmarket.EUPSTREAMTIME)
	})
	t.Run("while streaming: cut, billed at timeout_ms", func(t *testing.T) {
		resp := e.do("GET", "/v1/invoke/acme/sleepy/partial", nil, nil)
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200 (headers were already sent)", resp.StatusCode)
		}
		body, err := io.ReadAll(resp.Body)
		if err == nil {
			t.Errorf("read the cut answer to a clean end (%q); want an error", body)
		}
		if string(body) != "first part\n" {
			t.Errorf("body before the cut = %q", body)
		}
	})
	calls := e.meter.recorded()
	if len(calls) != 2 {
		t.Fatalf("recorded %d calls, want 2", len(calls))
	}
	for _, c := range calls {
		if !c.Billable || !c.Error || c.ComputeMs != 150 {
			t.Errorf("recorded %+v, want billable error at 150 ms", c)
		}
	}
}

func TestUnreachableUpstreamIsNotBilled(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := l.Addr().String()
	l.Close()
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "gone", 1, "http://"+closedAddr, true)
	wantProblem(t, e.do("GET", "/v1/invoke/acme/gone", nil, nil), 502, fnmarket.EUNREACHABLE)
	if n := len(e.meter.recorded()); n != 0 {
		t.Errorf("recorded %d calls, want none", n)
	}
}

func TestPrivateUpstreamRefusedAtDial(t *testing.T) {
	t.Parallel()
	var hits int
	var mu sync.Mutex
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	e := newEnv(t, envOptions{}) // AllowPrivateUpstreams false
	// Published while it resolved elsewhere (or while allowed): the dialer
	// must still refuse the loopback address the name resolves to now.
	e.routes.addVersion("acme", "rebind", 1, "http://localhost:"+port, true)
	e.routes.addVersion("acme", "literal", 1, up.URL, true)
	for _, fn := range []string{"rebind", "literal"} {
		wantProblem(t, e.do("GET", "/v1/invoke/acme/"+fn, nil, nil), 502, fnmarket.EUNREACHABLE)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 || len(e.meter.recorded()) != 0 {
		t.Errorf("upstream hits = %d, recorded = %d; want 0, 0", hits, len(e.meter.recorded()))
	}
}

func TestCheckUpstreamURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		url          string
		allowPrivate bool
		ok           bool
	}{
		{"https://93.184.216.34/fn", false, true},
		{"http://[2606:4700::1111]:8080/", false, true},
		{"http://127.0.0.1:8080/", false, false},
		{"http://localhost:8080/", false, false}, // resolves to loopback
		{"http://10.1.2.3/", false, false},
		{"http://172.16.0.1/", false, false},
		{"http://192.168.1.1/", false, false},
		{"http://169.254.169.254/latest/meta-data", false, false},
		{"http://100.64.0.1/", false, false},
		{"http://0.0.0.0/", false, false},
		{"http://224.0.0.1/", false, false},
		{"http://255.255.255.255/", false, false},
		{"http://[::1]/", false, false},
		{"http://[::]/", false, false},
		{"http://[fc00::1]/", false, false},
		{"http://[fd12:3456::1]/", false, false},
		{"http://[fe80::1]/", false, false},
		{"http://[ff02::1]/", false, false},
		{"http://[::ffff:127.0.0.1]/", false, false},
		{"http://[64:ff9b::10.0.0.1]/", false, false},
		{"http://127.0.0.1:8080/", true, true},
		{"http://localhost:8080/", true, true},
		{"ftp://93.184.216.34/", false, false},
		{"file:///etc/passwd", true, false},
		{"/relative", true, false},
		{"https://user:pass@93.184.216.34/", false, false},
		{"http://", true, false},
	}
	for _, tt := range tests {
		err := gateway.CheckUpstreamURL(ctx, tt.url, tt.allowPrivate)
		if tt.ok != (err == nil) {
			t.Errorf("CheckUpstreamURL(%q, %v) = %v, want ok %v", tt.url, tt.allowPrivate, err, tt.ok)
			continue
		}
		if err != nil && (fnmarket.ErrorCode(err) != fnmarket.EINVALID || fnmarket.ErrorFields(err)["backend.url"] == "") {
			t.Errorf("CheckUpstreamURL(%q) = %v, want EINVALID naming backend.url", tt.url, err)
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestRevocationReachesEveryReplica(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.SystemClock{}
	keys, routes := newFakeKeys(clock), newFakeRoutes(clock)
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1"})
	routes.addVersion("acme", "fn", 1, up.URL, true)
	replicas := []*env{
		newEnv(t, envOptions{cfg: private(), keys: keys, routes: routes, start: true}),
		newEnv(t, envOptions{cfg: private(), keys: keys, routes: routes, start: true}),
	}
	for _, e := range replicas {
		if resp, _ := e.get("/v1/invoke/acme/fn"); resp.StatusCode != 200 {
			t.Fatalf("warm-up: status %d", resp.StatusCode)
		}
	}
	// Cached: more calls do not touch the stores.
	kl, rl := keys.lookupCount(), routes.lookupCount()
	for _, e := range replicas {
		for range 5 {
			e.get("/v1/invoke/acme/fn")
		}
	}
	if keys.lookupCount() != kl || routes.lookupCount() != rl {
		t.Errorf("cached calls looked up keys %d and routes %d times, want 0", keys.lookupCount()-kl, routes.lookupCount()-rl)
	}

	keys.revoke(testKey)
	for i, e := range replicas {
		took := eventually(t, 2*time.Second, fmt.Sprintf("replica %d refuses the revoked key", i), func() bool {
			resp, _ := e.get("/v1/invoke/acme/fn")
			return resp.StatusCode == 401
		})
		t.Logf("replica %d refused the revoked key after %v", i, took)
	}
}

func TestUnpublishReachesEveryReplica(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.SystemClock{}
	keys, routes := newFakeKeys(clock), newFakeRoutes(clock)
	keys.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1"})
	routes.addVersion("acme", "fn", 1, up.URL, true)
	replicas := []*env{
		newEnv(t, envOptions{cfg: private(), keys: keys, routes: routes, start: true}),
		newEnv(t, envOptions{cfg: private(), keys: keys, routes: routes, start: true}),
	}
	for _, e := range replicas {
		for _, p := range []string{"/v1/invoke/acme/fn", "/v1/invoke/acme/fn@1"} {
			if resp, _ := e.get(p); resp.StatusCode != 200 {
				t.Fatalf("warm-up %s: status %d", p, resp.StatusCode)
			}
		}
	}
	routes.unpublish("acme", "fn")
	for i, e := range replicas {
		eventually(t, 2*time.Second, fmt.Sprintf("replica %d answers 404 for the unpublished function", i), func() bool {
			resp, _ := e.get("/v1/invoke/acme/fn")
			return resp.StatusCode == 404
		})
	}
	// A pinned version that was published stays callable (API.md: "if it was
	// ever published"); the store decides, the gateway only must not serve
	// a stale cache for it.
	if resp, _ := replicas[0].get("/v1/invoke/acme/fn@1"); resp.StatusCode != 200 {
		t.Errorf("pinned version after unpublish: %d", resp.StatusCode)
	}
}

func TestCacheAgesOut(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	cfg := private()
	cfg.Clock = clock
	e := newEnv(t, envOptions{cfg: cfg}) // no poller: only age expires entries
	e.routes.addVersion("acme", "fn", 1, up.URL, true)

	e.get("/v1/invoke/acme/fn")
	e.get("/v1/invoke/acme/fn")
	if n := e.keys.lookupCount(); n != 1 {
		t.Fatalf("key lookups = %d, want 1", n)
	}
	clock.Advance(gateway.DefaultMaxEntryAge)
	e.get("/v1/invoke/acme/fn")
	if n := e.keys.lookupCount(); n != 2 {
		t.Errorf("key lookups after max age = %d, want 2", n)
	}

	unknown := http.Header{"X-Api-Key": {"fnm_unknown"}}
	for range 3 {
		e.do("GET", "/v1/invoke/acme/fn", nil, unknown).Body.Close()
	}
	if n := e.keys.lookupCount(); n != 3 {
		t.Errorf("key lookups for a repeated unknown key = %d, want 3 (one more)", n)
	}
	clock.Advance(gateway.DefaultNegativeTTL)
	e.do("GET", "/v1/invoke/acme/fn", nil, unknown).Body.Close()
	if n := e.keys.lookupCount(); n != 4 {
		t.Errorf("key lookups after the negative TTL = %d, want 4", n)
	}
}

// TestMeteredEqualsAnswered sends 200 concurrent calls, half answered whole and
// half streamed, and checks that the compute recorded for billing is exactly
// what the answers said.
func TestMeteredEqualsAnswered(t *testing.T) {
	t.Parallel()
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		time.Sleep(time.Duration(n%4) * time.Millisecond) // vary compute, not a timing assertion
		if strings.HasSuffix(r.URL.Path, "/stream") {
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				_ = http.NewResponseController(w).Flush()
			}
			return
		}
		_, _ = io.WriteString(w, "whole")
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "fn", 1, up.URL, true)
	e.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 200

	const n = 200
	answered := make([]int64, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			path := fmt.Sprintf("/v1/invoke/acme/fn?n=%d", i)
			if i%2 == 1 {
				path = fmt.Sprintf("/v1/invoke/acme/fn/stream?n=%d", i)
			}
			req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
			req.Header.Set("X-API-Key", testKey)
			resp, err := e.client.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 {
				errs <- fmt.Errorf("call %d: %d %v", i, resp.StatusCode, err)
				return
			}
			v := resp.Header.Get("X-Compute-Ms")
			if i%2 == 1 {
				v = resp.Trailer.Get("X-Compute-Ms")
			}
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms < 1 {
				errs <- fmt.Errorf("call %d: X-Compute-Ms %q", i, v)
				return
			}
			answered[i], ids[i] = ms, resp.Header.Get("X-Invocation-Id")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The meter is told as the handler finishes, which a caller may see a
	// moment after its last byte.
	eventually(t, 5*time.Second, "200 calls recorded", func() bool { return len(e.meter.recorded()) >= n })
	calls := e.meter.recorded()
	if len(calls) != n {
		t.Fatalf("recorded %d calls, want %d", len(calls), n)
	}
	byID := map[string]int64{}
	var recorded, sum int64
	for _, c := range calls {
		byID[c.InvocationID] = c.ComputeMs
		recorded += c.ComputeMs
	}
	for i := range n {
		sum += answered[i]
		if byID[ids[i]] != answered[i] {
			t.Errorf("call %d (%s): answered %d ms, recorded %d", i, ids[i], answered[i], byID[ids[i]])
		}
	}
	if sum != recorded {
		t.Errorf("sum of X-Compute-Ms answered = %d, recorded = %d", sum, recorded)
	}
}

func TestMetricsLabels(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "fn", 1, up.URL, true)
	e.get("/v1/invoke/acme/fn")
	e.get("/v1/invoke/acme/made-up-name")
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "vendor", "function", "status_class", "cache", "result":
				default:
					t.Errorf("%s has label %s", mf.GetName(), l.GetName())
				}
				if l.GetValue() == "made-up-name" || strings.Contains(l.GetValue(), "consumer") || strings.Contains(l.GetValue(), "key-1") {
					t.Errorf("%s has label value %q", mf.GetName(), l.GetValue())
				}
			}
			if mf.GetName() == "fnmarket_gateway_calls_total" && labelsAre(m.GetLabel(), "acme", "fn", "2xx") && m.GetCounter().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Error("no fnmarket_gateway_calls_total{vendor=acme,function=fn,status_class=2xx} 1")
	}
}

func labelsAre(ls []*dto.LabelPair, vendor, function, class string) bool {
	want := map[string]string{"vendor": vendor, "function": function, "status_class": class}
	for _, l := range ls {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return len(ls) == 3
}

func TestComputeMs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		d    time.Duration
		want int64
	}{
		{0, 1}, {time.Nanosecond, 1}, {time.Millisecond, 1}, {time.Millisecond + 1, 2}, {1500 * time.Microsecond, 2}, {150 * time.Millisecond, 150},
	}
	for _, tt := range tests {
		if got := gateway.ComputeMs(tt.d); got != tt.want {
			t.Errorf("ComputeMs(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	t.Parallel()
	if _, err := gateway.New(gateway.Config{}, nil, nil, nil, nil); err == nil {
		t.Error("New with no stores succeeded")
	}
}

func TestAnswersWithoutBody(t *testing.T) {
	t.Parallel()
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/empty" {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Length", "5")
		w.Header().Set("X-Kind", "head")
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "12345")
		}
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "fn", 1, up.URL, true)
	tests := []struct {
		method, path string
		status       int
		length       int64
	}{
		{http.MethodHead, "/v1/invoke/acme/fn", 200, 5},
		{http.MethodGet, "/v1/invoke/acme/fn/empty", 204, 0},
	}
	for _, tt := range tests {
		resp := e.do(tt.method, tt.path, nil, nil)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.ContentLength != tt.length || resp.Header.Get("X-Compute-Ms") == "" {
			t.Errorf("%s %s: %d, length %d, X-Compute-Ms %q", tt.method, tt.path, resp.StatusCode, resp.ContentLength, resp.Header.Get("X-Compute-Ms"))
		}
	}
	if n := len(e.meter.recorded()); n != 2 {
		t.Errorf("recorded %d, want 2", n)
	}
}
