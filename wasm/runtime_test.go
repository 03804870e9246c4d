package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
)

func TestPrepareRefusesBadModules(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{MaxModuleBytes: 4096}, nil)
	tests := []struct {
		name     string
		code     []byte
		wantCode string
		wantText string
	}{
		{"empty", nil, fnmarket.EINVALID, "not a WebAssembly binary"},
		{"garbage", []byte("this is not wasm at all"), fnmarket.EINVALID, "not a WebAssembly binary"},
		{"truncated", minimalModule(minimalSpec{Msg: "hi"})[:30], fnmarket.EINVALID, "does not compile"},
		{"too large", append([]byte("\x00asm\x01\x00\x00\x00"), make([]byte, 5000)...), fnmarket.ETOOLARGE, "the limit is 4096"},
		{"imports env.foo", minimalModule(minimalSpec{Msg: "hi", ExtraImport: [2]string{"env", "foo"}}), fnmarket.EINVALID, "imports env.foo"},
		{"imports an unknown wasi function", minimalModule(minimalSpec{Msg: "hi", ExtraImport: [2]string{"wasi_snapshot_preview1", "no_such_call"}}), fnmarket.EINVALID, "no_such_call"},
		{"no _start", minimalModule(minimalSpec{Msg: "hi", StartName: "main"}), fnmarket.EINVALID, "does not export a _start"},
		{"no memory export", minimalModule(minimalSpec{Msg: "hi", NoMemExport: true}), fnmarket.EINVALID, `"memory"`},
		{"memory over the ceiling", minimalModule(minimalSpec{Msg: "hi", MinPages: DefaultMaxMemoryPages + 1}), fnmarket.EINVALID, "over limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rt.Prepare(context.Background(), tt.code)
			if got := fnmarket.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("code = %q (%v), want %q", got, err, tt.wantCode)
			}
			field := fnmarket.ErrorFields(err)[FieldModule]
			if !strings.Contains(field, tt.wantText) {
				t.Fatalf("fields[%s] = %q, want it to mention %q", FieldModule, field, tt.wantText)
			}
		})
	}
	if n := rt.compiled.len(); n != 0 {
		t.Errorf("%d refused modules stayed in the compiled cache", n)
	}
}

func TestPrepareStoresAndNamesBySHA(t *testing.T) {
	t.Parallel()
	store := NewMemoryStore()
	rt := newRuntime(t, Config{}, store)
	ctx := context.Background()
	code := minimalModule(minimalSpec{Msg: "hello"})
	info, err := rt.Prepare(ctx, code)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(code)
	if want := hex.EncodeToString(sum[:]); info.SHA256 != want || info.Size != int64(len(code)) || info.MinMemoryPages != 1 {
		t.Fatalf("info = %+v, want sha %s, size %d, 1 page", info, want, len(code))
	}
	if got, err := store.Module(ctx, info.SHA256); err != nil || string(got) != string(code) {
		t.Fatalf("stored module = %d bytes, %v", len(got), err)
	}
	if !rt.compiled.contains(info.SHA256) {
		t.Error("Prepare did not warm the compiled cache")
	}
	// Preparing the same bytes again is fine and names the same module.
	again, err := rt.Prepare(ctx, code)
	if err != nil || again != info {
		t.Fatalf("second Prepare = %+v, %v", again, err)
	}
}

func TestRunMinimalModule(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{}, nil)
	ctx := context.Background()
	info, err := rt.Prepare(ctx, minimalModule(minimalSpec{Msg: "hello"}))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := rt.Run(ctx, info.SHA256, Request{Method: "GET"}, Limits{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "hello" || len(resp.Header) != 0 || resp.Compute <= 0 {
		t.Fatalf("resp = %+v (body %q), want 200 hello with no headers and some compute", resp, resp.Body)
	}
}

func TestRunUnknownModule(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{}, nil)
	_, err := rt.Run(context.Background(), strings.Repeat("ab", 32), Request{Method: "GET"}, Limits{})
	if got := fnmarket.ErrorCode(err); got != fnmarket.ENOTFOUND {
		t.Fatalf("code = %q (%v), want %q", got, err, fnmarket.ENOTFOUND)
	}
}

// call runs the shared test guest with ?mode=mode plus extra query.
func call(t *testing.T, mode, extra string, req Request, lim Limits) Response {
	t.Helper()
	rt, mods := shared(t)
	req.RawQuery = "mode=" + mode
	if extra != "" {
		req.RawQuery += "&" + extra
	}
	if req.Method == "" {
		req.Method = "GET"
	}
	if lim.Timeout == 0 {
		lim.Timeout = 20 * time.Second
	}
	resp, err := rt.Run(context.Background(), mods["guest"], req, lim)
	if err != nil {
		t.Fatalf("run mode=%s: %v", mode, err)
	}
	return resp
}

func TestRunStatusAndHeaderForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode       string
		body       string
		wantStatus int
		wantHeader http.Header
		wantBody   string
	}{
		{"echo", "no header block here\n\nat all", 200, http.Header{}, "no header block here\n\nat all"},
		{"created", "", 201, http.Header{"Content-Type": {"application/json"}}, `{"created":true}`},
		{"custom", "", 200, http.Header{"X-Custom": {"yes"}, "X-Multi": {"a", "b"}}, "custom body"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			resp := call(t, tt.mode, "", Request{Method: "POST", Body: strings.NewReader(tt.body)}, Limits{})
			if resp.Status != tt.wantStatus || string(resp.Body) != tt.wantBody || fmt.Sprint(resp.Header) != fmt.Sprint(tt.wantHeader) {
				t.Fatalf("got %d %v %q, want %d %v %q", resp.Status, resp.Header, resp.Body, tt.wantStatus, tt.wantHeader, tt.wantBody)
			}
		})
	}
}

func TestRunStdinEcho(t *testing.T) {
	t.Parallel()
	body := strings.Repeat("0123456789", 50_000) // 500 kB, more than one read
	resp := call(t, "echo", "", Request{Method: "POST", Body: strings.NewReader(body)}, Limits{})
	if resp.Status != 200 || string(resp.Body) != body {
		t.Fatalf("echo: status %d, %d bytes back of %d", resp.Status, len(resp.Body), len(body))
	}
}

func TestRunEnvironment(t *testing.T) {
	t.Parallel()
	req := Request{
		Method: "PUT",
		Path:   "/files/a%20b",
		Header: http.Header{
			"Content-Type":   {"text/plain"},
			"X-Trace-Thing":  {"t1", "t2"},
			"Authorization":  {"Bearer secret-key"},
			"X-Api-Key":      {"secret-key"},
			"Cookie":         {"session=secret"},
			"Accept":         {"*/*"},
			"Content-Length": {"5"},
		},
		Body:         strings.NewReader("hello"),
		RemoteAddr:   "192.0.2.7:5555",
		InvocationID: "inv_123",
	}
	resp := call(t, "env", "x=1&y=%2F", req, Limits{})
	var env map[string]string
	if err := json.Unmarshal(resp.Body, &env); err != nil {
		t.Fatalf("decode env %q: %v", resp.Body, err)
	}
	want := map[string]string{
		"GATEWAY_INTERFACE":  "CGI/1.1",
		"SERVER_SOFTWARE":    "fnmarket",
		"SERVER_PROTOCOL":    "HTTP/1.1",
		"REQUEST_METHOD":     "PUT",
		"PATH_INFO":          "/files/a b",
		"X_RAW_PATH_INFO":    "/files/a%20b",
		"QUERY_STRING":       "mode=env&x=1&y=%2F",
		"CONTENT_TYPE":       "text/plain",
		"CONTENT_LENGTH":     "5",
		"REMOTE_ADDR":        "192.0.2.7:5555",
		"X_INVOCATION_ID":    "inv_123",
		"HTTP_X_TRACE_THING": "t1, t2",
		"HTTP_ACCEPT":        "*/*",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	// Nothing else: no credentials and none of the host's environment.
	for k, v := range env {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected variable %s=%q reached the module", k, v)
		}
	}
}

