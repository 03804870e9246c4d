package wasm

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

// reuseRuntime returns a runtime of its own with the reuse-echo example
// prepared as a reactor.
func reuseRuntime(t *testing.T, cfg Config) (*Runtime, string) {
	t.Helper()
	rt := newRuntime(t, cfg, nil)
	info, err := rt.PrepareReactor(context.Background(), guests(t)["reuse-echo"])
	if err != nil {
		t.Fatal(err)
	}
	return rt, info.SHA256
}

// echo calls reuse-echo for owner and returns its answer body.
func echo(t *testing.T, rt *Runtime, sha, owner, query string, lim Limits) Response {
	t.Helper()
	if lim.Timeout == 0 {
		lim.Timeout = 30 * time.Second
	}
	resp, err := rt.RunReused(context.Background(), sha, owner, Request{
		Method: "POST", Path: "/a%20b", RawQuery: query, Header: http.Header{"X-Greeting": {"hi"}},
		Body: strings.NewReader("12345"), LogKey: "fn@1",
	}, lim)
	if err != nil {
		t.Fatalf("run reused: %v", err)
	}
	return resp
}

// callsOf is the instance's call counter in a reuse-echo answer.
func callsOf(t *testing.T, resp Response) string {
	t.Helper()
	if resp.Status != 200 {
		t.Fatalf("status %d (%+v), want 200", resp.Status, resp)
	}
	n, _ := answerFields(t, resp.Body)
	return n
}

// answerFields returns the calls and instance fields of a reuse-echo answer.
func answerFields(t *testing.T, body []byte) (calls, instance string) {
	t.Helper()
	_, rest, ok := strings.Cut(strings.TrimSpace(string(body)), "calls=")
	calls, instance, ok2 := strings.Cut(rest, " instance=")
	if !ok || !ok2 || instance == "" {
		t.Fatalf("body %q has no calls= and instance=", body)
	}
	return calls, instance
}

// withoutInstance drops the instance id from a reuse-echo answer.
func withoutInstance(s string) string {
	s, _, _ = strings.Cut(s, " instance=")
	return strings.TrimSpace(s)
}

// TestReuseFrameReachesHandle: method, path, query, headers and body reach
// handle through the frame on stdin, and the answer is parsed as CGI.
func TestReuseFrameReachesHandle(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{})
	resp := echo(t, rt, sha, "alice", "x=1", Limits{})
	want := "method=POST path=/a b query=x=1 greeting=hi body=5 calls=1"
	if resp.Status != 200 || withoutInstance(string(resp.Body)) != want || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("answer %d %q %v, want 200 %q", resp.Status, resp.Body, resp.Header, want)
	}
}

// TestReuseNeverCrossesConsumers: each consumer's instance counts only its
// own calls, interleaved with another consumer's.
func TestReuseNeverCrossesConsumers(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{})
	var a, b []string
	for range 3 {
		a = append(a, callsOf(t, echo(t, rt, sha, "alice", "", Limits{})))
		b = append(b, callsOf(t, echo(t, rt, sha, "bob", "", Limits{})))
	}
	b = append(b, callsOf(t, echo(t, rt, sha, "bob", "", Limits{})))
	if !slices.Equal(a, []string{"1", "2", "3"}) || !slices.Equal(b, []string{"1", "2", "3", "4"}) {
		t.Fatalf("alice saw %v, bob %v; want each its own counter", a, b)
	}
	if n := rt.IdleInstances(); n != 2 {
		t.Errorf("%d idle instances, want 2 (one per consumer)", n)
	}
}

