package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
)

// httpInvoker runs calls on "http" backends: a reverse proxy that streams
// both ways, over one shared, tuned transport.
type httpInvoker struct {
	transport   *http.Transport
	h1          *h1Client // plain-http calls it can take (h1Takes); nil: none
	bufferLimit int64
	specs       backend.Decoded[httpSpec]

	// targets remembers each backend spec's parsed URL (or why it is not
	// valid), so a call parses no URL; specs are immutable.
	targetsMu sync.RWMutex
	targets   map[string]backendTarget
}

// backendTarget is a backend spec's URL, parsed, or the error it gives.
type backendTarget struct {
	u   *url.URL // never modified: proxyCall.setURL copies it
	err *fnmarket.Error
}

// maxTargets bounds httpInvoker.targets; it is emptied when it reaches this.
const maxTargets = 10_000

func newHTTPInvoker(cfg Config) *httpInvoker {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivateUpstreams {
		dialer.Control = dialGuard
	}
	return &httpInvoker{
		h1: &h1Client{dial: dialer.DialContext, maxIdle: 1024, idleTimeout: 90 * time.Second},
		transport: &http.Transport{
			Proxy:                 nil, // never from the environment
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   1024, // one busy function may keep the whole pool: no redials under load
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Pass the caller's Accept-Encoding and the function's encoded
			// body through untouched.
			DisableCompression: true,
		},
		bufferLimit: cfg.BufferResponseBytes,
		targets:     make(map[string]backendTarget),
	}
}

// target is the parsed URL of the backend spec.
func (h *httpInvoker) target(spec []byte) (*url.URL, error) {
	h.targetsMu.RLock()
	t, ok := h.targets[string(spec)]
	h.targetsMu.RUnlock()
	if !ok {
		t = parseTarget(h.specs.Of(spec))
		h.targetsMu.Lock()
		if len(h.targets) >= maxTargets {
			clear(h.targets)
		}
		h.targets[string(spec)] = t
		h.targetsMu.Unlock()
	}
	if t.err != nil {
		return nil, t.err
	}
	return t.u, nil
}

