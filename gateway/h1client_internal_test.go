package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestH1Client() *h1Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &h1Client{dial: d.DialContext, maxIdle: 8, idleTimeout: time.Minute}
}

// h1Call sends method to rawURL with body through c and returns the answer's
// status and body, read to the end.
func h1Call(t *testing.T, c *h1Client, method, rawURL, body string, header http.Header) (int, string, error) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	out := &http.Request{Method: method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: u.Host, Header: header, Body: http.NoBody}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	if body != "" {
		out.Body, out.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
	}
	if !h1Takes(out) {
		t.Fatalf("h1Takes(%s %s) = false", method, rawURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wrote := false
	resp, err := c.do(ctx, out, func() { wrote = true })
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if !wrote {
		t.Error("the answer came without the request being reported written")
	}
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// connCounter counts the connections a test server accepts.
func connCounter(srv *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func TestH1ClientKeepsConnections(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			w.Write([]byte("a"))
			w.(http.Flusher).Flush()
			w.Write([]byte("b"))
			w.Header().Set("X-Sum", "2")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + string(b)))
		}
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()

	c := newTestH1Client()
	for i := range 20 {
		status, body, err := h1Call(t, c, "POST", srv.URL+"/echo?x=1", "payload", nil)
		if err != nil || status != 200 || body != "POST /echo?x=1 payload" {
			t.Fatalf("call %d: %d %q %v", i, status, body, err)
		}
	}
	if status, _, err := h1Call(t, c, "GET", srv.URL+"/empty", "", nil); err != nil || status != 204 {
		t.Fatalf("204: %d %v", status, err)
	}

	// A chunked answer with a trailer, read to the end.
	u, _ := url.Parse(srv.URL + "/chunked")
	out := &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{}, Body: http.NoBody}
	resp, err := c.do(context.Background(), out, func() {})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "ab" || resp.Trailer.Get("X-Sum") != "2" {
		t.Fatalf("chunked: %q %v, trailer %v", b, err, resp.Trailer)
	}

	// A Content-Length answer read to its last byte with io.ReadFull and
	// closed, as the Invoker reads small answers: the connection is kept.
	u, _ = url.Parse(srv.URL + "/echo")
	out = &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{}, Body: http.NoBody}
	resp, err = c.do(context.Background(), out, func() {})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	if _, _, err := h1Call(t, c, "GET", srv.URL+"/echo", "", nil); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for calls one after another, want 1", n)
	}
}

func TestH1ClientClosesAnAnswerNotReadToTheEnd(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 100_000)))
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()

	c := newTestH1Client()
	u, _ := url.Parse(srv.URL)
	out := &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{}, Body: http.NoBody}
	resp, err := c.do(context.Background(), out, func() {})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 10))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 10)); !errors.Is(err, errBodyClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, body, err := h1Call(t, c, "GET", srv.URL, "", nil); err != nil || len(body) != 100_000 {
		t.Fatalf("%d bytes, %v", len(body), err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: the one with an unread answer must not be reused", n)
	}
}

// A backend that closes a kept connection while it is idle (a keep-alive
// timeout): the next call, a POST, goes on a new connection and reaches the
// backend once.
func TestH1ClientNoticesIdleConnectionsTheBackendClosed(t *testing.T) {
	var posts atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			posts.Add(1)
		}
	}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()

	c := newTestH1Client()
	if _, _, err := h1Call(t, c, "GET", srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	// Wait until the backend's FIN has reached the kept connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		kept := c.idle[hostPort(strings.TrimPrefix(srv.URL, "http://"))]
		closed := len(kept) == 1 && peerClosed(kept[0].Conn)
		c.mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the kept connection never showed as closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if status, _, err := h1Call(t, c, "POST", srv.URL, "once", nil); err != nil || status != 200 {
		t.Fatalf("POST after the backend closed the idle connection: %d %v", status, err)
	}
	if posts.Load() != 1 || conns.Load() != 2 {
		t.Fatalf("%d POSTs over %d connections, want 1 over 2", posts.Load(), conns.Load())
	}
}

// dropSecond is a backend that answers the first request on each
// connection and drops the connection on reading the second: a kept
// connection that dies with the request on it.
type dropSecond struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string // method and path of every request read
}

func newDropSecond(t *testing.T) *dropSecond {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dropSecond{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go d.serve(conn)
		}
	}()
	return d
}

func (d *dropSecond) serve(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; ; i++ {
		r, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, r.Body)
		d.mu.Lock()
		d.seen = append(d.seen, r.Method+" "+r.URL.Path)
		d.mu.Unlock()
		if i == 1 {
			return
		}
		answer := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
		if r.Method != "HEAD" {
			answer += "ok"
		}
		io.WriteString(conn, answer)
	}
}

func (d *dropSecond) requests() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.seen...)
}

