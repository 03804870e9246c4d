package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fnmarket/fnmarket"
)

// Idempotent invocations.
//
// A call may carry "Idempotency-Key: <1-255 printable ASCII characters>".
// Its scope is the API key (Key.ID) and that idempotency key. Before the
// call is admitted, the gateway claims the scope in the IdempotencyStore with
// a lock that lasts the version's timeout plus IdempotencyLockMargin, so a
// gateway killed mid-call leaves nothing locked for long. Then:
//
//   - the first call runs as any other; the answer the caller got (status,
//     headers including X-Invocation-Id, X-Compute-Ms and X-Cost, the final
//     values of trailers as headers, and the body) replaces the lock and is
//     kept for IdempotencyTTL (24 h);
//   - a repeat with the same request (method, path and query, and the
//     SHA-256 of the body) gets that answer again with
//     "Idempotent-Replayed: true": it is not admitted, runs nothing, is not
//     metered and not billed;
//   - a repeat with a different request gets 422 idempotency_mismatch;
//   - a repeat while the first still runs gets 409 conflict with
//     Retry-After: 1.
//
// A call refused before it reached the function (401 and 404 never claim;
// 429, 402, 503 at admission, a 502 problem, 408, 413) releases the claim,
// so the client may retry it. The request body is read whole (up to
// MaxBodyBytes) before the call is admitted, to hash it.
//
// With the header, the call no longer ends when its caller goes away: the
// function runs to its end (within its timeout) and its answer is kept, so
// a client whose connection broke before the answer arrived retries with the
// same key and gets the answer of the one call it is billed for.
//
// Answers whose body is over MaxKeptAnswerBytes (1 MiB), and answers cut
// mid-way (the function broke off or ran out of time while streaming), are
// not kept: the claim stays taken for IdempotencyTTL, marked as such, and a
// repeat gets 409 conflict saying the first answer could not be kept. The
// function never runs twice for one idempotency key; the client that needs
// the answer again uses a new key.

// Idempotency headers and limits.
const (
	HeaderIdempotencyKey     = "Idempotency-Key"
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	// MaxIdempotencyKeyLen is the longest Idempotency-Key accepted.
	MaxIdempotencyKeyLen = 255
	// IdempotencyTTL is how long a call's answer is kept for repeats.
	IdempotencyTTL = 24 * time.Hour
	// IdempotencyLockMargin is added to the version's timeout to bound how
	// long a call in progress holds its idempotency key: admission, body
	// hashing and settling take some time besides the function's.
	IdempotencyLockMargin = 30 * time.Second
	// MaxKeptAnswerBytes is the largest answer body kept for repeats.
	MaxKeptAnswerBytes = 1 << 20
)

// IdempotencyStore keeps one value per scope (an API key id) and key (an
// Idempotency-Key), with an expiry. It is a compare-and-set store: the gateway
// encodes locks and answers in the values. Implementations must keep every
// key of one scope together (one Redis Cluster slot).
type IdempotencyStore interface {
	// Claim sets scope/key to value for ttl if it holds nothing and returns
	// claimed true; otherwise it returns what it holds and claimed false.
	Claim(ctx context.Context, scope, key string, value []byte, ttl time.Duration) (held []byte, claimed bool, err error)
	// Replace sets scope/key to value for ttl if it still holds old, and
	// reports whether it did.
	Replace(ctx context.Context, scope, key string, old, value []byte, ttl time.Duration) (bool, error)
	// Release deletes scope/key if it still holds old.
	Release(ctx context.Context, scope, key string, old []byte) error
}

// UseIdempotencyStore makes the gateway honour Idempotency-Key with s. Call
// it before serving. Without a store the header is ignored.
func (g *Gateway) UseIdempotencyStore(s IdempotencyStore) { g.idem = s }

// Kinds of stored values: the first byte, followed by the request's
// fingerprint (64 hex digits).
const (
	idemLocked   = 'L' // then a random token: the call is running
	idemAnswered = 'A' // then the encoded answer
	idemNotKept  = 'N' // then why the answer could not be kept
	fpLen        = 2 * sha256.Size
)

// keptAnswer is the head of a kept answer; the body follows a newline.
type keptAnswer struct {
	Status int         `json:"status"`
	Header http.Header `json:"header"`
}

// idemCall is a call that holds its idempotency key.
type idemCall struct {
	store      IdempotencyStore
	log        *slog.Logger
	scope, key string
	fp         string
	lock       []byte
	rec        *recorder
}

