package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// h1Client calls plain-http backends over HTTP/1.1 on the calling goroutine:
// it writes the request to a pooled connection and reads the answer from it
// itself. http.Transport gives every connection a reading and a writing
// goroutine and hands each request and answer between them over channels;
// on a loaded gateway those hand-offs and wake-ups cost more CPU than the
// gateway's own checks, and on an idle one they add to a lone caller's
// latency (BENCHMARKS.md, "A synchronous upstream client").
//
// It takes only what it can do exactly as http.Transport does: requests
// whose body the gateway can hold whole before sending (none, or a known
// length up to h1MaxBody), so the answer can never be waiting behind a body
// still being written. Everything else (https, HTTP/2, bodies of unknown or
// larger length, which must stream both ways at once) goes to the Transport.
//
// The request is written with Request.Write and the answer parsed with
// http.ReadResponse, the code the Transport itself uses on the wire, so
// framing (Content-Length, chunked, trailers, HEAD, 1xx) is the standard
// library's.
//
// Reuse follows the Transport's rules. A connection goes back to the pool
// only when its answer was read to the end and neither side asked to close
// it. Before a kept connection is used again, a non-blocking peek checks
// that the backend has not closed it while idle (what the Transport's
// reading goroutine notices). If a kept connection still fails before any
// byte of an answer arrives, the request is sent once more on a new
// connection only as the Transport would (retrySafe): a POST that reached
// the backend is never sent twice.
type h1Client struct {
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle     int           // kept connections per backend address
	idleTimeout time.Duration // a connection idle longer is closed

	mu        sync.Mutex
	idle      map[string][]*h1Conn // by host:port, most recently used last
	lastPrune time.Time
}

// h1MaxBody is the largest request body the synchronous client takes: it is
// read whole into a pooled buffer before anything is sent.
const h1MaxBody = 16 << 10

// h1Takes reports whether the synchronous client can carry out (a request
// the Invoker built, before its body is read).
func h1Takes(out *http.Request) bool {
	if out.URL.Scheme != "http" {
		return false
	}
	if out.Body == nil || out.Body == http.NoBody {
		return true
	}
	if _, ok := out.Header["Expect"]; ok {
		return false // 100-continue: the Transport waits before the body
	}
	return out.ContentLength > 0 && out.ContentLength <= h1MaxBody
}

// h1Conn is one kept connection with its buffers.
type h1Conn struct {
	net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	addr   string
	idleAt time.Time // when it went back to the pool
	reused bool      // it carried an earlier call
	// Bytes that went each way during the current call.
	nread, nwritten int64
}

func (c *h1Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.nread += int64(n)
	return n, err
}

func (c *h1Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.nwritten += int64(n)
	return n, err
}

// aLongTimeAgo is a deadline that has passed: setting it unblocks any
// pending read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// do sends out (made by the Invoker; h1Takes(out)) and returns the answer
// with its headers read; wrote is called once the request is on the wire.
// The answer's body must be read to the end or closed. ctx ends the call:
// when it is done, any read or write on the connection fails at once.
func (c *h1Client) do(ctx context.Context, out *http.Request, wrote func()) (*http.Response, error) {
	var body *[]byte
	if out.Body != nil && out.Body != http.NoBody {
		// Hold the body whole: its errors (too large, stalled) are the
		// caller's, before anything is sent, and a retry can resend it.
		body = getBuffer(int(out.ContentLength))
		defer putBuffer(body)
		b := (*body)[:out.ContentLength]
		if _, err := io.ReadFull(out.Body, b); err != nil {
			return nil, err
		}
		out.Body = io.NopCloser(bytes.NewReader(b))
	}
	addr := hostPort(out.URL.Host)
	for attempt := 0; ; attempt++ {
		cn, err := c.conn(ctx, addr)
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { _ = cn.SetDeadline(aLongTimeAgo) })
		resp, err := cn.exchange(out, wrote)
		if err == nil {
			return c.answer(cn, stop, out, resp), nil
		}
		stop()
		_ = cn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		if attempt > 0 || !retrySafe(cn, out, err) {
			return nil, err
		}
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader((*body)[:out.ContentLength]))
		}
	}
}

// exchange writes out and reads the answer's status line and headers,
// skipping interim (1xx) answers other than 101, as the Transport does.
func (cn *h1Conn) exchange(out *http.Request, wrote func()) (*http.Response, error) {
	cn.nread, cn.nwritten = 0, 0
	if err := out.Write(cn.bw); err != nil {
		return nil, err
	}
	if err := cn.bw.Flush(); err != nil {
		return nil, err
	}
	wrote()
	for interim := 0; ; interim++ {
		resp, err := http.ReadResponse(cn.br, out)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if interim == 5 {
			return nil, errors.New("too many 1xx informational answers")
		}
	}
}

