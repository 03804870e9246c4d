package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// fakeIdem is an in-memory IdempotencyStore; it ignores expiry but
// remembers the TTL of each write.
type fakeIdem struct {
	mu   sync.Mutex
	vals map[string][]byte
	ttls map[string]time.Duration
}

var _ gateway.IdempotencyStore = (*fakeIdem)(nil)

func newFakeIdem() *fakeIdem {
	return &fakeIdem{vals: map[string][]byte{}, ttls: map[string]time.Duration{}}
}

func (f *fakeIdem) Claim(_ context.Context, scope, key string, value []byte, ttl time.Duration) ([]byte, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := scope + "/" + key
	if v, ok := f.vals[k]; ok {
		return v, false, nil
	}
	f.vals[k], f.ttls[k] = value, ttl
	return nil, true, nil
}

func (f *fakeIdem) Replace(_ context.Context, scope, key string, old, value []byte, ttl time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := scope + "/" + key
	if !bytes.Equal(f.vals[k], old) {
		return false, nil
	}
	f.vals[k], f.ttls[k] = value, ttl
	return true, nil
}

func (f *fakeIdem) Release(_ context.Context, scope, key string, old []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := scope + "/" + key
	if bytes.Equal(f.vals[k], old) {
		delete(f.vals, k)
	}
	return nil
}

func (f *fakeIdem) held(scope, key string) (string, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.vals[scope+"/"+key]), f.ttls[scope+"/"+key]
}

func (f *fakeIdem) size() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.vals)
}

func idemEnv(t *testing.T, cfg gateway.Config) (*env, *fakeIdem) {
	e := newEnv(t, envOptions{cfg: cfg})
	s := newFakeIdem()
	e.gw.UseIdempotencyStore(s)
	return e, s
}

func withIdem(key string) http.Header {
	return http.Header{"Authorization": {"Bearer " + testKey}, "Idempotency-Key": {key}}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// countingUpstream answers "answer <n> <body>" and counts its calls.
func countingUpstream(t *testing.T, calls *atomic.Int64) string {
	return upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		n := calls.Add(1)
		w.Header().Set("X-Fn", "yes")
		w.WriteHeader(201)
		_, _ = io.WriteString(w, "answer "+string(rune('0'+n))+" "+string(b))
	}).URL
}

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	e, store := idemEnv(t, private())
	e.routes.addVersion("acme", "fn", 1, countingUpstream(t, &calls), true)

	first := e.do("POST", "/v1/invoke/acme/fn/x?q=1", strings.NewReader("hello"), withIdem("order-42"))
	firstBody := readAll(t, first)
	if first.StatusCode != 201 || firstBody != "answer 1 hello" || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first call: %d %q replayed=%q", first.StatusCode, firstBody, first.Header.Get("Idempotent-Replayed"))
	}
	if v, ttl := store.held("key-1", "order-42"); !strings.HasPrefix(v, "A") || ttl != gateway.IdempotencyTTL {
		t.Fatalf("store holds %.20q for %v; want the answer for 24h", v, ttl)
	}
	for i := 0; i < 2; i++ {
		again := e.do("POST", "/v1/invoke/acme/fn/x?q=1", strings.NewReader("hello"), withIdem("order-42"))
		body := readAll(t, again)
		if again.StatusCode != 201 || body != firstBody || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("repeat: %d %q replayed=%q", again.StatusCode, body, again.Header.Get("Idempotent-Replayed"))
		}
		for _, h := range []string{"X-Invocation-Id", "X-Compute-Ms", "X-Cost", "X-Fn", "Content-Security-Policy"} {
			if got, want := again.Header.Get(h), first.Header.Get(h); got != want || want == "" {
				t.Errorf("repeat %s = %q; want the first answer's %q", h, got, want)
			}
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the function ran %d times; want 1", n)
	}
	if n := len(e.meter.recorded()); n != 1 {
		t.Errorf("metered %d calls; want 1", n)
	}
	// The same idempotency key under another API key is another call.
	e.keys.add("fnm_test_other", gateway.Key{ID: "key-2", ConsumerID: "consumer-1"})
	other := e.do("POST", "/v1/invoke/acme/fn/x?q=1", strings.NewReader("hello"),
		http.Header{"Authorization": {"Bearer fnm_test_other"}, "Idempotency-Key": {"order-42"}})
	if body := readAll(t, other); body != "answer 2 hello" || other.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("another API key's call = %q; want a new run", body)
	}
}