func parseTarget(spec httpSpec, err error) backendTarget {
	if err != nil {
		return backendTarget{err: &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend is not valid", Err: err}}
	}
	u, problem := parseUpstreamURL(spec.URL)
	if problem != "" {
		return backendTarget{err: &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend URL is not valid", Err: fmt.Errorf("backend URL %s", problem)}}
	}
	return backendTarget{u: u}
}

// errBodyStalled answers a call whose request body sent nothing for the
// gateway's BodyIdleTimeout before the function answered.
var errBodyStalled = fnmarket.Errorf(fnmarket.EREQUESTTIMEOUT, "the request body sent nothing for too long")

// callTimeout is the cause of a call's context when the version's timeout ends it.
type callTimeout struct{}

func (callTimeout) Error() string { return "the function's timeout passed" }

// Invoke forwards the call to the version's backend URL and streams the answer back.
func (h *httpInvoker) Invoke(w http.ResponseWriter, r *http.Request, call *Invocation) (Outcome, error) {
	base, err := h.target(call.Route.Version.Backend.Spec)
	if err != nil {
		return Outcome{}, err
	}
	// One allocation holds what the call needs beside the request itself.
	pc := &proxyCall{call: call}
	if err := pc.setURL(base, call.Rest, r.URL.RawQuery); err != nil {
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend URL is not valid", Err: err}
	}
	if !validMethod(r.Method) {
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EINTERNAL, Err: fmt.Errorf("build upstream request: invalid method %q", r.Method)}
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), call.Timeout, callTimeout{})
	defer cancel()
	pc.ctx = ctx
	pc.start = time.Now()
	// As http.NewRequest makes it, without parsing the URL again.
	out := &http.Request{
		Method:     r.Method,
		URL:        &pc.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       pc.url.Host,
	}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		out.Body = r.Body
		out.ContentLength = r.ContentLength // -1: unknown, sent chunked
	} else {
		out.Body = http.NoBody
	}
	out.Header = forwardHeaders(r, call.ID, &call.hv)

	var resp *http.Response
	if h.h1 != nil && h1Takes(out) {
		resp, err = h.h1.do(ctx, out, pc.wroteHeaders)
	} else {
		pc.trace.WroteHeaders = pc.wroteHeaders
		resp, err = h.transport.RoundTrip(out.WithContext(httptrace.WithClientTrace(ctx, &pc.trace)))
	}
	if err != nil {
		err = withoutURL(err)
		switch {
		case call.BodyTooLarge():
			return Outcome{}, fnmarket.Errorf(fnmarket.ETOOLARGE, "the request body is over the limit")
		case call.BodyStalled():
			return Outcome{}, errBodyStalled
		case isBlockedDial(err):
			return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend address is not allowed", Err: err}
		case pc.timedOut() && pc.sent.Load() != 0:
			return pc.timeoutOutcome(false, 0)
		case pc.timedOut():
			// Never connected within the timeout: the function did no work.
			return Outcome{TimedOut: true}, &fnmarket.Error{Code: fnmarket.EUPSTREAMTIME, Message: "could not reach the function within its timeout", Err: err}
		}
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "could not reach the function", Err: err}
	}
	defer resp.Body.Close()
	headersAt := time.Since(pc.start)
	dst := w.Header()
	rc := http.NewResponseController(w)

	if resp.StatusCode < 200 {
		// Only 101 Switching Protocols gets here, and the gateway strips
		// Upgrade from requests: a function that switches anyway is broken.
		// The caller gets a 502 problem, and a 502 problem is never billed.
		return Outcome{},
			fnmarket.Errorf(fnmarket.EUNREACHABLE, "the function answered with an unsupported status %d", resp.StatusCode)
	}
	noBody := r.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified
	if noBody {
		copyAnswerHeaders(dst, resp.Header, &call.hv)
		ms := pc.computeSince(headersAt)
		call.setMeasured(dst, ms, &call.hv)
		w.WriteHeader(resp.StatusCode)
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: ms, HeadersSent: true}, nil
	}

	if resp.ContentLength >= 0 && resp.ContentLength <= h.bufferLimit && len(resp.Trailer) == 0 {
		// Small answer of known length: read it whole first, so the header
		// carries the final compute time and a timeout can still be a 504.
		buf := getBuffer(int(resp.ContentLength))
		defer putBuffer(buf)
		body := (*buf)[:resp.ContentLength]
		n, readErr := io.ReadFull(resp.Body, body)
		if readErr != nil && pc.timedOut() {
			return pc.timeoutOutcome(false, 0)
		}
		ms := pc.computeSince(time.Since(pc.start))
		copyAnswerHeaders(dst, resp.Header, &call.hv)
		call.hv.set(dst, "Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		call.setMeasured(dst, ms, &call.hv)
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body[:n])
		if readErr != nil {
			// The function answered and then broke off: the caller gets its
			// status and what arrived, then a cut connection (the gateway
			// aborts it), and the call is billed, as for a streamed answer.
			// Flush first: the abort discards what is still buffered.
			_ = rc.Flush()
			return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: ms, HeadersSent: true},
				&fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's answer broke off", Err: readErr}
		}
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: ms, HeadersSent: true}, nil
	}

	// Streamed answer: headers now, with the compute time so far; the body
	// as it comes, flushed after every read; the final compute time as a
	// trailer. Dropping Content-Length makes HTTP/1.1 use chunked encoding,
	// which is what carries trailers.
	copyAnswerHeaders(dst, resp.Header, &call.hv)
	dst.Del("Content-Length")
	dst.Add("Trailer", headerComputeMs)
	dst.Add("Trailer", headerCost)
	for k := range resp.Trailer {
		if functionMaySend(k) {
			dst.Add("Trailer", k)
		}
	}
	call.setMeasured(dst, pc.computeSince(headersAt), &call.hv)
	w.WriteHeader(resp.StatusCode)
	_ = rc.Flush()

	readErr, writeErr := stream(w, rc, resp.Body)
	end := time.Since(pc.start)
	switch {
	case readErr != nil && pc.timedOut():
		return pc.timeoutOutcome(true, resp.StatusCode)
	case writeErr != nil || (readErr != nil && r.Context().Err() != nil):
		// The caller went away; the function still did the work so far.
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: pc.computeSince(end), HeadersSent: true},
			&fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the caller went away", Err: errors.Join(readErr, writeErr)}
	case readErr != nil:
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: pc.computeSince(end), HeadersSent: true},
			&fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's answer broke off", Err: readErr}
	}
	ms := pc.computeSince(end)
	for k, vv := range resp.Trailer {
		if functionMaySend(k) {
			dst[k] = vv
		}
	}
	call.setMeasured(dst, ms, &call.hv)
	return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: ms, HeadersSent: true}, nil
}

// proxyCall is what one call through the HTTP invoker keeps beside its
// request, in one allocation.
type proxyCall struct {
	call *Invocation
	ctx  context.Context
	// start anchors every measurement on the monotonic clock; sent is the
	// offset (plus one, so zero means "not yet") at which the request
	// headers were written to the upstream connection: compute time starts
	// there.
	start time.Time
	sent  atomic.Int64
	trace httptrace.ClientTrace
	url   url.URL
}