// validIdempotencyKey reports whether v is 1-255 printable ASCII characters.
func validIdempotencyKey(v string) bool {
	if len(v) == 0 || len(v) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint is the SHA-256 of the method, the escaped path and query, and
// the SHA-256 of the body, in hex.
func fingerprint(r *http.Request, body []byte) string {
	b := sha256.Sum256(body)
	h := sha256.New()
	io.WriteString(h, r.Method)
	io.WriteString(h, "\n")
	io.WriteString(h, r.URL.EscapedPath())
	io.WriteString(h, "?")
	io.WriteString(h, r.URL.RawQuery)
	io.WriteString(h, "\n")
	h.Write(b[:])
	return hex.EncodeToString(h.Sum(nil))
}

// beginIdempotent handles a call that carries Idempotency-Key: it reads and
// hashes the body, then claims the key. It returns the claim, or done true
// when it has answered the call itself (replay, 400, 408, 409, 413, 422,
// 503).
func (g *Gateway) beginIdempotent(w http.ResponseWriter, r *http.Request, key Key, vendor, name string, timeout time.Duration) (ic *idemCall, done bool) {
	vals := r.Header.Values(HeaderIdempotencyKey)
	if len(vals) != 1 || !validIdempotencyKey(vals[0]) {
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.EINVALID, "Idempotency-Key must be sent once, as 1 to %d printable ASCII characters", MaxIdempotencyKeyLen))
		return nil, true
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		cb := newCappedBody(r.Body, g.cfg.MaxBodyBytes)
		cb.idle, cb.w = g.cfg.BodyIdleTimeout, w
		var err error
		body, err = io.ReadAll(cb)
		switch {
		case cb.hit.Load():
			g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.ETOOLARGE, "the request body is over the limit of %d bytes", g.cfg.MaxBodyBytes))
			return nil, true
		case cb.stalled.Load():
			w.Header().Set("Connection", "close")
			g.refuse(w, r, vendor, name, errBodyStalled)
			return nil, true
		case err != nil:
			// The caller went away while sending: nothing to answer.
			g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.EINVALID, "the request body could not be read"))
			return nil, true
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	ic = &idemCall{store: g.idem, log: g.log, scope: key.ID, key: vals[0], fp: fingerprint(r, body)}
	ic.lock = []byte(string(idemLocked) + ic.fp + newInvocationID())

	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.StoreTimeout)
	held, claimed, err := g.idem.Claim(ctx, ic.scope, ic.key, ic.lock, timeout+IdempotencyLockMargin)
	cancel()
	if err != nil {
		g.refuse(w, r, vendor, name, storeUnavailable(w, "claim Idempotency-Key", err))
		return nil, true
	}
	if claimed {
		ic.rec = &recorder{ResponseWriter: w}
		return ic, false
	}
	if len(held) < 1+fpLen || string(held[1:1+fpLen]) != ic.fp {
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.EIDEMPOTENCYMISMATCH, "this Idempotency-Key was first used with a different request (method, path, query or body)"))
		return nil, true
	}
	switch held[0] {
	case idemLocked:
		w.Header().Set("Retry-After", "1")
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.ECONFLICT, "a call with this Idempotency-Key is still running; retry shortly"))
		return nil, true
	case idemAnswered:
		if err := replay(w, held[1+fpLen:]); err == nil {
			g.metrics.count(vendor, name, "replayed")
			return nil, true
		}
		g.refuse(w, r, vendor, name, &fnmarket.Error{Code: fnmarket.EINTERNAL, Message: "read the kept answer", Err: errors.New("corrupt idempotency record")})
		return nil, true
	default:
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.ECONFLICT, "the first call with this Idempotency-Key ran, but its answer could not be kept (%s); use a new Idempotency-Key to call again", held[1+fpLen:]))
		return nil, true
	}
}

// replay writes a kept answer.
func replay(w http.ResponseWriter, v []byte) error {
	head, body, ok := bytes.Cut(v, []byte("\n"))
	var a keptAnswer
	if !ok || json.Unmarshal(head, &a) != nil || a.Status < 200 {
		return errors.New("corrupt")
	}
	h := w.Header()
	for k, vv := range a.Header {
		h[k] = vv
	}
	h.Set(HeaderIdempotentReplayed, "true")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(a.Status)
	_, _ = w.Write(body)
	return nil
}

