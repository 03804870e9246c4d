package wasm

import (
	"bytes"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// Defaults for instance reuse.
const (
	DefaultReuseMaxCalls     = 1000
	DefaultMaxIdleInstances  = 64
	DefaultMaxIdlePerVersion = 8
	reuseHandleExport        = "handle"
	reuseInitializeExport    = "_initialize"
	reuseFrameEnd            = "\n"
	reuseFrameValueForbidden = "\r\n"
)

// poolKey names the instances that may serve a call: one module, one log
// key (function version), one memory limit, one consumer.
type poolKey struct {
	sha, logKey, owner string
	pages              uint32
}

// versionKey names one function version (module and log key): what the
// per-version idle bound counts.
type versionKey struct{ sha, logKey string }

func (k poolKey) versionKey() versionKey { return versionKey{k.sha, k.logKey} }

// instance is one live reactor instance. Only one call uses it at a time
// (it is out of the pool while it runs), so its swap fields need no lock.
type instance struct {
	key    poolKey
	mod    api.Module
	handle api.Function
	mem    *callMemory

	stdin    bytes.Reader
	stdout   swapWriter
	stderr   swapWriter
	deadline atomic.Int64 // UnixNano of the running call's deadline

	calls        int
	releasePages func()
	elem         *list.Element // in pool.lru while idle
}

func (in *instance) Read(p []byte) (int, error) { return in.stdin.Read(p) }

// swapWriter writes to the running call's writer.
type swapWriter struct{ w io.Writer }

func (s *swapWriter) Write(p []byte) (int, error) {
	if s.w == nil {
		return len(p), nil
	}
	return s.w.Write(p)
}

// close closes the module and gives its memory reservation back.
func (in *instance) close() {
	_ = in.mod.Close(context.Background())
	in.releasePages()
}

// pool keeps idle instances: at most maxIdle in the process and maxPerVersion
// per function version; beyond that the least recently used go first.
type pool struct {
	maxIdle, maxPerVersion int

	mu        sync.Mutex
	idle      map[poolKey][]*instance
	byVersion map[versionKey]int
	lru       *list.List // of *instance; front is most recently used
	closed    bool
}

func newPool(maxIdle, maxPerVersion int) *pool {
	return &pool{maxIdle: maxIdle, maxPerVersion: maxPerVersion, idle: map[poolKey][]*instance{}, byVersion: map[versionKey]int{}, lru: list.New()}
}

// get takes an idle instance for key out of the pool, or returns nil.
func (p *pool) get(key poolKey) *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.idle[key]
	if len(s) == 0 {
		return nil
	}
	in := s[len(s)-1]
	p.remove(in)
	return in
}

// remove unlinks an idle instance; p.mu is held.
func (p *pool) remove(in *instance) {
	s := p.idle[in.key]
	for i, x := range s {
		if x == in {
			s = append(s[:i], s[i+1:]...)
			break
		}
	}
	if len(s) == 0 {
		delete(p.idle, in.key)
	} else {
		p.idle[in.key] = s
	}
	vk := in.key.versionKey()
	if p.byVersion[vk]--; p.byVersion[vk] <= 0 {
		delete(p.byVersion, vk)
	}
	p.lru.Remove(in.elem)
	in.elem = nil
}

// put returns an instance to the pool, closing the ones it pushes out (or
// in itself when the pool is closed or keeps nothing).
func (p *pool) put(in *instance) {
	var out []*instance
	p.mu.Lock()
	if p.closed || p.maxIdle <= 0 || p.maxPerVersion <= 0 {
		p.mu.Unlock()
		in.close()
		return
	}
	vk := in.key.versionKey()
	for p.byVersion[vk] >= p.maxPerVersion {
		// The least recently used idle instance of this version goes.
		var victim *instance
		for e := p.lru.Back(); e != nil; e = e.Prev() {
			if x := e.Value.(*instance); x.key.versionKey() == vk {
				victim = x
				break
			}
		}
		p.remove(victim)
		out = append(out, victim)
	}
	for p.lru.Len() >= p.maxIdle {
		victim := p.lru.Back().Value.(*instance)
		p.remove(victim)
		out = append(out, victim)
	}
	p.idle[in.key] = append(p.idle[in.key], in)
	p.byVersion[vk]++
	in.elem = p.lru.PushFront(in)
	p.mu.Unlock()
	for _, x := range out {
		x.close()
	}
}

