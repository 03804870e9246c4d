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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
)

// httpInvoker runs calls on "http" backends: a reverse proxy that streams
// both ways, over one shared, tuned transport.
type httpInvoker struct {
	transport   *http.Transport
	bufferLimit int64
	specs       backend.Decoded[httpSpec]
}

func newHTTPInvoker(cfg Config) *httpInvoker {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	if !cfg.AllowPrivateUpstreams {
		dialer.Control = dialGuard
	}
	return &httpInvoker{
		transport: &http.Transport{
			Proxy:                 nil, // never from the environment
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Pass the caller's Accept-Encoding and the function's encoded
			// body through untouched.
			DisableCompression: true,
		},
		bufferLimit: cfg.BufferResponseBytes,
	}
}

// errBodyStalled answers a call whose request body sent nothing for the
// gateway's BodyIdleTimeout before the function answered.
var errBodyStalled = fnmarket.Errorf(fnmarket.EREQUESTTIMEOUT, "the request body sent nothing for too long")

// callTimeout is the cause of a call's context when the version's timeout ends it.
type callTimeout struct{}

func (callTimeout) Error() string { return "the function's timeout passed" }

// Invoke forwards the call to the version's backend URL and streams the answer back.
func (h *httpInvoker) Invoke(w http.ResponseWriter, r *http.Request, call *Invocation) (Outcome, error) {
	spec, err := h.specs.Of(call.Route.Version.Backend.Spec)
	raw := spec.URL
	if err != nil {
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend is not valid", Err: err}
	}
	target, err := backendURL(raw, call.Rest, r.URL.RawQuery)
	if err != nil {
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend URL is not valid", Err: err}
	}
	ctx, cancel := context.WithTimeoutCause(r.Context(), call.Timeout, callTimeout{})
	defer cancel()

	// base anchors every measurement on the monotonic clock; sent is the
	// offset (plus one, so zero means "not yet") at which the request headers
	// were written to the upstream connection: compute time starts there.
	base := time.Now()
	var sent atomic.Int64
	trace := &httptrace.ClientTrace{
		WroteHeaders: func() { sent.CompareAndSwap(0, int64(time.Since(base))+1) },
	}
	out, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), r.Method, target.String(), nil)
	if err != nil {
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EINTERNAL, Err: fmt.Errorf("build upstream request: %w", err)}
	}
	out.URL = target
	out.Host = target.Host
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		out.Body = r.Body
		out.ContentLength = r.ContentLength // -1: unknown, sent chunked
	} else {
		out.Body = http.NoBody
	}
	out.Header = forwardHeaders(r, call.ID)

	computeSince := func(end time.Duration) int64 {
		s := sent.Load()
		if s == 0 {
			return ComputeMs(end)
		}
		return ComputeMs(end - time.Duration(s-1))
	}
	timedOut := func() bool { _, ok := context.Cause(ctx).(callTimeout); return ok }
	timeoutOutcome := func(headersSent bool, status int) (Outcome, error) {
		return Outcome{Reached: true, TimedOut: true, ComputeMs: ComputeMs(call.Timeout), Status: status, HeadersSent: headersSent},
			fnmarket.Errorf(fnmarket.EUPSTREAMTIME, "the function did not answer within its timeout of %d ms", call.Timeout.Milliseconds())
	}

	resp, err := h.transport.RoundTrip(out)
	if err != nil {
		err = withoutURL(err)
		switch {
		case call.BodyTooLarge():
			return Outcome{}, fnmarket.Errorf(fnmarket.ETOOLARGE, "the request body is over the limit")
		case call.BodyStalled():
			return Outcome{}, errBodyStalled
		case isBlockedDial(err):
			return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend address is not allowed", Err: err}
		case timedOut() && sent.Load() != 0:
			return timeoutOutcome(false, 0)
		case timedOut():
			// Never connected within the timeout: the function did no work.
			return Outcome{TimedOut: true}, &fnmarket.Error{Code: fnmarket.EUPSTREAMTIME, Message: "could not reach the function within its timeout", Err: err}
		}
		return Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "could not reach the function", Err: err}
	}
	defer resp.Body.Close()
	headersAt := time.Since(base)
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
		CopyAnswerHeaders(dst, resp.Header)
		ms := computeSince(headersAt)
		call.SetMeasured(dst, ms)
		w.WriteHeader(resp.StatusCode)
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: ms, HeadersSent: true}, nil
	}

	if resp.ContentLength >= 0 && resp.ContentLength <= h.bufferLimit && len(resp.Trailer) == 0 {
		// Small answer of known length: read it whole first, so the header
		// carries the final compute time and a timeout can still be a 504.
		body := make([]byte, resp.ContentLength)
		n, readErr := io.ReadFull(resp.Body, body)
		if readErr != nil && timedOut() {
			return timeoutOutcome(false, 0)
		}
		ms := computeSince(time.Since(base))
		CopyAnswerHeaders(dst, resp.Header)
		dst.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		call.SetMeasured(dst, ms)
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
	CopyAnswerHeaders(dst, resp.Header)
	dst.Del("Content-Length")
	dst.Add("Trailer", headerComputeMs)
	dst.Add("Trailer", headerCost)
	for k := range resp.Trailer {
		if functionMaySend(k) {
			dst.Add("Trailer", k)
		}
	}
	call.SetMeasured(dst, computeSince(headersAt))
	w.WriteHeader(resp.StatusCode)
	_ = rc.Flush()

	readErr, writeErr := stream(w, rc, resp.Body)
	end := time.Since(base)
	switch {
	case readErr != nil && timedOut():
		return timeoutOutcome(true, resp.StatusCode)
	case writeErr != nil || (readErr != nil && r.Context().Err() != nil):
		// The caller went away; the function still did the work so far.
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: computeSince(end), HeadersSent: true},
			&fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the caller went away", Err: errors.Join(readErr, writeErr)}
	case readErr != nil:
		return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: computeSince(end), HeadersSent: true},
			&fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's answer broke off", Err: readErr}
	}
	ms := computeSince(end)
	for k, vv := range resp.Trailer {
		if functionMaySend(k) {
			dst[k] = vv
		}
	}
	call.SetMeasured(dst, ms)
	return Outcome{Reached: true, Status: resp.StatusCode, ComputeMs: ms, HeadersSent: true}, nil
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
	buf := make([]byte, 32<<10)
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