func (pc *proxyCall) wroteHeaders() {
	pc.sent.CompareAndSwap(0, int64(time.Since(pc.start))+1)
}

// computeSince is the billed compute of an answer that ended at end (since
// start): from the moment the request headers were written.
func (pc *proxyCall) computeSince(end time.Duration) int64 {
	s := pc.sent.Load()
	if s == 0 {
		return ComputeMs(end)
	}
	return ComputeMs(end - time.Duration(s-1))
}

// timedOut reports whether the version's timeout ended the call.
func (pc *proxyCall) timedOut() bool { _, ok := context.Cause(pc.ctx).(callTimeout); return ok }

func (pc *proxyCall) timeoutOutcome(headersSent bool, status int) (Outcome, error) {
	return Outcome{Reached: true, TimedOut: true, ComputeMs: ComputeMs(pc.call.Timeout), Status: status, HeadersSent: headersSent},
		fnmarket.Errorf(fnmarket.EUPSTREAMTIME, "the function did not answer within its timeout of %d ms", pc.call.Timeout.Milliseconds())
}

// validMethod reports whether method is a token, as http.NewRequest requires.
func validMethod(method string) bool {
	if method == "" {
		return false
	}
	for i := 0; i < len(method); i++ {
		c := method[i]
		if c >= 0x80 || !isTokenChar[c] {
			return false
		}
	}
	return true
}

// isTokenChar is RFC 9110's tchar.
var isTokenChar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// bufferSizes are the capacities of the pooled buffers that hold small
// answers (read whole before they are sent) and streamed chunks.
var bufferSizes = [...]int{1 << 10, 4 << 10, 32 << 10, 256 << 10}

var bufferPools [len(bufferSizes)]sync.Pool