// TestReuseParallelConsumers: under concurrent calls of two consumers, no
// instance serves both, and each instance's counter went 1, 2, ... k over
// exactly the calls it served (so no call was lost or shared).
func TestReuseParallelConsumers(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{ReuseMaxCalls: 7})
	type seen struct{ owner, calls, instance string }
	out := make(chan seen, 200)
	var wg sync.WaitGroup
	for _, owner := range []string{"alice", "bob"} {
		for range 4 {
			wg.Go(func() {
				for range 20 {
					resp, err := rt.RunReused(context.Background(), sha, owner, Request{Method: "GET"}, Limits{Timeout: 30 * time.Second})
					if err != nil || resp.Status != 200 {
						t.Errorf("%s: %+v %v", owner, resp, err)
						return
					}
					c, in := answerFields(t, resp.Body)
					out <- seen{owner, c, in}
				}
			})
		}
	}
	wg.Wait()
	close(out)
	owners := map[string]string{}
	counts := map[string][]int{}
	for s := range out {
		if o, ok := owners[s.instance]; ok && o != s.owner {
			t.Fatalf("instance %s served both %s and %s", s.instance, o, s.owner)
		}
		owners[s.instance] = s.owner
		n, err := strconv.Atoi(s.calls)
		if err != nil {
			t.Fatal(err)
		}
		counts[s.instance] = append(counts[s.instance], n)
	}
	total := 0
	for in, c := range counts {
		slices.Sort(c)
		for i, n := range c {
			if n != i+1 || n > 7 {
				t.Fatalf("instance %s counted %v, want 1..k with k <= 7", in, c)
			}
		}
		total += len(c)
	}
	if total != 160 {
		t.Fatalf("%d answers, want 160", total)
	}
}

// TestReuseReplacesFailedInstances: after a trap, a non-zero return or a
// timeout the instance is thrown away and the next call starts afresh.
func TestReuseReplacesFailedInstances(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{DefaultMemoryPages: 1024})
	for _, tc := range []struct {
		query string
		lim   Limits
		check func(Response) bool
	}{
		{"fail=trap", Limits{}, func(r Response) bool { return r.Status == 500 && r.Failed }},
		{"fail=code", Limits{}, func(r Response) bool { return r.Status == 500 && r.Failed && len(r.Body) == 0 }},
		{"fail=loop", Limits{Timeout: 200 * time.Millisecond}, func(r Response) bool { return r.Status == 504 && r.TimedOut }},
		{"fail=mem", Limits{}, func(r Response) bool { return r.Status == 500 && r.MemoryExceeded }},
	} {
		if got := callsOf(t, echo(t, rt, sha, "alice", "", Limits{})); got != "1" {
			t.Fatalf("%s: first call on a new instance counted %s", tc.query, got)
		}
		if got := callsOf(t, echo(t, rt, sha, "alice", "", Limits{})); got != "2" {
			t.Fatalf("%s: second call counted %s, want the instance reused", tc.query, got)
		}
		if resp := echo(t, rt, sha, "alice", tc.query, tc.lim); !tc.check(resp) {
			t.Fatalf("%s: answer %+v", tc.query, resp)
		}
		if got := callsOf(t, echo(t, rt, sha, "alice", "", Limits{})); got != "1" {
			t.Fatalf("after %s the next call counted %s, want a new instance", tc.query, got)
		}
		if n := rt.IdleInstances(); n != 1 {
			t.Fatalf("after %s: %d idle instances, want 1", tc.query, n)
		}
		// Start the next case on a new instance.
		echo(t, rt, sha, "alice", "fail=code", Limits{})
	}
	logs := rt.Logs("fn@1")
	var text []string
	for _, l := range logs {
		text = append(text, l.Text)
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{"trapped", "handle returned 1", "timed out", "ran out of memory"} {
		if !strings.Contains(all, want) {
			t.Errorf("log lacks %q:\n%s", want, all)
		}
	}
}

// TestReuseMaxCalls: an instance serves ReuseMaxCalls calls, then a new one
// takes over.
func TestReuseMaxCalls(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{ReuseMaxCalls: 3})
	var got []string
	for range 7 {
		got = append(got, callsOf(t, echo(t, rt, sha, "alice", "", Limits{})))
	}
	if want := []string{"1", "2", "3", "1", "2", "3", "1"}; !slices.Equal(got, want) {
		t.Fatalf("counters %v, want %v", got, want)
	}
}