// evictOne closes the least recently used idle instance, giving its memory
// back to the budget; it reports false when there was none.
func (p *pool) evictOne() bool {
	p.mu.Lock()
	e := p.lru.Back()
	if e == nil {
		p.mu.Unlock()
		return false
	}
	in := e.Value.(*instance)
	p.remove(in)
	p.mu.Unlock()
	in.close()
	return true
}

// idleCount is how many instances wait in the pool.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lru.Len()
}

// closeAll closes every idle instance and keeps no more.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	var all []*instance
	for e := p.lru.Front(); e != nil; e = e.Next() {
		all = append(all, e.Value.(*instance))
	}
	for _, in := range all {
		p.remove(in)
	}
	p.mu.Unlock()
	for _, in := range all {
		in.close()
	}
}

// reuseFrame is the block a reused instance reads from stdin before the
// body: the CGI variables of the package doc, one "NAME=value" line each,
// then an empty line. No value holds CR or LF (request headers cannot);
// a PATH_INFO whose unescaped form would is given escaped. The body follows
// in the same slice (what the instance's stdin reads), made in one
// allocation.
func reuseFrame(req Request, body []byte) []byte {
	env := cgiEnv(req, len(body))
	size := len(reuseFrameEnd) + len(body)
	for _, kv := range env {
		size += len(kv[0]) + 1 + len(kv[1]) + len(reuseFrameEnd)
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	for _, kv := range env {
		v := kv[1]
		if strings.ContainsAny(v, reuseFrameValueForbidden) {
			if kv[0] == EnvPathInfo {
				v = rawPath(req.Path)
			} else {
				v = strings.Map(func(r rune) rune {
					if r == '\r' || r == '\n' {
						return ' '
					}
					return r
				}, v)
			}
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(v)
		b.WriteString(reuseFrameEnd)
	}
	b.WriteString(reuseFrameEnd)
	b.Write(body)
	return b.Bytes()
}

// rawPath is X_RAW_PATH_INFO for path.
func rawPath(path string) string {
	if !strings.HasPrefix(path, "/") {
		return "/" + path
	}
	return path
}

// RunReused runs one call on a reused instance of the reactor module sha
// (accepted by PrepareReactor): an idle instance kept for the same module,
// log key, memory limit and owner (the consumer) when there is one, else a
// new one (instantiated, which runs _initialize). Instances are never shared
// between owners. Per call, handle runs with stdin holding the request frame
// (see the package doc) then the body, and its stdout is read as in Run.
// The instance goes back to the pool after a call that returned 0 within its
// limits, and is closed instead after a trap, a non-zero return or exit, a
// timeout, a memory refusal, too much output, a malformed answer, or
// Config.ReuseMaxCalls calls. An empty owner gets a one-off instance.
//
// Errors and Response are as for Run. Compute is the time in handle, plus
// the instantiation for the call that created the instance.
func (r *Runtime) RunReused(ctx context.Context, sha, owner string, req Request, lim Limits) (Response, error) {
	if err := r.enter(); err != nil {
		return Response{}, err
	}
	defer r.inflight.Done()
	lim, logKey, body, err := r.callSetup(sha, req, lim)
	if err != nil {
		return Response{}, err
	}
	resp := Response{Header: http.Header{}}
	now := time.Now()
	note := func(format string, args ...any) { r.noteRuntime(logKey, req.InvocationID, now, format, args...) }
	key := poolKey{sha: sha, logKey: logKey, owner: owner, pages: lim.MemoryPages}

	// A running call holds a concurrency slot; an instance holds its memory
	// limit from the budget for as long as it lives, idle or running.
	until := r.admit.until()
	leave, err := r.admit.enterCall(ctx, until)
	if err != nil {
		return Response{}, fmt.Errorf("run wasm module %s: %w", sha, err)
	}
	defer leave()

	outCtx, stopForOutput := context.WithCancelCause(ctx)
	defer stopForOutput(nil)
	callCtx, cancel := context.WithTimeout(outCtx, lim.Timeout)
	defer cancel()
	deadline, _ := callCtx.Deadline()

	var in *instance
	if owner != "" {
		in = r.pool.get(key)
	}
	began := time.Now()
	if in == nil {
		in, resp, err = r.newInstance(ctx, callCtx, until, key, note)
		if in == nil {
			return resp, err
		}
		began = time.Now().Add(-resp.Compute)
	}
	in.deadline.Store(deadline.UnixNano())
	in.mem.refused.Store(false)
	stdout := &outputBuffer{limit: lim.MaxOutputBytes, overflow: func() { stopForOutput(errOutputTooLarge) }}
	stderr := &stderrCapture{limit: r.cfg.StderrLogBytes}
	in.stdin.Reset(reuseFrame(req, body))
	in.stdout.w, in.stderr.w = stdout, stderr

	res, runErr := in.handle.Call(callCtx)
	resp.Compute = time.Since(began)
	in.stdout.w, in.stderr.w = nil, nil
	in.stdin.Reset(nil)
	in.calls++

	keep := false
	defer func() {
		if keep && owner != "" && in.calls < r.cfg.ReuseMaxCalls {
			r.pool.put(in)
		} else {
			in.close()
		}
	}()

	r.logStderr(logKey, req.InvocationID, stderr)
	if done, err := r.failed(ctx, callCtx, note, &resp, stdout, runErr, in.mem.refused.Load(), sha, lim); done {
		return resp, err
	}
	if code := int32(uint32(res[0])); code != 0 {
		note("handle returned %d; its output was discarded and the instance replaced", code)
		resp.Status, resp.Failed = http.StatusInternalServerError, true
		return resp, nil
	}
	status, header, out, err := parseOutput(stdout.buf)
	if err != nil {
		note("the answer was malformed: %v", err)
		resp.Status, resp.Failed = http.StatusBadGateway, true
		return resp, nil
	}
	// An instance that hit its memory limit (and coped) is not kept: its
	// state may be half-built.
	keep = !in.mem.refused.Load()
	resp.Status, resp.Header, resp.Body = status, header, out
	return resp, nil
}

// newInstance instantiates a reactor instance for key (running _initialize
// within the call's timeout), its memory limit reserved from the budget
// (closing idle instances to make room). On failure it returns a nil
// instance with the Response (a billable failure) or error to return.
func (r *Runtime) newInstance(ctx, callCtx context.Context, until time.Time, key poolKey, note func(string, ...any)) (*instance, Response, error) {
	resp := Response{Header: http.Header{}}
	cm, facts, release, err := r.compiled.acquire(ctx, key.sha, func(ctx context.Context) (wazero.CompiledModule, moduleFacts, error) {
		code, err := r.store.Module(ctx, key.sha)
		if err != nil {
			return nil, moduleFacts{}, err
		}
		if got := sumHex(code); got != key.sha {
			return nil, moduleFacts{}, fmt.Errorf("stored module %s hashes to %s", key.sha, got)
		}
		return r.compile(ctx, key.sha, code, false, true)
	})
	if err != nil {
		return nil, resp, fmt.Errorf("run wasm module %s: load: %w", key.sha, err)
	}
	defer release()
	if !facts.reactor {
		return nil, resp, fmt.Errorf("run wasm module %s: not a reactor with a handle export", key.sha)
	}
	if facts.minMemoryPages > key.pages {
		note("the module needs %d memory pages at start; the limit is %d", facts.minMemoryPages, key.pages)
		resp.Status, resp.MemoryExceeded = http.StatusInternalServerError, true
		return nil, resp, nil
	}
	releasePages, err := r.admit.reservePages(ctx, until, key.pages, r.pool.evictOne)
	if err != nil {
		return nil, resp, fmt.Errorf("run wasm module %s: %w", key.sha, err)
	}
	in := &instance{key: key, mem: &callMemory{limitBytes: uint64(key.pages) * pageBytes, spare: r.spare}, releasePages: releasePages}
	mc := r.base.
		WithStdin(in).
		WithStdout(&in.stdout).
		WithStderr(&in.stderr).
		WithStartFunctions(reuseInitializeExport).
		WithNanosleep(func(ns int64) {
			if d := min(time.Duration(ns), time.Until(time.Unix(0, in.deadline.Load()))); d > 0 {
				time.Sleep(d)
			}
		})
	dl, _ := callCtx.Deadline()
	in.deadline.Store(dl.UnixNano())
	stderr := &stderrCapture{limit: r.cfg.StderrLogBytes}
	in.stderr.w = stderr
	began := time.Now()
	mod, err := r.rt.InstantiateModule(experimental.WithMemoryAllocator(callCtx, in.mem), cm, mc)
	resp.Compute = time.Since(began)
	in.stderr.w = nil
	r.logStderr(key.logKey, "", stderr)
	if err != nil {
		if mod != nil {
			_ = mod.Close(context.Background())
		}
		releasePages()
		switch {
		case ctx.Err() != nil:
			return nil, resp, fmt.Errorf("run wasm module %s: %w", key.sha, context.Cause(ctx))
		case errors.Is(callCtx.Err(), context.DeadlineExceeded):
			note("timed out in _initialize; the module was stopped")
			resp.Status, resp.TimedOut = http.StatusGatewayTimeout, true
		case in.mem.refused.Load():
			note("the module ran out of memory in _initialize: its limit is %d pages", key.pages)
			resp.Status, resp.MemoryExceeded = http.StatusInternalServerError, true
		default:
			r.noteFailure(note, err)
			resp.Status, resp.Failed = http.StatusInternalServerError, true
		}
		return nil, resp, nil
	}
	in.mod = mod
	in.handle = mod.ExportedFunction(reuseHandleExport)
	return in, resp, nil
}

// logStderr appends a call's stderr lines to the log named key.
func (r *Runtime) logStderr(key, invocationID string, stderr *stderrCapture) {
	now := time.Now()
	var lines []LogLine
	for _, l := range stderr.finish() {
		lines = append(lines, LogLine{Time: now, InvocationID: invocationID, Source: SourceStderr, Text: l})
	}
	if stderr.truncated {
		lines = append(lines, LogLine{Time: now, InvocationID: invocationID, Source: SourceRuntime, Text: fmt.Sprintf("stderr beyond %d bytes was dropped", r.cfg.StderrLogBytes)})
	}
	if len(lines) == 0 {
		return
	}
	r.logs.append(key, lines)
	if r.cfg.LogSink != nil {
		r.cfg.LogSink(key, lines)
	}
}

// noteFailure logs why a module failed: its exit code or its trap.
func (r *Runtime) noteFailure(note func(string, ...any), runErr error) {
	var exit *sys.ExitError
	if errors.As(runErr, &exit) {
		note("the module exited with code %d; its output was discarded", exit.ExitCode())
		return
	}
	msg := strings.Split(strings.TrimSpace(runErr.Error()), "\n")
	if len(msg) > maxRuntimeNoteLines {
		msg = append(msg[:maxRuntimeNoteLines], "...")
	}
	note("the module trapped; its output was discarded: %s", msg[0])
	for _, m := range msg[1:] {
		note("%s", m)
	}
}

// IdleInstances is how many reused instances wait in this process's pool.
func (r *Runtime) IdleInstances() int { return r.pool.idleCount() }