// backendURL appends the call's escaped rest path and query to the backend URL.
func backendURL(raw, rest, rawQuery string) (*url.URL, error) {
	u, problem := parseUpstreamURL(raw)
	if problem != "" {
		return nil, fmt.Errorf("backend URL %s", problem)
	}
	t := *u
	t.User = nil
	t.Fragment, t.RawFragment = "", ""
	if rest != "" {
		p := strings.TrimSuffix(u.EscapedPath(), "/") + rest
		unescaped, err := url.PathUnescape(p)
		if err != nil {
			return nil, fmt.Errorf("call path: %w", err)
		}
		t.Path, t.RawPath = unescaped, p
	}
	switch {
	case u.RawQuery == "":
		t.RawQuery = rawQuery
	case rawQuery != "":
		t.RawQuery = u.RawQuery + "&" + rawQuery
	}
	return &t, nil
}

// forwardHeaders is the caller's headers as the function sees them: end-to-end
// headers only, without the caller's credentials, plus X-Forwarded-* and the
// invocation id.
func forwardHeaders(r *http.Request, invocationID string) http.Header {
	h := r.Header.Clone()
	removeHopByHop(h)
	for _, k := range []string{"Authorization", "X-Api-Key", "Cookie"} {
		delete(h, k)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // do not let Go add its own
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h.Set("X-Forwarded-For", ip)
	}
	h.Set("X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	h.Set(headerInvocationID, invocationID)
	return h
}

// CopyAnswerHeaders copies a function's end-to-end answer headers into dst,
// keeping the ones the gateway already set (X-Invocation-Id, rate limits),
// never taking X-Compute-Ms or cookies (Set-Cookie, Set-Cookie2) from the
// function, and adding "Content-Security-Policy: sandbox". Functions answer
// on the portal's origin: a cookie they set, or a script in an HTML answer,
// would act as the portal. Every invoker uses it.
func CopyAnswerHeaders(dst, src http.Header) {
	removeHopByHop(src)
	for k, vv := range src {
		if _, set := dst[k]; set || !functionMaySend(k) {
			continue
		}
		dst[k] = vv
	}
	// Added to the function's own policies, if any: a browser enforces
	// every Content-Security-Policy header, so this one always holds.
	dst.Add("Content-Security-Policy", "sandbox")
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

// removeHopByHop deletes the hop-by-hop headers of RFC 9110 section 7.6.1,
// including those the Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k := range h {
		if isHopByHop(k) {
			delete(h, k)
		}
	}
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

	idle     time.Duration
	deadline func(time.Time) error // http.ResponseController.SetReadDeadline
	stalled  atomic.Bool
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
	if b.idle <= 0 || b.deadline == nil {
		return b.rc.Read(p)
	}
	if b.deadline(time.Now().Add(b.idle)) != nil {
		// A writer without deadlines (HTTP/2 in old servers, test recorders).
		b.deadline = nil
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