// request is the request the invoker gets: the caller going away no longer
// cancels it, so the answer can be kept for the caller's retry.
func (ic *idemCall) request(r *http.Request) *http.Request {
	if ic == nil {
		return r
	}
	return r.WithContext(context.WithoutCancel(r.Context()))
}

// release gives the key back: the call was refused before it reached the
// function. Safe on a nil *idemCall.
func (ic *idemCall) release(ctx context.Context) {
	if ic == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultStoreTimeout)
	defer cancel()
	if err := ic.store.Release(ctx, ic.scope, ic.key, ic.lock); err != nil {
		ic.log.LogAttrs(ctx, slog.LevelWarn, "gateway: release Idempotency-Key; it frees itself when its lock expires", slog.Any("err", err))
	}
}

// finish ends a call that held its key: released if the call never reached
// the function, else the answer recorded (or why it is not kept) replaces
// the lock. Safe on a nil *idemCall.
func (ic *idemCall) finish(ctx context.Context, out Outcome, err error) {
	if ic == nil {
		return
	}
	if !out.Reached {
		ic.release(ctx)
		return
	}
	var v []byte
	switch a, ok := ic.rec.answer(); {
	case err != nil && out.HeadersSent:
		v = []byte(string(idemNotKept) + ic.fp + "the answer was cut")
	case !ok && ic.rec.over:
		v = []byte(string(idemNotKept) + ic.fp + "the answer was over " + strconv.Itoa(MaxKeptAnswerBytes) + " bytes")
	case !ok:
		v = []byte(string(idemNotKept) + ic.fp + "no answer was recorded")
	default:
		v = append([]byte(string(idemAnswered)+ic.fp), a...)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultStoreTimeout)
	defer cancel()
	replaced, serr := ic.store.Replace(ctx, ic.scope, ic.key, ic.lock, v, IdempotencyTTL)
	if serr != nil || !replaced {
		ic.log.LogAttrs(ctx, slog.LevelWarn, "gateway: keep the answer of an idempotent call; a repeat will run again",
			slog.Bool("lock_lost", serr == nil), slog.Any("err", serr))
	}
}

// recorder is the ResponseWriter of a call with Idempotency-Key: it passes
// everything on to the caller and keeps a copy (up to MaxKeptAnswerBytes of
// body). Once the caller's connection fails, it keeps recording and reports
// success, so the function's answer is read to its end and can be kept.
type recorder struct {
	http.ResponseWriter
	status int
	header http.Header // as sent with the status
	body   bytes.Buffer
	over   bool // the body passed MaxKeptAnswerBytes: not kept
	broken bool // the caller's connection failed
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 {
		rw.status = code
		rw.header = rw.Header().Clone()
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.over {
		if rw.body.Len()+len(p) > MaxKeptAnswerBytes {
			rw.over = true
			rw.body = bytes.Buffer{}
		} else {
			rw.body.Write(p)
		}
	}
	if !rw.broken {
		n, err := rw.ResponseWriter.Write(p)
		if err == nil {
			return n, nil
		}
		rw.broken = true
		if rw.over {
			return n, err
		}
	} else if rw.over {
		return 0, errors.New("the caller went away and the answer is too large to keep")
	}
	return len(p), nil
}

// FlushError flushes to the caller; see Write for a failed connection.
func (rw *recorder) FlushError() error {
	if rw.broken {
		if rw.over {
			return errors.New("the caller went away")
		}
		return nil
	}
	err := http.NewResponseController(rw.ResponseWriter).Flush()
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		rw.broken = true
		if !rw.over {
			return nil
		}
	}
	return err
}

// Flush is FlushError for callers that only know http.Flusher.
func (rw *recorder) Flush() { _ = rw.FlushError() }

// answer encodes what the caller got: status and headers as sent, with the
// final values of announced trailers as headers, then the body. ok is false
// when the body was too large to keep or nothing was written.
func (rw *recorder) answer() ([]byte, bool) {
	if rw.over || rw.status == 0 {
		return nil, false
	}
	h := rw.header
	final := rw.Header()
	for _, v := range h.Values("Trailer") {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				if vv, ok := final[k]; ok {
					h[k] = vv
				}
			}
		}
	}
	h.Del("Trailer")
	h.Del("Content-Length")
	for k, vv := range final {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			h[strings.TrimPrefix(k, http.TrailerPrefix)] = vv
		}
	}
	head, err := json.Marshal(keptAnswer{Status: rw.status, Header: h})
	if err != nil {
		return nil, false
	}
	return append(append(head, '\n'), rw.body.Bytes()...), true
}
