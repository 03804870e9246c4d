package wasm

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/fnmarket/fnmarket"
)

// FieldModule names the upload field that Prepare's errors point at.
const FieldModule = "backend.module_base64"

// Defaults for Config fields left zero.
const (
	DefaultMaxCompiled       = 64
	DefaultMaxModuleBytes    = 32 << 20
	DefaultMemoryPages       = 1024 // 64 MiB
	DefaultMaxMemoryPages    = 4096 // 256 MiB
	DefaultMaxOutputBytes    = 6 << 20
	DefaultStderrLogBytes    = 64 << 10
	DefaultMaxLogs           = 10_000
	DefaultTimeout           = 30 * time.Second
	DefaultValidationTimeout = 10 * time.Second
)

const (
	wasiModuleName = wasi_snapshot_preview1.ModuleName
	// argv0 is the module's whole argv: it gets no arguments.
	argv0 = "function.wasm"
	// maxRuntimeNoteLines bounds the trap message (with its wasm stack
	// trace) copied into a function's log.
	maxRuntimeNoteLines = 20
	// maxModuleMemoryLimitPages is wasm32's 4 GiB.
	maxModuleMemoryLimitPages = 65536
)

// Config tunes a Runtime. Zero fields take the defaults above.
type Config struct {
	// CacheDir is where wazero keeps compiled machine code across restarts
	// (a directory under the data dir). Empty keeps it in memory only.
	CacheDir string
	// MaxCompiled is how many compiled modules stay in memory; the least
	// recently used beyond it are closed.
	MaxCompiled int
	// MaxModuleBytes is the largest module Prepare accepts.
	MaxModuleBytes int64
	// DefaultMemoryPages is a call's memory limit (64 KiB pages) when its
	// Limits leave it zero.
	DefaultMemoryPages uint32
	// MaxMemoryPages is the ceiling for every call (wazero's
	// WithMemoryLimitPages): larger per-call limits are lowered to it, and
	// a module whose declared memory exceeds it is refused by Prepare.
	MaxMemoryPages uint32
	// MaxOutputBytes is the stdout limit (header block and body) when a
	// call's Limits leave it zero, and the ceiling for any call.
	MaxOutputBytes int64
	// StderrLogBytes is how many bytes of recent log lines each log key
	// keeps; it also caps what one call may add.
	StderrLogBytes int
	// MaxLogs is how many log keys are kept; the least recently written go first.
	MaxLogs int
	// DefaultTimeout applies when a call's Limits.Timeout is zero.
	DefaultTimeout time.Duration
	// ValidationTimeout bounds Prepare's trial instantiation.
	ValidationTimeout time.Duration
	// MaxConcurrency bounds the calls running at once in the process
	// (DefaultMaxConcurrency when zero).
	MaxConcurrency int
	// MemoryBudgetBytes bounds the memory limits of the calls running at
	// once, summed: each call reserves its whole limit while it runs
	// (DefaultMemoryBudget when zero, and then at least MaxMemoryPages).
	MemoryBudgetBytes int64
	// AdmissionWait is how long a call waits for room under MaxConcurrency
	// and MemoryBudgetBytes before Run gives up with ErrBusy
	// (DefaultAdmissionWait when zero).
	AdmissionWait time.Duration
	// ReuseMaxCalls is how many calls a reused instance (RunReused) serves
	// before it is closed and replaced (DefaultReuseMaxCalls when zero).
	ReuseMaxCalls int
	// MaxIdleInstances bounds the reused instances kept idle in the
	// process (DefaultMaxIdleInstances when zero; negative keeps none), and
	// MaxIdlePerVersion those of one function version
	// (DefaultMaxIdlePerVersion when zero). Idle instances keep their memory
	// limit reserved in MemoryBudgetBytes; a call that needs room closes the
	// least recently used ones first.
	MaxIdleInstances  int
	MaxIdlePerVersion int
	// Logger receives the runtime's own events; nil discards them.
	Logger *slog.Logger
	// LogSink, when set, also receives every function log line (for
	// example RedisLogs, so the portal API on another replica can show
	// them). It must not block.
	LogSink func(key string, lines []LogLine)
}