// TestReuseIdleBounds: idle instances are bounded per version and in the
// process, and hold their memory limit in the budget, which a call in need
// takes back by closing them.
func TestReuseIdleBounds(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{MaxIdleInstances: 3, MaxIdlePerVersion: 2, MemoryBudgetBytes: 3 * 512 * pageBytes, MaxMemoryPages: 512})
	lim := Limits{MemoryPages: 512}
	for _, who := range []string{"a", "b", "c"} {
		callsOf(t, echo(t, rt, sha, who, "", lim))
	}
	if n := rt.IdleInstances(); n != 2 {
		t.Fatalf("%d idle instances of one version, want 2", n)
	}
	// "a" was the least recently used: it was closed.
	if got := callsOf(t, echo(t, rt, sha, "a", "", lim)); got != "1" {
		t.Fatalf("a's instance counted %s, want a new one", got)
	}
	// Under a budget of two instances, both held by idle ones, a fresh call
	// and a new consumer's instance each get room by closing the least
	// recently used idle instance, instead of waiting and failing busy.
	rt2, sha2 := reuseRuntime(t, Config{MemoryBudgetBytes: 2 * 512 * pageBytes, MaxMemoryPages: 512, AdmissionWait: 50 * time.Millisecond})
	cmd, err := rt2.Prepare(context.Background(), guests(t)["sha-hash"])
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"a", "b"} {
		callsOf(t, echo(t, rt2, sha2, who, "", lim))
	}
	resp, err := rt2.Run(context.Background(), cmd.SHA256, Request{Method: "POST", Body: strings.NewReader("abc")}, Limits{Timeout: 30 * time.Second, MemoryPages: 512})
	if err != nil || resp.Status != 200 {
		t.Fatalf("fresh call beside idle instances filling the budget: %+v %v", resp, err)
	}
	if n := rt2.IdleInstances(); n != 1 {
		t.Fatalf("%d idle instances after a fresh call needed room, want 1", n)
	}
	callsOf(t, echo(t, rt2, sha2, "c", "", lim))
	if got := callsOf(t, echo(t, rt2, sha2, "c", "", lim)); got != "2" {
		t.Fatalf("c counted %s, want its instance reused", got)
	}
	if n := rt2.IdleInstances(); n != 2 {
		t.Fatalf("%d idle instances under a budget of 2, want 2", n)
	}
}

// TestReuseKind: the wasm kind accepts instance_reuse only for reactors,
// refuses a command module with it (and a reactor without it), and runs
// calls of a reuse version on per-consumer instances.
func TestReuseKind(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{}, nil)
	k := NewKind(rt)
	g := guests(t)
	doc := func(code []byte, reuse bool) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"type": "wasm", "module_base64": code, "instance_reuse": reuse})
		return b
	}
	v := fnmarket.Validation{}
	if out := k.Prepare(context.Background(), v, doc(g["sha-hash"], true)); out != nil || !strings.Contains(v[FieldModule], "WASI reactor") {
		t.Fatalf("command module with instance_reuse: spec %s, problems %v", out, v)
	}
	v = fnmarket.Validation{}
	if out := k.Prepare(context.Background(), v, doc(g["reuse-echo"], false)); out != nil || !strings.Contains(v[FieldModule], "_start") {
		t.Fatalf("reactor without instance_reuse: spec %s, problems %v", out, v)
	}
	v = fnmarket.Validation{}
	stored := k.Prepare(context.Background(), v, doc(g["reuse-echo"], true))
	if stored == nil || len(v) > 0 {
		t.Fatalf("reactor with instance_reuse refused: %v", v)
	}
	var sp spec
	if err := json.Unmarshal(stored, &sp); err != nil || !sp.InstanceReuse {
		t.Fatalf("stored spec %s (%v), want instance_reuse", stored, err)
	}
	// Compiled now, the reactor is still refused without the flag.
	v = fnmarket.Validation{}
	if out := k.Prepare(context.Background(), v, doc(g["reuse-echo"], false)); out != nil || !strings.Contains(v[FieldModule], "_start") {
		t.Fatalf("compiled reactor without instance_reuse: spec %s, problems %v", out, v)
	}
	call := func(consumer string) string {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/v1/invoke/v/f/x?q=1", nil)
		inv := &gateway.Invocation{ID: "0123", ConsumerID: consumer, Rest: "/x", Timeout: 5 * time.Second, Route: catalog.Route{
			FunctionID: "fn", Version: catalog.Version{Version: 1, Backend: catalog.Backend{Type: BackendWasm, Spec: backend.Spec(sp)}},
		}}
		if _, err := k.Invoke(w, r, inv); err != nil || w.Code != 200 {
			t.Fatalf("invoke: %d %v", w.Code, err)
		}
		return withoutInstance(w.Body.String())
	}
	got := []string{call("c1"), call("c1"), call("c2")}
	want := []string{
		"method=GET path=/x query=q=1 greeting= body=0 calls=1",
		"method=GET path=/x query=q=1 greeting= body=0 calls=2",
		"method=GET path=/x query=q=1 greeting= body=0 calls=1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("answers %q, want %q", got, want)
	}
}