// A kept connection that fails after the request was sent: the request is
// sent again on a new connection only if it is safe to repeat, as
// http.Transport decides; a POST is never sent twice.
func TestH1ClientRetriesOnlyWhatIsSafeToRepeat(t *testing.T) {
	for _, tc := range []struct {
		method string
		header http.Header
		retry  bool
	}{
		{"GET", nil, true},
		{"HEAD", nil, true},
		{"POST", nil, false},
		{"DELETE", nil, false},
		{"POST", http.Header{"Idempotency-Key": {"k1"}}, true},
	} {
		t.Run(tc.method+map[bool]string{true: "+key"}[tc.header != nil], func(t *testing.T) {
			d := newDropSecond(t)
			c := newTestH1Client()
			base := "http://" + d.ln.Addr().String()
			if _, _, err := h1Call(t, c, "GET", base+"/warm", "", nil); err != nil {
				t.Fatal(err)
			}
			status, _, err := h1Call(t, c, tc.method, base+"/call", "", tc.header)
			want := []string{"GET /warm", tc.method + " /call"}
			if tc.retry {
				if err != nil || status != 200 {
					t.Fatalf("%d %v, want the call sent again and answered", status, err)
				}
				want = append(want, tc.method+" /call")
			} else if err == nil {
				t.Fatalf("answered %d, want the connection's failure", status)
			}
			if got := d.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("backend saw %q, want %q", got, want)
			}
		})
	}
}

// The call's context ends a call that waits for headers and one whose
// answer stalls mid-body, at once.
func TestH1ClientContextEndsTheCall(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Write([]byte("part"))
			w.(http.Flusher).Flush()
		}
		<-release
	}))
	defer srv.Close()
	defer close(release)

	c := newTestH1Client()
	for _, path := range []string{"/headers", "/body"} {
		u, _ := url.Parse(srv.URL + path)
		out := &http.Request{Method: "GET", URL: u, Host: u.Host, Header: http.Header{}, Body: http.NoBody}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		resp, err := c.do(ctx, out, func() {})
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil || ctx.Err() == nil {
			t.Fatalf("%s: err %v with the context %v", path, err, ctx.Err())
		}
		cancel()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) != 0 {
		t.Fatalf("connections of cut calls were kept: %v", c.idle)
	}
}

func TestH1ClientSkipsInterimAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
			io.WriteString(conn, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		io.Copy(io.Discard, conn)
	}()
	status, body, err := h1Call(t, newTestH1Client(), "GET", "http://"+ln.Addr().String()+"/", "", nil)
	if err != nil || status != 200 || body != "ok" {
		t.Fatalf("%d %q %v", status, body, err)
	}
}

func TestH1Takes(t *testing.T) {
	u, _ := url.Parse("http://example.com/")
	s, _ := url.Parse("https://example.com/")
	body := func(n int64) io.ReadCloser { return io.NopCloser(strings.NewReader(strings.Repeat("x", int(n)))) }
	for _, tc := range []struct {
		name string
		req  *http.Request
		want bool
	}{
		{"no body", &http.Request{URL: u, Body: http.NoBody}, true},
		{"https", &http.Request{URL: s, Body: http.NoBody}, false},
		{"known small body", &http.Request{URL: u, Body: body(h1MaxBody), ContentLength: h1MaxBody}, true},
		{"larger body", &http.Request{URL: u, Body: body(h1MaxBody + 1), ContentLength: h1MaxBody + 1}, false},
		{"chunked body", &http.Request{URL: u, Body: body(10), ContentLength: -1}, false},
		{"expect 100-continue", &http.Request{URL: u, Body: body(10), ContentLength: 10, Header: http.Header{"Expect": {"100-continue"}}}, false},
	} {
		if got := h1Takes(tc.req); got != tc.want {
			t.Errorf("%s: h1Takes = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHostPort(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":      "example.com:80",
		"example.com:8080": "example.com:8080",
		"[::1]":            "[::1]:80",
		"[::1]:9":          "[::1]:9",
		"10.0.0.1":         "10.0.0.1:80",
	} {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// A kept connection idle for longer than idleTimeout is closed, not used
// again; at most maxIdle are kept per address.
func TestH1ClientBoundsWhatItKeeps(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	conns := connCounter(srv)
	srv.Start()
	defer srv.Close()

	c := newTestH1Client()
	c.idleTimeout = 50 * time.Millisecond
	if _, _, err := h1Call(t, c, "GET", srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * c.idleTimeout)
	if _, _, err := h1Call(t, c, "GET", srv.URL, "", nil); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2: one idle past idleTimeout must not be used again", n)
	}

	c = newTestH1Client()
	c.maxIdle = 1
	addr := hostPort(strings.TrimPrefix(srv.URL, "http://"))
	a, _ := c.conn(context.Background(), addr)
	b, _ := c.conn(context.Background(), addr)
	c.put(a)
	c.put(b)
	c.mu.Lock()
	kept := len(c.idle[addr])
	c.mu.Unlock()
	if kept != 1 {
		t.Fatalf("%d connections kept, want maxIdle = 1", kept)
	}
	if _, err := b.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err == nil {
		t.Error("the connection over maxIdle was not closed")
	}
}