// TestIdempotentStreamedReplay: a streamed answer's trailers are kept as
// headers.
func TestIdempotentStreamedReplay(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		for i := 0; i < 3; i++ {
			_, _ = io.WriteString(w, "chunk ")
			w.(http.Flusher).Flush()
		}
	})
	e, _ := idemEnv(t, private())
	e.routes.addVersion("acme", "stream", 1, up.URL, true)
	first := e.do("GET", "/v1/invoke/acme/stream", nil, withIdem("s1"))
	firstBody := readAll(t, first)
	if first.Trailer.Get("X-Compute-Ms") == "" {
		t.Fatalf("the first answer was not streamed with trailers: %v", first.Header)
	}
	again := e.do("GET", "/v1/invoke/acme/stream", nil, withIdem("s1"))
	if body := readAll(t, again); body != firstBody || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat = %q, replayed %q", body, again.Header.Get("Idempotent-Replayed"))
	}
	for _, h := range []string{"X-Compute-Ms", "X-Cost"} {
		if got, want := again.Header.Get(h), first.Trailer.Get(h); got != want {
			t.Errorf("replayed %s header = %q; want the first answer's trailer %q", h, got, want)
		}
	}
	if again.Header.Get("Trailer") != "" || calls.Load() != 1 {
		t.Errorf("Trailer %q, calls %d", again.Header.Get("Trailer"), calls.Load())
	}
}

func TestIdempotencyMismatch(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	e, _ := idemEnv(t, private())
	e.routes.addVersion("acme", "fn", 1, countingUpstream(t, &calls), true)
	readAll(t, e.do("POST", "/v1/invoke/acme/fn?a=1", strings.NewReader("one"), withIdem("k")))
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/invoke/acme/fn?a=1", "two"},
		{"POST", "/v1/invoke/acme/fn?a=2", "one"},
		{"POST", "/v1/invoke/acme/fn/more?a=1", "one"},
		{"PUT", "/v1/invoke/acme/fn?a=1", "one"},
	} {
		resp := e.do(c.method, c.path, strings.NewReader(c.body), withIdem("k"))
		wantProblem(t, resp, 422, fnmarket.EIDEMPOTENCYMISMATCH)
	}
	if calls.Load() != 1 || len(e.meter.recorded()) != 1 {
		t.Errorf("calls %d, metered %d; want 1 and 1", calls.Load(), len(e.meter.recorded()))
	}
}

func TestIdempotentInProgress(t *testing.T) {
	t.Parallel()
	arrived, finish := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(arrived)
		}
		<-finish
		_, _ = io.WriteString(w, "done")
	})
	cfg := private()
	e, store := idemEnv(t, cfg)
	e.routes.addVersion("acme", "slow", 1, up.URL, true, func(v *catalog.Version) { v.TimeoutMs = 7000 })
	got := make(chan string)
	go func() {
		resp := e.do("GET", "/v1/invoke/acme/slow", nil, withIdem("k"))
		got <- readAll(t, resp)
	}()
	<-arrived
	if _, ttl := store.held("key-1", "k"); ttl != 7*time.Second+gateway.IdempotencyLockMargin {
		t.Errorf("lock TTL = %v; want the version's timeout plus the margin", ttl)
	}
	resp := e.do("GET", "/v1/invoke/acme/slow", nil, withIdem("k"))
	if resp.Header.Get("Retry-After") == "" {
		t.Error("409 without Retry-After")
	}
	wantProblem(t, resp, 409, fnmarket.ECONFLICT)
	close(finish)
	if body := <-got; body != "done" {
		t.Fatalf("first call = %q", body)
	}
	again := e.do("GET", "/v1/invoke/acme/slow", nil, withIdem("k"))
	if body := readAll(t, again); body != "done" || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("after the first ended: %q replayed %q", body, again.Header.Get("Idempotent-Replayed"))
	}
	if calls.Load() != 1 || len(e.meter.recorded()) != 1 {
		t.Errorf("calls %d, metered %d; want 1 and 1", calls.Load(), len(e.meter.recorded()))
	}
}