// TestReuseFrame: the frame is the CGI variables, sorted, one a line, then
// an empty line; no value holds a line break.
func TestReuseFrame(t *testing.T) {
	f := string(reuseFrame(Request{Method: "GET", Path: "/a%0Ab", Header: http.Header{"X-A": {"1"}}}, nil))
	if !strings.HasSuffix(f, "\n\n") {
		t.Fatalf("frame %q does not end with an empty line", f)
	}
	lines := strings.Split(strings.TrimSuffix(f, "\n\n"), "\n")
	if !sort.StringsAreSorted(lines) {
		t.Errorf("frame lines not sorted: %q", lines)
	}
	for _, want := range []string{"PATH_INFO=/a%0Ab", "X_RAW_PATH_INFO=/a%0Ab", "HTTP_X_A=1", "REQUEST_METHOD=GET", "CONTENT_LENGTH=0"} {
		if !slices.Contains(lines, want) {
			t.Errorf("frame lacks %q: %q", want, lines)
		}
	}
	withBody := string(reuseFrame(Request{Method: "POST", Path: "/"}, []byte("xyz")))
	if frame, body, _ := strings.Cut(withBody, "\n\n"); body != "xyz" || !strings.Contains(frame, "CONTENT_LENGTH=3") {
		t.Errorf("frame with a body: %q", withBody)
	}
}

// TestMinimalReactor: the hand-assembled reactor (the per-call floor of
// reuse in the benchmarks) is accepted by PrepareReactor, answers its
// message, and its instance is kept for the next call of the same consumer.
func TestMinimalReactor(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{}, nil)
	info, err := rt.PrepareReactor(context.Background(), wasmtest.MinimalReactor(`{"ok":true}`))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := rt.RunReused(context.Background(), info.SHA256, "alice", Request{Method: "POST", Body: strings.NewReader("abc")}, Limits{Timeout: 5 * time.Second})
		if err != nil || resp.Status != 200 || string(resp.Body) != `{"ok":true}` {
			t.Fatalf("minimal reactor: %+v %v", resp, err)
		}
		if n := rt.IdleInstances(); n != 1 {
			t.Fatalf("%d idle instances, want 1", n)
		}
	}
	if _, err := rt.Prepare(context.Background(), wasmtest.MinimalReactor("x")); err == nil {
		t.Fatal("Prepare (command) accepted a reactor without _start")
	}
}

// TestReuseLongFrameLine: a header longer than reuse-echo's read buffer
// reaches handle whole, and the next call on the instance reads its own
// frame.
func TestReuseLongFrameLine(t *testing.T) {
	t.Parallel()
	rt, sha := reuseRuntime(t, Config{})
	long := strings.Repeat("g", 10000)
	resp, err := rt.RunReused(context.Background(), sha, "alice", Request{
		Method: "GET", Header: http.Header{"X-Greeting": {long}}, LogKey: "fn@1",
	}, Limits{Timeout: 30 * time.Second})
	if err != nil || resp.Status != 200 || !strings.Contains(string(resp.Body), "greeting="+long+" body=0 calls=1 ") {
		t.Fatalf("long header: %d %.200q %v", resp.Status, resp.Body, err)
	}
	if got := withoutInstance(string(echo(t, rt, sha, "alice", "", Limits{}).Body)); got != "method=POST path=/a b query= greeting=hi body=5 calls=2" {
		t.Fatalf("next call: %q", got)
	}
}