// retrySafe reports whether a request that failed on cn may be sent again on
// a new connection, by http.Transport's rule: only on a kept connection (the
// backend may have dropped it while idle), with nothing of an answer read,
// and either nothing of the request sent or a request that is safe to
// repeat (GET, HEAD, OPTIONS or TRACE, or one with an Idempotency-Key) and a
// connection that was closed or reset under it.
func retrySafe(cn *h1Conn, out *http.Request, err error) bool {
	if !cn.reused || cn.nread != 0 {
		return false
	}
	if cn.nwritten == 0 {
		return true
	}
	// http.ReadResponse turns an EOF before the status line into
	// io.ErrUnexpectedEOF; nread == 0 says nothing at all arrived.
	closed := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	if !closed {
		return false
	}
	switch out.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, key := out.Header["Idempotency-Key"]
	_, xkey := out.Header["X-Idempotency-Key"]
	return key || xkey
}

// answer gives resp a body that returns cn to the pool once read to the
// end, or closes it.
func (c *h1Client) answer(cn *h1Conn, stop func() bool, out *http.Request, resp *http.Response) *http.Response {
	b := &h1Body{c: c, cn: cn, stop: stop, src: resp.Body,
		keep: !resp.Close && !out.Close && resp.StatusCode != http.StatusSwitchingProtocols}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp
	}
	resp.Body = b
	return resp
}

// h1Body is an answer's body on a connection of the client.
type h1Body struct {
	c    *h1Client
	cn   *h1Conn
	stop func() bool
	src  io.ReadCloser // http.ReadResponse's: never closed, which would drain it
	keep bool
	done bool
}

var errBodyClosed = errors.New("read on a closed answer body")

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, errBodyClosed
	}
	n, err := b.src.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
	}
	return n, err
}

// Close gives up an answer not read to its end: its connection is closed,
// as the Transport closes one (reading the rest could take forever).
func (b *h1Body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish ends the call on the connection: back to the pool if the answer
// was read whole and the connection may be kept, closed otherwise.
func (b *h1Body) finish(whole bool) {
	b.done = true
	// stop fails once ctx has ended: the deadline may be set, or about to be.
	if b.stop() && whole && b.keep {
		b.c.put(b.cn)
		return
	}
	_ = b.cn.Close()
}

// conn is a kept connection to addr that is still open, or a new one.
func (c *h1Client) conn(ctx context.Context, addr string) (*h1Conn, error) {
	for {
		cn := c.take(addr)
		if cn == nil {
			break
		}
		if cn.br.Buffered() != 0 || peerClosed(cn.Conn) {
			// Closed by the backend while idle, or sent bytes nobody asked for.
			_ = cn.Close()
			continue
		}
		cn.reused = true
		return cn, nil
	}
	nc, err := c.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	cn := &h1Conn{Conn: nc, addr: addr}
	cn.br = bufio.NewReader(cn)
	cn.bw = bufio.NewWriter(cn)
	return cn, nil
}

// take pops addr's most recently used kept connection that has not been
// idle too long; nil if there is none.
func (c *h1Client) take(addr string) *h1Conn {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pruneLocked(now)
	kept := c.idle[addr]
	if len(kept) == 0 {
		return nil
	}
	cn := kept[len(kept)-1]
	kept[len(kept)-1] = nil
	c.idle[addr] = kept[:len(kept)-1]
	return cn
}

// put keeps cn for a later call, unless addr has maxIdle kept already.
// No deadline is set on cn: the only one is the context's, and an answer
// whose context ended is never kept (h1Body.finish).
func (c *h1Client) put(cn *h1Conn) {
	cn.idleAt = time.Now()
	c.mu.Lock()
	kept := c.idle[cn.addr]
	if len(kept) < c.maxIdle {
		if c.idle == nil {
			c.idle = make(map[string][]*h1Conn)
		}
		c.idle[cn.addr] = append(kept, cn)
		cn = nil
	}
	c.mu.Unlock()
	if cn != nil {
		_ = cn.Close()
	}
}

// pruneLocked closes, at most once per idleTimeout/2, every connection idle
// for longer than idleTimeout. Kept connections are in the order they went
// idle, so each address's stale ones are at the front.
func (c *h1Client) pruneLocked(now time.Time) {
	if now.Sub(c.lastPrune) < c.idleTimeout/2 {
		return
	}
	c.lastPrune = now
	for addr, kept := range c.idle {
		n := 0
		for n < len(kept) && now.Sub(kept[n].idleAt) > c.idleTimeout {
			_ = kept[n].Close()
			n++
		}
		if n == len(kept) {
			delete(c.idle, addr)
			continue
		}
		c.idle[addr] = append(kept[:0], kept[n:]...)
	}
}

// closeIdle closes every kept connection (of a client, if any).
func (c *h1Client) closeIdle() {
	if c == nil {
		return
	}
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, kept := range idle {
		for _, cn := range kept {
			_ = cn.Close()
		}
	}
}

// hostPort is a URL host as a dial address: with the http port if it has none.
func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, "80")
}