// TestIdempotentRefusalReleases: a call refused before it reached the
// function leaves the key free, so the client's retry runs.
func TestIdempotentRefusalReleases(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := private()
	cfg.Clock = clock
	e, store := idemEnv(t, cfg)
	e.routes.addVersion("acme", "fn", 1, countingUpstream(t, &calls), true, func(v *catalog.Version) { v.RateLimitPerSecond = 1 })
	down := upstream(t, func(http.ResponseWriter, *http.Request) {})
	downURL := down.URL
	down.Close()
	e.routes.addVersion("acme", "down", 1, downURL, true)

	readAll(t, e.do("GET", "/v1/invoke/acme/fn", nil, nil)) // uses the second's one call
	wantProblem(t, e.do("GET", "/v1/invoke/acme/fn", nil, withIdem("k")), 429, fnmarket.ERATELIMITED)
	wantProblem(t, e.do("GET", "/v1/invoke/acme/down", nil, withIdem("k2")), 502, fnmarket.EUNREACHABLE)
	wantProblem(t, e.do("GET", "/v1/invoke/acme/nope", nil, withIdem("k3")), 404, fnmarket.ENOTFOUND)
	wantProblem(t, e.do("GET", "/v1/invoke/acme/fn", nil, http.Header{"Authorization": {"Bearer fnm_bad"}, "Idempotency-Key": {"k4"}}), 401, fnmarket.EUNAUTHORIZED)
	if n := store.size(); n != 0 {
		t.Fatalf("the store holds %d keys after refusals; want none", n)
	}
	clock.Advance(time.Second)
	resp := e.do("GET", "/v1/invoke/acme/fn", nil, withIdem("k"))
	if body := readAll(t, resp); resp.StatusCode != 201 || resp.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after the 429: %d %q", resp.StatusCode, body)
	}
	if calls.Load() != 2 || len(e.meter.recorded()) != 2 {
		t.Errorf("calls %d, metered %d; want 2 and 2", calls.Load(), len(e.meter.recorded()))
	}
}

func TestIdempotencyKeyValidation(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	e, store := idemEnv(t, private())
	e.routes.addVersion("acme", "fn", 1, countingUpstream(t, &calls), true)
	for name, vals := range map[string][]string{
		"empty":     {""},
		"too long":  {strings.Repeat("k", 256)},
		"non-ascii": {"ключ"},
		"twice":     {"a", "b"},
	} {
		h := http.Header{"Authorization": {"Bearer " + testKey}, "Idempotency-Key": vals}
		resp := e.do("POST", "/v1/invoke/acme/fn", strings.NewReader("x"), h)
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
		wantProblem(t, resp, 400, fnmarket.EINVALID)
	}
	resp := e.do("POST", "/v1/invoke/acme/fn", strings.NewReader("x"), withIdem(strings.Repeat("~", 255)))
	if body := readAll(t, resp); resp.StatusCode != 201 {
		t.Errorf("a 255-character key: %d %s", resp.StatusCode, body)
	}
	if calls.Load() != 1 || store.size() != 1 {
		t.Errorf("calls %d, store size %d; want 1 and 1", calls.Load(), store.size())
	}
	// Without the header the store is not touched.
	readAll(t, e.do("POST", "/v1/invoke/acme/fn", strings.NewReader("x"), nil))
	if store.size() != 1 {
		t.Errorf("a call without Idempotency-Key used the store")
	}
}