func (c Config) withDefaults() Config {
	if c.MaxCompiled <= 0 {
		c.MaxCompiled = DefaultMaxCompiled
	}
	if c.MaxModuleBytes <= 0 {
		c.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if c.MaxMemoryPages == 0 {
		c.MaxMemoryPages = DefaultMaxMemoryPages
	}
	if c.DefaultMemoryPages == 0 {
		c.DefaultMemoryPages = min(DefaultMemoryPages, c.MaxMemoryPages)
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if c.StderrLogBytes <= 0 {
		c.StderrLogBytes = DefaultStderrLogBytes
	}
	if c.MaxLogs <= 0 {
		c.MaxLogs = DefaultMaxLogs
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = DefaultTimeout
	}
	if c.ValidationTimeout <= 0 {
		c.ValidationTimeout = DefaultValidationTimeout
	}
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = DefaultMaxConcurrency()
	}
	if c.MemoryBudgetBytes <= 0 {
		c.MemoryBudgetBytes = max(DefaultMemoryBudget(), int64(c.MaxMemoryPages)*pageBytes)
	}
	if c.AdmissionWait <= 0 {
		c.AdmissionWait = DefaultAdmissionWait
	}
	if c.ReuseMaxCalls <= 0 {
		c.ReuseMaxCalls = DefaultReuseMaxCalls
	}
	if c.MaxIdleInstances == 0 {
		c.MaxIdleInstances = DefaultMaxIdleInstances
	}
	if c.MaxIdlePerVersion <= 0 {
		c.MaxIdlePerVersion = DefaultMaxIdlePerVersion
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Runtime runs WebAssembly (WASI preview 1) modules in-process, one fresh
// instance per call, with the CGI contract described in the package doc. It
// is safe for concurrent use.
type Runtime struct {
	cfg   Config
	store ModuleStore
	log   *slog.Logger

	rt        wazero.Runtime
	diskCache wazero.CompilationCache
	base      wazero.ModuleConfig
	wasi      map[string]api.FunctionDefinition

	compiled *compiledCache
	released *heapReleaser // after compiles
	logs     *logBook
	admit    *admission
	pool     *pool
	spare    *sparePool

	mu       sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
}

// New starts a runtime that loads modules from store. It creates
// cfg.CacheDir when it does not exist.
func New(ctx context.Context, cfg Config, store ModuleStore) (*Runtime, error) {
	return open(ctx, cfg, store, true)
}

// open is New with close-on-context-done optional, for the benchmark
// that measures what it costs; production always has it on.
func open(ctx context.Context, cfg Config, store ModuleStore, closeOnContextDone bool) (*Runtime, error) {
	cfg = cfg.withDefaults()
	if store == nil {
		return nil, errors.New("new wasm runtime: a module store is required")
	}
	if cfg.MaxMemoryPages > maxModuleMemoryLimitPages {
		return nil, fmt.Errorf("new wasm runtime: MaxMemoryPages %d is over wasm's 65536", cfg.MaxMemoryPages)
	}
	if cfg.DefaultMemoryPages > cfg.MaxMemoryPages {
		return nil, fmt.Errorf("new wasm runtime: DefaultMemoryPages %d is over MaxMemoryPages %d", cfg.DefaultMemoryPages, cfg.MaxMemoryPages)
	}
	if cfg.MemoryBudgetBytes < int64(cfg.MaxMemoryPages)*pageBytes {
		return nil, fmt.Errorf("new wasm runtime: MemoryBudgetBytes %d is below one call at MaxMemoryPages (%d bytes)", cfg.MemoryBudgetBytes, int64(cfg.MaxMemoryPages)*pageBytes)
	}
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("new wasm runtime: create cache dir: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("new wasm runtime: open compilation cache %s: %w", cfg.CacheDir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	rc := wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithMemoryLimitPages(cfg.MaxMemoryPages).
		// Runaway loops must stop at the call's timeout. This costs guest
		// speed (wazero checks at every loop head and call), measured in
		// BENCHMARKS.md, but untrusted code gives no other choice.
		WithCloseOnContextDone(closeOnContextDone)
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		_ = rt.Close(ctx)
		_ = cache.Close(ctx)
		return nil, fmt.Errorf("new wasm runtime: instantiate WASI: %w", err)
	}
	r := &Runtime{
		cfg:       cfg,
		store:     store,
		log:       cfg.Logger,
		rt:        rt,
		diskCache: cache,
		wasi:      rt.Module(wasiModuleName).ExportedFunctionDefinitions(),
		compiled:  newCompiledCache(cfg.MaxCompiled),
		released:  newHeapReleaser(),
		logs:      newLogBook(cfg.StderrLogBytes, cfg.MaxLogs),
		admit:     newAdmission(cfg),
		pool:      newPool(cfg.MaxIdleInstances, cfg.MaxIdlePerVersion),
		spare:     &sparePool{},
		// No WithFS, no sockets, no host environment: the module sees only
		// what Run puts in its environment and on stdin. Real clocks and
		// crypto/rand through WASI: wazero's defaults are a frozen clock and
		// a fixed random stream, which would hand every call the same
		// "random" keys and ids.
		base: wazero.NewModuleConfig().
			WithName("").
			WithArgs(argv0).
			WithSysWalltime().
			WithSysNanotime().
			WithRandSource(rand.Reader),
	}
	return r, nil
}

// ModuleInfo describes a module Prepare accepted.
type ModuleInfo struct {
	// SHA256 is the lower-case hex SHA-256 of the module, its name from now on.
	SHA256 string
	// Size is the module's length in bytes.
	Size int64
	// MinMemoryPages is the memory the module declares it needs at start: a
	// version whose memory limit is below it cannot run.
	MinMemoryPages uint32
}

// Prepare validates code, stores it and compiles it into the in-memory and
// disk caches, so that the first call does not pay for the compile. A module
// must be a WebAssembly binary that compiles, exports a "_start" function
// taking and returning nothing and its memory as "memory", and imports
// nothing but the WASI preview 1 functions. Otherwise Prepare returns an
// *fnmarket.Error with code EINVALID (ETOOLARGE for a module over
// MaxModuleBytes) whose Fields name FieldModule.
func (r *Runtime) Prepare(ctx context.Context, code []byte) (ModuleInfo, error) {
	return r.prepare(ctx, code, false)
}

// PrepareReactor is Prepare for modules run with instance reuse
// (RunReused): instead of _start, the module must export "_initialize"
// (taking and returning nothing) and "handle" (taking nothing and returning
// an i32), as a Go module built with -buildmode=c-shared and
// //go:wasmexport handle does.
func (r *Runtime) PrepareReactor(ctx context.Context, code []byte) (ModuleInfo, error) {
	return r.prepare(ctx, code, true)
}

func (r *Runtime) prepare(ctx context.Context, code []byte, reactor bool) (ModuleInfo, error) {
	if err := r.enter(); err != nil {
		return ModuleInfo{}, err
	}
	defer r.inflight.Done()
	if int64(len(code)) > r.cfg.MaxModuleBytes {
		return ModuleInfo{}, &fnmarket.Error{
			Code:    fnmarket.ETOOLARGE,
			Message: "the module is too large",
			Fields:  map[string]string{FieldModule: fmt.Sprintf("the module is %d bytes; the limit is %d", len(code), r.cfg.MaxModuleBytes)},
		}
	}
	if len(code) < 8 || !bytes.Equal(code[:4], []byte("\x00asm")) {
		return ModuleInfo{}, invalidModule("is not a WebAssembly binary module (it must start with \\0asm)", nil)
	}
	sha := sumHex(code)
	_, facts, release, err := r.compiled.acquire(ctx, sha, func(ctx context.Context) (wazero.CompiledModule, moduleFacts, error) {
		return r.compile(ctx, sha, code, true, reactor)
	})
	if err != nil {
		return ModuleInfo{}, fmt.Errorf("prepare wasm module: %w", err)
	}
	defer release()
	// Compiled before for the other kind of call: check its exports now.
	if reactor && !facts.reactor {
		return ModuleInfo{}, invalidModule(reactorProblem, nil)
	}
	if !reactor && !facts.command {
		return ModuleInfo{}, invalidModule(commandProblem, nil)
	}
	if err := r.store.PutModule(ctx, sha, code); err != nil {
		return ModuleInfo{}, fmt.Errorf("prepare wasm module: %w", err)
	}
	return ModuleInfo{SHA256: sha, Size: int64(len(code)), MinMemoryPages: facts.minMemoryPages}, nil
}

// commandProblem is Prepare's complaint about a module without _start.
const commandProblem = "does not export a _start function (build a command module, e.g. GOOS=wasip1 GOARCH=wasm go build; a reactor needs instance_reuse)"

// reactorProblem is PrepareReactor's complaint about a module that is not a
// WASI reactor with a handle export.
const reactorProblem = "is not a WASI reactor exporting _initialize (no parameters or results) and handle (no parameters, returning an i32), as instance_reuse needs (in Go: //go:wasmexport handle, built with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared)"

// isReactor reports whether exports make a WASI reactor for RunReused:
// _initialize () -> () and handle () -> i32.
func isReactor(exports map[string]api.FunctionDefinition) bool {
	ini, ok := exports["_initialize"]
	if !ok || len(ini.ParamTypes()) > 0 || len(ini.ResultTypes()) > 0 {
		return false
	}
	h, ok := exports["handle"]
	return ok && len(h.ParamTypes()) == 0 && slices.Equal(h.ResultTypes(), []api.ValueType{api.ValueTypeI32})
}

// invalidModule is Prepare's EINVALID error naming the module field.
func invalidModule(problem string, cause error) error {
	return &fnmarket.Error{
		Code:    fnmarket.EINVALID,
		Message: "the WebAssembly module is not valid",
		Fields:  map[string]string{FieldModule: "the module " + problem},
		Err:     cause,
	}
}

// compile compiles code and checks it against the rules Prepare documents.
// trial also instantiates it once (without running _start) to catch imports
// that compile but cannot link, such as tables or globals; code already
// accepted once (loaded from the store) skips that.
func (r *Runtime) compile(ctx context.Context, sha string, code []byte, trial, reactor bool) (wazero.CompiledModule, moduleFacts, error) {
	began := time.Now()
	defer r.released.compiled()
	cm, err := r.rt.CompileModule(ctx, code)
	if err != nil {
		return nil, moduleFacts{}, invalidModule("does not compile: "+err.Error(), err)
	}
	fail := func(problem string, cause error) (wazero.CompiledModule, moduleFacts, error) {
		_ = cm.Close(ctx)
		return nil, moduleFacts{}, invalidModule(problem, cause)
	}
	for _, fd := range cm.ImportedFunctions() {
		modName, name, _ := fd.Import()
		if modName != wasiModuleName {
			return fail(fmt.Sprintf("imports %s.%s; only %s functions are available", modName, name, wasiModuleName), nil)
		}
		def, ok := r.wasi[name]
		if !ok {
			return fail(fmt.Sprintf("imports %s.%s, which is not a WASI preview 1 function fnmarket provides", modName, name), nil)
		}
		if !slices.Equal(def.ParamTypes(), fd.ParamTypes()) || !slices.Equal(def.ResultTypes(), fd.ResultTypes()) {
			return fail(fmt.Sprintf("imports %s.%s with the wrong signature", modName, name), nil)
		}
	}
	if len(cm.ImportedMemories()) > 0 {
		return fail("imports a memory; it must define and export its own as \"memory\"", nil)
	}
	exports := cm.ExportedFunctions()
	isReactor := isReactor(exports)
	if reactor && trial {
		if !isReactor {
			return fail(reactorProblem, nil)
		}
	} else if trial || !isReactor {
		start, ok := exports["_start"]
		if !ok {
			return fail(commandProblem, nil)
		}
		if len(start.ParamTypes()) > 0 || len(start.ResultTypes()) > 0 {
			return fail("exports _start with parameters or results; it must take and return nothing", nil)
		}
	}
	mem, ok := cm.ExportedMemories()["memory"]
	if !ok {
		return fail("does not export its memory as \"memory\", which WASI needs", nil)
	}
	start, hasStart := exports["_start"]
	facts := moduleFacts{minMemoryPages: mem.Min(), reactor: isReactor,
		command: hasStart && len(start.ParamTypes()) == 0 && len(start.ResultTypes()) == 0}
	if trial {
		tctx, cancel := context.WithTimeout(ctx, r.cfg.ValidationTimeout)
		defer cancel()
		tctx = experimental.WithMemoryAllocator(tctx, &callMemory{limitBytes: uint64(r.cfg.MaxMemoryPages) * pageBytes, spare: r.spare})
		inst, err := r.rt.InstantiateModule(tctx, cm, r.base.WithStartFunctions())
		if err != nil {
			return fail("cannot be instantiated: "+firstLine(err.Error()), err)
		}
		_ = inst.Close(ctx)
	}
	r.log.Debug("compiled wasm module", "sha256", sha, "bytes", len(code), "took", time.Since(began))
	return cm, facts, nil
}

// Request is one call as the module sees it.
type Request struct {
	// Method is the HTTP method (REQUEST_METHOD).
	Method string
	// Path is the escaped part of the URL path after the function's name
	// ("" or starting with "/"); PATH_INFO is its unescaped form and
	// X_RAW_PATH_INFO the escaped one, both starting with "/".
	Path string
	// RawQuery is the query without "?" (QUERY_STRING).
	RawQuery string
	// Header is the request's headers; credentials and hop-by-hop headers
	// are withheld (see the package doc).
	Header http.Header
	// Body is read to the end before the module starts, so a slow client
	// is not billed as compute; the caller bounds its size. Nil means empty.
	Body io.Reader
	// RemoteAddr is the caller's address (REMOTE_ADDR).
	RemoteAddr string
	// InvocationID is the call's X-Invocation-Id (X_INVOCATION_ID).
	InvocationID string
	// LogKey names the log the call's stderr and runtime notes go to; pass
	// the function version's id (two functions may upload the same bytes
	// and must not read each other's logs). Empty means the module's SHA-256.
	LogKey string
}

// Limits bounds one call. Zero fields take the Config defaults; values over
// the Config ceilings are lowered to them.
type Limits struct {
	// Timeout is the version's timeout_ms: the module is stopped then.
	Timeout time.Duration
	// MemoryPages is the most linear memory (64 KiB pages) the module may have.
	MemoryPages uint32
	// MaxOutputBytes bounds stdout, header block included.
	MaxOutputBytes int64
}

// Response is the module's answer, or what stood in for it when the module
// failed. Every Response that Run returns with a nil error is a call that
// reached the module and is billable.
type Response struct {
	// Status is the HTTP status: the module's own (200 when it gave none),
	// 500 when it failed or ran out of memory, 502 when its output was too
	// large or malformed, 504 when it timed out.
	Status int
	// Header is the module's answer headers (never nil).
	Header http.Header
	// Body is the answer body; empty when the module did not answer.
	Body []byte
	// Compute is the wall time spent in the module: instantiation plus
	// _start. Loading and compiling the module and reading the request body
	// are not included. The caller rounds it up to milliseconds.
	Compute time.Duration
	// TimedOut means the module was stopped at Limits.Timeout.
	TimedOut bool
	// MemoryExceeded means the module failed after asking for more memory
	// than Limits.MemoryPages (or declares more than that at start).
	MemoryExceeded bool
	// OutputTooLarge means stdout went over Limits.MaxOutputBytes; the
	// module was stopped and its output discarded.
	OutputTooLarge bool
	// Failed means the module trapped, exited with a non-zero code or wrote
	// a malformed header block; what it wrote is discarded and the reason
	// is in its log.
	Failed bool
}

// Run calls the module named sha (as returned by Prepare) on a fresh
// instance. The first call of a module on this process loads it from the
// store and compiles it (from the disk cache when it has seen it before).
//
// Run returns an error only when it could not run the module: the runtime
// is closed, the module is unknown (ENOTFOUND) or cannot be loaded, the body
// cannot be read, the process had no room for the call under MaxConcurrency
// and MemoryBudgetBytes within AdmissionWait (ErrBusy, code EUNAVAILABLE),
// or ctx ended during the call. In that last case the Response still carries
// the Compute spent, for the caller to bill or not.
func (r *Runtime) Run(ctx context.Context, sha string, req Request, lim Limits) (Response, error) {
	if err := r.enter(); err != nil {
		return Response{}, err
	}
	defer r.inflight.Done()
	lim, logKey, body, err := r.callSetup(sha, req, lim)
	if err != nil {
		return Response{}, err
	}
	cm, facts, release, err := r.compiled.acquire(ctx, sha, func(ctx context.Context) (wazero.CompiledModule, moduleFacts, error) {
		code, err := r.store.Module(ctx, sha)
		if err != nil {
			return nil, moduleFacts{}, err
		}
		if got := sumHex(code); got != sha {
			return nil, moduleFacts{}, fmt.Errorf("stored module %s hashes to %s", sha, got)
		}
		return r.compile(ctx, sha, code, false, false)
	})
	if err != nil {
		return Response{}, fmt.Errorf("run wasm module %s: load: %w", sha, err)
	}
	defer release()

	resp := Response{Header: http.Header{}}
	now := time.Now()
	note := func(format string, args ...any) { r.noteRuntime(logKey, req.InvocationID, now, format, args...) }
	if facts.minMemoryPages > lim.MemoryPages {
		note("the module needs %d memory pages at start; the limit is %d", facts.minMemoryPages, lim.MemoryPages)
		resp.Status, resp.MemoryExceeded = http.StatusInternalServerError, true
		return resp, nil
	}

	// Room under the process-wide bounds, taken after the body is read and
	// the module loaded, so neither a slow client nor a compile holds it.
	leave, err := r.admit.enter(ctx, lim.MemoryPages, r.pool.evictOne)
	if err != nil {
		return Response{}, fmt.Errorf("run wasm module %s: %w", sha, err)
	}
	defer leave()

	outCtx, stopForOutput := context.WithCancelCause(ctx)
	defer stopForOutput(nil)
	callCtx, cancel := context.WithTimeout(outCtx, lim.Timeout)
	defer cancel()
	deadline, _ := callCtx.Deadline()
	mem := &callMemory{limitBytes: uint64(lim.MemoryPages) * pageBytes, spare: r.spare}
	callCtx = experimental.WithMemoryAllocator(callCtx, mem)
	stdout := &outputBuffer{limit: lim.MaxOutputBytes, overflow: func() { stopForOutput(errOutputTooLarge) }}
	stderr := &stderrCapture{limit: r.cfg.StderrLogBytes}

	mc := r.base.
		WithStdin(bytes.NewReader(body)).
		WithStdout(stdout).
		WithStderr(stderr).
		// Sleeping (WASI poll_oneoff) must not outlive the timeout: a
		// sleeping guest runs no code, so close-on-context-done alone
		// would not stop it until it woke.
		WithNanosleep(func(ns int64) {
			if d := min(time.Duration(ns), time.Until(deadline)); d > 0 {
				time.Sleep(d)
			}
		})
	for _, kv := range cgiEnv(req, len(body)) {
		mc = mc.WithEnv(kv[0], kv[1])
	}

	began := time.Now()
	inst, runErr := r.rt.InstantiateModule(callCtx, cm, mc)
	resp.Compute = time.Since(began)
	if inst != nil {
		_ = inst.Close(context.WithoutCancel(ctx))
	}

	now = time.Now()
	lines := make([]LogLine, 0, 8)
	for _, l := range stderr.finish() {
		lines = append(lines, LogLine{Time: now, InvocationID: req.InvocationID, Source: SourceStderr, Text: l})
	}
	if stderr.truncated {
		lines = append(lines, LogLine{Time: now, InvocationID: req.InvocationID, Source: SourceRuntime, Text: fmt.Sprintf("stderr beyond %d bytes was dropped", r.cfg.StderrLogBytes)})
	}
	r.logs.append(logKey, lines)
	if r.cfg.LogSink != nil && len(lines) > 0 {
		r.cfg.LogSink(logKey, lines)
	}

	if done, err := r.failed(ctx, callCtx, note, &resp, stdout, runErr, mem.refused.Load(), sha, lim); done {
		return resp, err
	}
	status, header, out, err := parseOutput(stdout.buf)
	if err != nil {
		note("the answer was malformed: %v", err)
		resp.Status, resp.Failed = http.StatusBadGateway, true
		return resp, nil
	}
	resp.Status, resp.Header, resp.Body = status, header, out
	return resp, nil
}

// failed sets resp for a run that did not end in an answer (its output
// overflowed, the caller went away, it timed out, ran out of memory, exited
// or trapped), notes why in the function's log, and reports true with the
// error to return; false when the module ran to its end.
func (r *Runtime) failed(ctx, callCtx context.Context, note func(string, ...any), resp *Response, stdout *outputBuffer,
	runErr error, memRefused bool, sha string, lim Limits) (bool, error) {
	switch {
	case stdout.overflowed:
		note("the output went over %d bytes; the module was stopped and its output discarded", lim.MaxOutputBytes)
		resp.Status, resp.OutputTooLarge = http.StatusBadGateway, true
	case runErr == nil:
		return false, nil
	case ctx.Err() != nil:
		note("the caller went away after %s; the module was stopped", resp.Compute.Round(time.Microsecond))
		return true, fmt.Errorf("run wasm module %s: %w", sha, context.Cause(ctx))
	case errors.Is(callCtx.Err(), context.DeadlineExceeded):
		note("timed out after %s; the module was stopped", lim.Timeout)
		resp.Status, resp.TimedOut = http.StatusGatewayTimeout, true
	case memRefused:
		note("the module ran out of memory: its limit is %d pages (%d MiB)", lim.MemoryPages, uint64(lim.MemoryPages)*pageBytes>>20)
		resp.Status, resp.MemoryExceeded = http.StatusInternalServerError, true
	default:
		r.noteFailure(note, runErr)
		resp.Status, resp.Failed = http.StatusInternalServerError, true
	}
	return true, nil
}

// limits fills lim's zero fields from the Config and caps them at its ceilings.
func (r *Runtime) limits(lim Limits) Limits {
	if lim.Timeout <= 0 {
		lim.Timeout = r.cfg.DefaultTimeout
	}
	if lim.MemoryPages == 0 {
		lim.MemoryPages = r.cfg.DefaultMemoryPages
	}
	lim.MemoryPages = min(lim.MemoryPages, r.cfg.MaxMemoryPages)
	if lim.MaxOutputBytes <= 0 {
		lim.MaxOutputBytes = r.cfg.MaxOutputBytes
	}
	lim.MaxOutputBytes = min(lim.MaxOutputBytes, r.cfg.MaxOutputBytes)
	return lim
}

// Logs returns the recent lines of the log named key (a Request.LogKey, or
// a module's SHA-256 for calls that gave none), oldest first. Logs live in
// this process's memory only: each replica keeps its own, bounded by
// Config.StderrLogBytes per key and Config.MaxLogs keys, and a restart
// empties them.
func (r *Runtime) Logs(key string) []LogLine { return r.logs.lines(key) }

// Close stops accepting calls, waits for calls in flight until ctx ends
// (then stops them), and releases the compiled modules and the cache.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.inflight.Wait(); close(done) }()
	drained := false
	select {
	case <-done:
		drained = true
	case <-ctx.Done():
	}
	r.pool.closeAll()
	r.compiled.closeAll(ctx)
	r.released.stop()
	// Closing the runtime closes every instance still running, which makes
	// their calls return (close-on-context-done also watches module close).
	// It frees their memories while they may still run: the spare pool
	// holds those until the calls are out (sparePool).
	r.spare.close()
	err := r.rt.Close(context.WithoutCancel(ctx))
	if drained {
		r.spare.release()
	} else {
		go func() { <-done; r.spare.release() }()
	}
	if cerr := r.diskCache.Close(context.WithoutCancel(ctx)); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close wasm runtime: %w", err)
	}
	return nil
}

// enter registers a call in flight, or fails when the runtime is closed.
func (r *Runtime) enter() error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return errors.New("wasm runtime is closed")
	}
	r.inflight.Add(1)
	return nil
}