func TestRunSeesRealClockAndRandom(t *testing.T) {
	t.Parallel()
	resp := call(t, "time", "", Request{}, Limits{})
	sec, err := strconv.ParseInt(string(resp.Body), 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Errorf("guest time = %q, want about now", resp.Body)
	}
	a := call(t, "rand", "", Request{}, Limits{})
	b := call(t, "rand", "", Request{}, Limits{})
	if len(a.Body) != 32 || string(a.Body) == string(b.Body) {
		t.Errorf("two calls drew %q and %q: random bytes must differ per call", a.Body, b.Body)
	}
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()
	t.Run("go loop", func(t *testing.T) {
		t.Parallel()
		shared(t) // compiling the guests is not part of the call
		began := time.Now()
		resp := call(t, "loop", "", Request{}, Limits{Timeout: 200 * time.Millisecond})
		took := time.Since(began)
		if !resp.TimedOut || resp.Status != 504 || len(resp.Body) != 0 {
			t.Fatalf("resp = %+v, want TimedOut 504", resp)
		}
		if took > 5*time.Second || resp.Compute < 150*time.Millisecond {
			t.Fatalf("took %s, compute %s: want it stopped soon after 200ms", took, resp.Compute)
		}
	})
	t.Run("sleep", func(t *testing.T) {
		t.Parallel()
		shared(t)
		began := time.Now()
		resp := call(t, "sleep", "n=60000", Request{}, Limits{Timeout: 200 * time.Millisecond})
		if !resp.TimedOut || time.Since(began) > 5*time.Second {
			t.Fatalf("resp = %+v after %s, want TimedOut soon after 200ms", resp, time.Since(began))
		}
	})
	t.Run("short sleep finishes", func(t *testing.T) {
		t.Parallel()
		resp := call(t, "sleep", "n=20", Request{}, Limits{Timeout: 10 * time.Second})
		if resp.TimedOut || string(resp.Body) != "slept" || resp.Compute < 20*time.Millisecond {
			t.Fatalf("resp = %+v (%q), want slept after at least 20ms", resp, resp.Body)
		}
	})
	t.Run("wasm loop", func(t *testing.T) {
		t.Parallel()
		rt := newRuntime(t, Config{}, nil)
		ctx := context.Background()
		info, err := rt.Prepare(ctx, minimalModule(minimalSpec{Loop: true}))
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		resp, err := rt.Run(ctx, info.SHA256, Request{Method: "GET", LogKey: "loop"}, Limits{Timeout: 100 * time.Millisecond})
		if err != nil || !resp.TimedOut || time.Since(began) > 5*time.Second {
			t.Fatalf("resp = %+v, %v after %s, want TimedOut", resp, err, time.Since(began))
		}
		if logs := rt.Logs("loop"); len(logs) != 1 || !strings.Contains(logs[0].Text, "timed out") {
			t.Fatalf("logs = %+v, want one timeout note", logs)
		}
	})
}

func TestRunMemoryLimit(t *testing.T) {
	t.Parallel()
	rt, mods := shared(t)
	// 48 MiB of Go heap does not fit in 32 MiB of linear memory.
	// It fails as soon as the heap is full; the long timeout only keeps a
	// slow -race run on a busy machine from ending it first.
	resp := call(t, "alloc", "n=48", Request{LogKey: t.Name()}, Limits{MemoryPages: 512, Timeout: 2 * time.Minute})
	if !resp.MemoryExceeded || resp.Status != 500 || len(resp.Body) != 0 {
		t.Fatalf("resp = %+v (%q), want MemoryExceeded 500", resp, resp.Body)
	}
	logs := rt.Logs(t.Name())
	if len(logs) == 0 || !strings.Contains(logs[len(logs)-1].Text, "out of memory") {
		t.Errorf("logs = %+v, want an out-of-memory note last", logs)
	}
	// The same call within a larger limit works: the limit is per call.
	resp = call(t, "alloc", "n=48", Request{}, Limits{MemoryPages: 2048})
	if resp.Status != 200 || string(resp.Body) != "allocated 48 MiB" {
		t.Fatalf("resp = %+v (%q), want 200 within 128 MiB", resp, resp.Body)
	}
	// A limit below what the module declares at start refuses to start it.
	resp, err := rt.Run(context.Background(), mods["guest"], Request{Method: "GET"}, Limits{MemoryPages: 1})
	if err != nil || !resp.MemoryExceeded || resp.Compute != 0 {
		t.Fatalf("resp = %+v, %v, want MemoryExceeded without running", resp, err)
	}
}

func TestRunOutputLimit(t *testing.T) {
	t.Parallel()
	resp := call(t, "big", "n=1048576", Request{}, Limits{MaxOutputBytes: 64 << 10})
	if !resp.OutputTooLarge || resp.Status != 502 || len(resp.Body) != 0 {
		t.Fatalf("resp = %+v (%d bytes), want OutputTooLarge 502 with no body", resp, len(resp.Body))
	}
	resp = call(t, "big", "n=60000", Request{}, Limits{MaxOutputBytes: 64 << 10})
	if resp.OutputTooLarge || resp.Status != 200 || len(resp.Body) != 60000 {
		t.Fatalf("resp = %+v (%d bytes), want 60000 bytes within the limit", resp, len(resp.Body))
	}
}