// getBuffer returns a buffer of at least n bytes, pooled when n is at most
// the largest of bufferSizes; give it back with putBuffer.
func getBuffer(n int) *[]byte {
	for i, size := range bufferSizes {
		if n <= size {
			if b, ok := bufferPools[i].Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, size)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

// putBuffer gives back a buffer from getBuffer. Writers do not keep what
// they were given (io.Writer), so the buffer is free once written.
func putBuffer(b *[]byte) {
	for i, size := range bufferSizes {
		if cap(*b) == size {
			*b = (*b)[:size]
			bufferPools[i].Put(b)
			return
		}
	}
}

// withoutURL drops the request URL from a transport error: the error is
// logged, and the URL carries the caller's query, which may hold secrets.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// stream copies src to w, flushing after every read so server-sent events and
// chunks reach the caller as the function produces them.
func stream(w io.Writer, rc *http.ResponseController, src io.Reader) (readErr, writeErr error) {
	pooled := getBuffer(32 << 10)
	defer putBuffer(pooled)
	buf := *pooled
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
				return nil, ferr
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// setURL makes pc.url the backend URL u (parsed by parseUpstreamURL) with
// the call's escaped rest path and query appended.
func (pc *proxyCall) setURL(u *url.URL, rest, rawQuery string) error {
	t := &pc.url
	*t = *u
	t.User = nil
	t.Fragment, t.RawFragment = "", ""
	if rest != "" {
		p := strings.TrimSuffix(u.EscapedPath(), "/") + rest
		unescaped, err := url.PathUnescape(p)
		if err != nil {
			return fmt.Errorf("call path: %w", err)
		}
		t.Path, t.RawPath = unescaped, p
	}
	switch {
	case u.RawQuery == "":
		t.RawQuery = rawQuery
	case rawQuery != "":
		t.RawQuery = u.RawQuery + "&" + rawQuery
	}
	return nil
}

// forwardHeaders is the caller's headers as the function sees them: end-to-end
// headers only, without the caller's credentials, plus X-Forwarded-* and the
// invocation id.
//
// It copies the headers it keeps into one new map whose values share one new
// array (as Header.Clone does), and takes the values it sets from hv.
func forwardHeaders(r *http.Request, invocationID string, hv *headerValues) http.Header {
	src := r.Header
	hop := hopNames(src)
	h := make(http.Header, len(src)+5)
	// Most headers have one value: one array for them all, without a pass
	// to count them; a header with more than is left gets a new array.
	vals := make([]string, len(src))
	for k, vv := range src {
		switch k {
		case "Authorization", "X-Api-Key", "Cookie":
			continue
		}
		if isHopByHop(k) || slices.Contains(hop, k) {
			continue
		}
		if vv == nil {
			h[k] = nil // as Clone keeps it
			continue
		}
		if len(vv) > len(vals) {
			vals = make([]string, len(vv)+len(src))
		}
		m := copy(vals, vv)
		h[k] = vals[:m:m]
		vals = vals[m:]
	}
	if _, ok := h["User-Agent"]; !ok {
		hv.set(h, "User-Agent", "") // do not let Go add its own
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		hv.set(h, "X-Forwarded-For", ip)
	}
	hv.set(h, "X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		hv.set(h, "X-Forwarded-Proto", "https")
	} else {
		hv.set(h, "X-Forwarded-Proto", "http")
	}
	hv.set(h, headerInvocationID, invocationID)
	return h
}

// hopNames is the canonical names of the headers h's Connection headers
// name, which are hop-by-hop as well; nil (no allocation) when there are none.
func hopNames(h http.Header) []string {
	var names []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	return names
}

// CopyAnswerHeaders copies a function's end-to-end answer headers into dst,
// keeping the ones the gateway already set (X-Invocation-Id, rate limits),
// never taking X-Compute-Ms or cookies (Set-Cookie, Set-Cookie2) from the
// function, and adding "Content-Security-Policy: sandbox". Functions answer
// on the portal's origin: a cookie they set, or a script in an HTML answer,
// would act as the portal. Every invoker uses it.
func CopyAnswerHeaders(dst, src http.Header) {
	copyAnswerHeaders(dst, src, nil)
}

// copyAnswerHeaders is CopyAnswerHeaders taking the value it adds from hv
// (nil: its own allocation).
func copyAnswerHeaders(dst, src http.Header, hv *headerValues) {
	// removeHopByHop(src) and the copy in one pass.
	hop := hopNames(src)
	for k, vv := range src {
		if isHopByHop(k) || slices.Contains(hop, k) {
			delete(src, k)
			continue
		}
		if _, set := dst[k]; set || !functionMaySend(k) {
			continue
		}
		dst[k] = vv
	}
	// Added to the function's own policies, if any: a browser enforces
	// every Content-Security-Policy header, so this one always holds.
	hv.add(dst, "Content-Security-Policy", "sandbox")
}

// functionMaySend reports whether a function's answer header (or trailer)
// named canonicalKey is passed to the caller.
func functionMaySend(canonicalKey string) bool {
	switch canonicalKey {
	case headerComputeMs, headerCost, "Set-Cookie", "Set-Cookie2":
		return false
	}
	return true
}

func isHopByHop(canonicalKey string) bool {
	switch canonicalKey {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return strings.HasPrefix(canonicalKey, "Proxy-")
}

// cappedBody is a request body that fails with *http.MaxBytesError once more
// than the limit is read, as http.MaxBytesReader does, and remembers that it did
// so the gateway can tell "too large" from "upstream unreachable". With idle
// set, each read must bring something within idle (the connection's read
// deadline, moved forward before every read and cleared at the end of the
// body, so it cannot fire later in the call); it remembers a stall as well.
type cappedBody struct {
	rc    io.ReadCloser
	limit int64
	left  int64
	hit   atomic.Bool

	idle       time.Duration
	w          http.ResponseWriter // whose read deadline is set (http.ResponseController)
	noDeadline bool                // w cannot set one
	stalled    atomic.Bool
}

func newCappedBody(rc io.ReadCloser, limit int64) *cappedBody {
	return &cappedBody{rc: rc, limit: limit, left: limit}
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.hit.Load() {
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1] // one byte past the limit is enough to know
	}
	n, err := b.read(p)
	if int64(n) <= b.left {
		b.left -= int64(n)
		return n, err
	}
	n, b.left = int(b.left), 0
	b.hit.Store(true)
	return n, &http.MaxBytesError{Limit: b.limit}
}

// read reads from the caller under the idle deadline, if any.
func (b *cappedBody) read(p []byte) (int, error) {
	if b.idle <= 0 || b.w == nil || b.noDeadline {
		return b.rc.Read(p)
	}
	if b.deadline(time.Now().Add(b.idle)) != nil {
		// A writer without deadlines (HTTP/2 in old servers, test recorders).
		b.noDeadline = true
		return b.rc.Read(p)
	}
	n, err := b.rc.Read(p)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.stalled.Store(true)
	case err != nil:
		// The end of the body (or of the connection): no deadline must
		// remain to cut the caller's connection later in the call.
		_ = b.deadline(time.Time{})
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// deadline sets the caller's connection's read deadline.
func (b *cappedBody) deadline(t time.Time) error {
	return http.NewResponseController(b.w).SetReadDeadline(t)
}