// errOutputTooLarge stops a module whose stdout went over its limit.
var errOutputTooLarge = errors.New("wasm: output limit reached")

// outputBuffer is a call's stdout, bounded: the write that would pass the
// limit fails (the module sees EIO) and stops the module.
type outputBuffer struct {
	limit      int64
	buf        []byte
	overflowed bool
	overflow   func()
}

// Write implements io.Writer.
func (o *outputBuffer) Write(p []byte) (int, error) {
	if o.overflowed {
		return 0, errOutputTooLarge
	}
	if int64(len(o.buf))+int64(len(p)) > o.limit {
		o.overflowed = true
		o.buf = nil
		o.overflow()
		return 0, errOutputTooLarge
	}
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// firstLine returns s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// callSetup is how Run and RunReused begin: the limits with their defaults,
// the log key (the module's hash when the request names none) and the whole
// request body.
func (r *Runtime) callSetup(sha string, req Request, lim Limits) (Limits, string, []byte, error) {
	lim = r.limits(lim)
	logKey := req.LogKey
	if logKey == "" {
		logKey = sha
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return lim, logKey, nil, fmt.Errorf("run wasm module %s: read request body: %w", sha, err)
		}
		body = b
	}
	return lim, logKey, body, nil
}

// noteRuntime adds a line from the runtime itself (a timeout, a memory
// limit) to logKey's log.
func (r *Runtime) noteRuntime(logKey, invocationID string, at time.Time, format string, args ...any) {
	l := []LogLine{{Time: at, InvocationID: invocationID, Source: SourceRuntime, Text: fmt.Sprintf(format, args...)}}
	r.logs.append(logKey, l)
	if r.cfg.LogSink != nil {
		r.cfg.LogSink(logKey, l)
	}
}