func TestRunFailures(t *testing.T) {
	t.Parallel()
	rt, _ := shared(t)
	tests := []struct {
		mode       string
		wantStatus int
		wantLog    string
	}{
		{"exit", 500, "exited with code 3"},
		{"panic", 500, "guest panic"},
		{"badstatus", 502, `Status header "great"`},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			key := t.Name()
			resp := call(t, tt.mode, "", Request{LogKey: key, InvocationID: "inv_" + tt.mode}, Limits{})
			if !resp.Failed || resp.Status != tt.wantStatus || len(resp.Body) != 0 {
				t.Fatalf("resp = %+v (%q), want Failed %d with no body", resp, resp.Body, tt.wantStatus)
			}
			var all []string
			for _, l := range rt.Logs(key) {
				if l.InvocationID != "inv_"+tt.mode {
					t.Errorf("log line %+v has the wrong invocation id", l)
				}
				all = append(all, l.Text)
			}
			if !strings.Contains(strings.Join(all, "\n"), tt.wantLog) {
				t.Fatalf("logs = %q, want %q in them", all, tt.wantLog)
			}
		})
	}
}

func TestRunConcurrentCallsAreIsolated(t *testing.T) {
	t.Parallel()
	shared(t) // prepare before the goroutines start
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				// A package variable counts runs of main: 1 on every call
				// means no instance is reused.
				resp := call(t, "counter", "", Request{}, Limits{})
				if string(resp.Body) != "1" {
					errs <- fmt.Errorf("counter = %q, want 1", resp.Body)
				}
				body := fmt.Sprintf("goroutine %d call %d", g, i)
				resp = call(t, "echo", "", Request{Method: "POST", Body: strings.NewReader(body)}, Limits{})
				if string(resp.Body) != body {
					errs <- fmt.Errorf("echo = %q, want %q", resp.Body, body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLogsAreBounded(t *testing.T) {
	t.Parallel()
	rt, _ := shared(t)
	key := fmt.Sprint(t.Name(), "-", time.Now().UnixNano()) // the runtime is shared across -count runs
	resp := call(t, "stderr", "n=3", Request{LogKey: key, InvocationID: "inv_a"}, Limits{})
	if string(resp.Body) != "logged" {
		t.Fatalf("body = %q; stderr must never reach the consumer", resp.Body)
	}
	logs := rt.Logs(key)
	if len(logs) != 3 || logs[0].Text != "line 0" || logs[2].Text != "line 2" || logs[0].Source != SourceStderr || logs[0].InvocationID != "inv_a" {
		t.Fatalf("logs = %+v, want lines 0-2 from stderr of inv_a", logs)
	}
	if other := rt.Logs(key + "-other"); len(other) != 0 {
		t.Fatalf("another key's log = %+v, want empty", other)
	}

	small := newRuntime(t, Config{StderrLogBytes: 100}, nil)
	ctx := context.Background()
	info, err := small.Prepare(ctx, guests(t)["guest"])
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := small.Run(ctx, info.SHA256, Request{Method: "GET", RawQuery: "mode=stderr&n=10000", LogKey: "k"}, Limits{Timeout: 20 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	logs = small.Logs("k")
	total := 0
	for _, l := range logs {
		total += len(l.Text)
	}
	if total > 100 || len(logs) == 0 || !strings.Contains(logs[len(logs)-1].Text, "dropped") {
		t.Fatalf("logs = %d lines, %d bytes: want at most 100 bytes ending with a dropped note", len(logs), total)
	}
}

func TestExamples(t *testing.T) {
	t.Parallel()
	rt, mods := shared(t)
	ctx := context.Background()
	run := func(name string, req Request) Response {
		t.Helper()
		resp, err := rt.Run(ctx, mods[name], req, Limits{Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := run("json-transform", Request{Method: "POST", Body: strings.NewReader(`{"userName":"  Ann ","Home Address":{"zipCode":" 123"},"tags":[" a "]}`)})
	want := `{"fields":4,"result":{"home_address":{"zip_code":"123"},"tags":["a"],"user_name":"Ann"}}` + "\n"
	if resp.Status != 200 || string(resp.Body) != want || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("json-transform = %d %v %q, want 200 %q", resp.Status, resp.Header, resp.Body, want)
	}
	if resp := run("json-transform", Request{Method: "GET"}); resp.Status != 405 {
		t.Errorf("json-transform GET = %d, want 405", resp.Status)
	}
	if resp := run("json-transform", Request{Method: "POST", Body: strings.NewReader("[1")}); resp.Status != 400 {
		t.Errorf("json-transform bad body = %d, want 400", resp.Status)
	}

	sum := sha256.Sum256([]byte("abc"))
	resp = run("sha-hash", Request{Method: "POST", Body: strings.NewReader("abc")})
	if resp.Status != 200 || string(resp.Body) != hex.EncodeToString(sum[:])+"\n" || resp.Header.Get("X-Rounds") != "1" {
		t.Errorf("sha-hash = %d %v %q", resp.Status, resp.Header, resp.Body)
	}
	twice := sha256.Sum256(sum[:])
	resp = run("sha-hash", Request{Method: "POST", RawQuery: "rounds=2", Body: strings.NewReader("abc")})
	if string(resp.Body) != hex.EncodeToString(twice[:])+"\n" {
		t.Errorf("sha-hash rounds=2 = %q", resp.Body)
	}
	if resp := run("sha-hash", Request{Method: "POST", RawQuery: "rounds=0"}); resp.Status != 400 {
		t.Errorf("sha-hash rounds=0 = %d, want 400", resp.Status)
	}
}

func TestRestartWithWarmDiskCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("fresh cache dir", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		store := NewMemoryStore()
		first, err := New(ctx, Config{CacheDir: dir}, store)
		if err != nil {
			t.Fatal(err)
		}
		info, err := first.Prepare(ctx, minimalModule(minimalSpec{Msg: "after restart"}))
		if err != nil {
			t.Fatal(err)
		}
		if err := first.Close(ctx); err != nil {
			t.Fatal(err)
		}
		files := 0
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files++
			}
			return nil
		})
		if files == 0 {
			t.Fatal("the compilation cache dir is empty after compiling a module")
		}
		second := newRuntime(t, Config{CacheDir: dir}, store)
		if second.compiled.contains(info.SHA256) {
			t.Fatal("a new runtime already holds the module in memory")
		}
		resp, err := second.Run(ctx, info.SHA256, Request{Method: "GET"}, Limits{})
		if err != nil || string(resp.Body) != "after restart" {
			t.Fatalf("run after restart = %q, %v", resp.Body, err)
		}
	})
	t.Run("go guest", func(t *testing.T) {
		t.Parallel()
		// The shared runtime compiled sha-hash into the shared cache dir; a
		// new runtime there (a restarted process) loads it and runs it
		// from the store without Prepare.
		first, mods := shared(t)
		sha := mods["sha-hash"]
		code, err := first.store.Module(ctx, sha)
		if err != nil {
			t.Fatal(err)
		}
		store := NewMemoryStore()
		if err := store.PutModule(ctx, sha, code); err != nil {
			t.Fatal(err)
		}
		second := newRuntime(t, Config{CacheDir: sharedCacheDir}, store)
		resp, err := second.Run(ctx, sha, Request{Method: "POST", Body: strings.NewReader("abc")}, Limits{Timeout: 20 * time.Second})
		if err != nil || resp.Status != 200 || len(resp.Body) != 65 {
			t.Fatalf("run after restart = %+v, %v", resp, err)
		}
	})
}

func TestCompiledCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	rt := newRuntime(t, Config{MaxCompiled: 2}, nil)
	ctx := context.Background()
	var shas []string
	for i := range 4 {
		info, err := rt.Prepare(ctx, minimalModule(minimalSpec{Msg: fmt.Sprint("module ", i)}))
		if err != nil {
			t.Fatal(err)
		}
		shas = append(shas, info.SHA256)
	}
	if n := rt.compiled.len(); n != 2 {
		t.Fatalf("%d modules in memory, want 2", n)
	}
	if rt.compiled.contains(shas[0]) || !rt.compiled.contains(shas[3]) {
		t.Fatal("the least recently used module was not the one evicted")
	}
	// Evicted modules come back from the store, even while others are
	// evicted under calls in flight.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 4 {
		wg.Go(func() {
			for i := range 10 {
				sha := shas[i%len(shas)]
				resp, err := rt.Run(ctx, sha, Request{Method: "GET"}, Limits{Timeout: 5 * time.Second})
				if err != nil || string(resp.Body) != fmt.Sprint("module ", i%len(shas)) {
					errs <- fmt.Errorf("run %d = %q, %v", i, resp.Body, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := rt.compiled.len(); n > 2 {
		t.Fatalf("%d modules in memory, want at most 2", n)
	}
}

func TestClosedRuntimeRefusesCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rt, err := New(ctx, Config{}, NewMemoryStore())
	if err != nil {
		t.Fatal(err)
	}
	info, err := rt.Prepare(ctx, minimalModule(minimalSpec{Msg: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Run(ctx, info.SHA256, Request{Method: "GET"}, Limits{}); err == nil {
		t.Fatal("Run on a closed runtime succeeded")
	}
}

func TestRunCallerCancels(t *testing.T) {
	t.Parallel()
	rt, mods := shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	resp, err := rt.Run(ctx, mods["guest"], Request{Method: "GET", RawQuery: "mode=loop"}, Limits{Timeout: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) || resp.TimedOut || resp.Compute == 0 {
		t.Fatalf("resp = %+v, %v: want the caller's context error, not a timeout, with compute", resp, err)
	}
}