// TestIdempotentCallerGone: the caller's connection breaks before the
// answer; the call still finishes and is billed once, and the retry replays.
func TestIdempotentCallerGone(t *testing.T) {
	t.Parallel()
	arrived, finish := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		close(arrived)
		<-finish
		_, _ = io.WriteString(w, "paid")
	})
	e, store := idemEnv(t, private())
	e.routes.addVersion("acme", "fn", 1, up.URL, true)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v1/invoke/acme/fn", strings.NewReader("pay"))
	req.Header = withIdem("pay-1")
	errc := make(chan error)
	go func() {
		resp, err := e.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the cancelled call got an answer")
	}
	close(finish)
	deadline := time.Now().Add(5 * time.Second)
	for v, _ := store.held("key-1", "pay-1"); !strings.HasPrefix(v, "A"); v, _ = store.held("key-1", "pay-1") {
		if time.Now().After(deadline) {
			t.Fatalf("the answer was never kept; store holds %.10q", v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	resp := e.do("POST", "/v1/invoke/acme/fn", strings.NewReader("pay"), withIdem("pay-1"))
	if body := readAll(t, resp); body != "paid" || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry = %q replayed %q", body, resp.Header.Get("Idempotent-Replayed"))
	}
	if calls.Load() != 1 || len(e.meter.recorded()) != 1 || !e.meter.recorded()[0].Billable {
		t.Errorf("calls %d, metered %v; want one billable call", calls.Load(), e.meter.recorded())
	}
}

// TestIdempotentAnswerTooLarge: an answer over 1 MiB is not kept; the repeat
// gets 409 and the function does not run again.
func TestIdempotentAnswerTooLarge(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	big := strings.Repeat("x", gateway.MaxKeptAnswerBytes+1)
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, big)
	})
	e, _ := idemEnv(t, private())
	e.routes.addVersion("acme", "big", 1, up.URL, true)
	if body := readAll(t, e.do("GET", "/v1/invoke/acme/big", nil, withIdem("b"))); body != big {
		t.Fatalf("the first call's answer has %d bytes, want %d", len(body), len(big))
	}
	resp := e.do("GET", "/v1/invoke/acme/big", nil, withIdem("b"))
	wantProblem(t, resp, 409, fnmarket.ECONFLICT)
	if calls.Load() != 1 || len(e.meter.recorded()) != 1 {
		t.Errorf("calls %d, metered %d; want 1 and 1", calls.Load(), len(e.meter.recorded()))
	}
}

// failingIdem is a store that cannot be reached.
type failingIdem struct{}

func (failingIdem) Claim(context.Context, string, string, []byte, time.Duration) ([]byte, bool, error) {
	return nil, false, io.ErrUnexpectedEOF
}
func (failingIdem) Replace(context.Context, string, string, []byte, []byte, time.Duration) (bool, error) {
	return false, io.ErrUnexpectedEOF
}
func (failingIdem) Release(context.Context, string, string, []byte) error { return io.ErrUnexpectedEOF }

// TestIdempotencyStoreUnreachable: when the key cannot be claimed, the call
// is refused 503 and does not run (it could not be made safe to retry).
func TestIdempotencyStoreUnreachable(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	e := newEnv(t, envOptions{cfg: private()})
	e.gw.UseIdempotencyStore(failingIdem{})
	e.routes.addVersion("acme", "fn", 1, countingUpstream(t, &calls), true)
	resp := e.do("POST", "/v1/invoke/acme/fn", strings.NewReader("x"), withIdem("k"))
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	wantProblem(t, resp, 503, fnmarket.EUNAVAILABLE)
	if calls.Load() != 0 || len(e.meter.recorded()) != 0 {
		t.Errorf("calls %d, metered %d; want none", calls.Load(), len(e.meter.recorded()))
	}
	// Without the header the call does not need the store.
	if body := readAll(t, e.do("POST", "/v1/invoke/acme/fn", strings.NewReader("x"), nil)); calls.Load() != 1 {
		t.Errorf("a call without the header: %q", body)
	}
}

// TestIdempotentCutAnswerNotKept: an answer that breaks off mid-stream is
// not kept; the repeat gets 409 and the function does not run again.
func TestIdempotentCutAnswerNotKept(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	e, store := idemEnv(t, private())
	e.routes.addVersion("acme", "cut", 1, up.URL, true)
	resp := e.do("GET", "/v1/invoke/acme/cut", nil, withIdem("c"))
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if v, _ := store.held("key-1", "c"); !strings.HasPrefix(v, "N") {
		t.Fatalf("store holds %.10q; want the not-kept marker", v)
	}
	again := e.do("GET", "/v1/invoke/acme/cut", nil, withIdem("c"))
	wantProblem(t, again, 409, fnmarket.ECONFLICT)
	if calls.Load() != 1 {
		t.Errorf("the function ran %d times; want 1", calls.Load())
	}
}
