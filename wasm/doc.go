// Package wasm runs vendors' WebAssembly (WASI preview 1) functions inside
// the fnmarket process with wazero (pure Go, no cgo): the backend type
// {"type":"wasm","module_base64":"..."}. It knows nothing of HTTP routing,
// keys or billing; Kind is the backend kind (package backend) that prepares
// uploaded modules for the API and runs calls for the gateway.
//
// # Modules
//
// Prepare accepts a module when it is a WebAssembly binary of at most
// Config.MaxModuleBytes (32 MiB by default) that compiles, exports a
// "_start" function (a WASI command, as GOOS=wasip1 GOARCH=wasm go build
// makes) and its memory as "memory", and imports nothing but functions of
// wasi_snapshot_preview1. A module is named by the lower-case hex SHA-256 of
// its bytes and kept in a ModuleStore (the wasm_modules table) so that every
// replica can load it.
//
// # The CGI contract
//
// Each call runs the module's _start on a fresh instance, as CGI (and WAGI)
// run a script:
//
//   - stdin is the request body, read in full before the module starts;
//   - the environment holds the request and nothing of the host:
//     GATEWAY_INTERFACE ("CGI/1.1"), SERVER_SOFTWARE ("fnmarket"),
//     SERVER_PROTOCOL ("HTTP/1.1"), REQUEST_METHOD, PATH_INFO (the path after
//     the function's name, unescaped, always starting with "/"),
//     X_RAW_PATH_INFO (the same, still escaped), QUERY_STRING (without "?"),
//     CONTENT_TYPE (when the request has one), CONTENT_LENGTH (the body's
//     length in bytes, "0" when empty), REMOTE_ADDR, X_INVOCATION_ID (the
//     call's X-Invocation-Id), and HTTP_<NAME> for each request header, the
//     name upper-cased with "-" turned into "_" (X-Trace-Id becomes
//     HTTP_X_TRACE_ID) and repeated values joined with ", ". The caller's
//     credentials (Authorization, X-Api-Key, Cookie, Proxy-Authorization)
//     and hop-by-hop headers are never passed; Content-Type and
//     Content-Length appear only as CONTENT_TYPE and CONTENT_LENGTH;
//   - argv is the single word "function.wasm";
//   - stdout is the answer: an optional header block, an empty line, and
//     the body. stdout starts with a header block when its first line is a
//     header line ("Name: value", the name an HTTP token) and an empty line
//     comes within the first 64 KiB with only header lines before it; lines
//     end in LF or CRLF. Otherwise all of stdout is the body and the status
//     is 200, so a module that prints plain text or JSON needs no header
//     block (but one whose body could start with a "Word: ..." line followed
//     later by an empty line should always write one, even just
//     "Content-Type: text/plain" and an empty line). In the block,
//     "Status: 201" or "Status: 201 Created" sets the status; Location
//     without Status means 302; Content-Length, Transfer-Encoding, Connection
//     and the other hop-by-hop headers, X-Compute-Ms and X-Invocation-Id are
//     dropped (the gateway sets them), and so are Set-Cookie and Set-Cookie2
//     (the gateway never lets a function set cookies on the portal's
//     origin, and adds Content-Security-Policy: sandbox); every other
//     header is passed on;
//   - stderr goes to the function's log (Runtime.Logs), never to the
//     consumer;
//   - exit code 0 (or returning from _start) answers; a non-zero exit, a
//     trap (a Go panic exits with code 2) or an invalid Status discards
//     stdout and answers 500 (502 for the invalid Status) with Failed set,
//     and the reason goes to the log.
//
// # Instance reuse
//
// A backend with "instance_reuse": true ({"type":"wasm","module_base64":
// "...","instance_reuse":true}) holds a WASI reactor instead of a command:
// PrepareReactor requires exports "_initialize" (no parameters or results)
// and "handle" (no parameters, one i32 result), as a Go module built with
// -buildmode=c-shared and //go:wasmexport handle has; the kind refuses a
// module without them (and a reactor without the flag). RunReused then runs
// each call as one call of handle on an instance kept between calls:
//
//   - instances are pooled per module, log key (function version), memory
//     limit and owner (the consumer, gateway.Invocation.ConsumerID), never
//     shared between owners; a new instance runs _initialize within the
//     call's timeout, and that call's Compute includes it;
//   - per call, stdin is a request frame, then the body: the CGI variables
//     of the next section, sorted, one "NAME=value" line each, ending with
//     an empty line. No value holds CR or LF (request headers cannot; a
//     PATH_INFO whose unescaped form would is given escaped). The instance's
//     own environment is empty;
//   - stdout and stderr are read as for fresh calls; handle returning 0
//     answers, any other value discards stdout and answers 500;
//   - an instance is closed instead of going back to the pool after a trap,
//     an exit, a non-zero return, a timeout, a memory refusal, too much
//     output, a malformed answer, or Config.ReuseMaxCalls calls (1000);
//   - idle instances are bounded in the process (Config.MaxIdleInstances,
//     64) and per version (Config.MaxIdlePerVersion, 8), least recently used
//     closed first. Each instance keeps its memory limit reserved in
//     MemoryBudgetBytes while it lives, idle or running; a call that finds
//     the budget full closes idle instances before it waits. A running
//     call on a reused instance takes a MaxConcurrency slot like any call.
//
// Without the flag nothing changes: every call gets a fresh instance.
//
// # Isolation and limits
//
// A module gets no filesystem (nothing is mounted), no sockets, no host
// environment variables and no host functions beyond WASI preview 1. Through
// WASI it gets the real wall and monotonic clocks and crypto/rand (wazero's
// defaults are a frozen clock and a fixed random stream, which would give
// every call the same "random" ids and keys); sleeping is real but never
// lasts past the call's timeout. Without instance reuse every call has a
// fresh instance, so no state survives from one call (or consumer) to the
// next; with it, state survives only between calls of the same consumer.
//
// Limits are per call (Limits, from the function version):
//
//   - Timeout: wazero's close-on-context-done stops the module, runaway
//     loops included; the Response has TimedOut and status 504. The checks
//     it inserts slow tight guest loops (about 3.5x on a hashing loop, see
//     BENCHMARKS.md); there is no cheaper way to stop untrusted code
//     in wazero today.
//   - MemoryPages: one wazero runtime serves every limit. Its
//     WithMemoryLimitPages is the global ceiling (Config.MaxMemoryPages,
//     enforced when compiling), and each call's own limit is enforced by a
//     wazero memory allocator (experimental.WithMemoryAllocator) that
//     refuses memory.grow past it: the guest sees memory.grow fail exactly
//     as at a declared maximum, and a call that then fails has
//     MemoryExceeded and status 500. This keeps one compiled module per
//     SHA-256 instead of one per memory-limit class.
//   - MaxOutputBytes: the write that would pass it fails, the module is
//     stopped, its output is discarded, and the Response has OutputTooLarge
//     and status 502.
//
// Across the process (Config, not per call), at most MaxConcurrency calls
// run at once (GOMAXPROCS by default) and the memory limits of the calls
// running add up to at most MemoryBudgetBytes (a quarter of the machine's
// or cgroup's memory by default, never below one call at MaxMemoryPages):
// each call reserves its whole memory limit while it runs, so the bound
// holds whatever the modules do. A call waits for room up to AdmissionWait
// (1 s), after its body is read and its module loaded; then Run returns
// ErrBusy (code unavailable) without running it, and the gateway answers
// 503 problem+json with Retry-After, not billed. Besides the budget, a
// runtime keeps up to 64 MiB of closed instances' memory arrays for its next
// instances (faster than fresh pages); a new memory is zeroed as it grows,
// so nothing of an earlier instance is visible.
//
// Compute is the wall time from instantiation to the end of _start; loading
// and compiling a module and reading the request body are not part of it.
//
// # Caches
//
// Compiled machine code is kept on disk under Config.CacheDir (wazero's
// compilation cache), so a restarted process loads a module's code in tens of
// milliseconds instead of compiling it again (about a second for a Go
// module). Up to Config.MaxCompiled compiled modules stay in memory; the
// least recently used beyond that are closed once no call holds them. A call
// to a module not in memory reads it from the ModuleStore once per process:
// that is the only time a call touches the database.
//
// # Logs
//
// Runtime.Logs returns the recent lines of a log key (Request.LogKey, which
// the gateway sets to the function version, since two vendors may upload
// identical bytes): the module's stderr lines and the runtime's notes on
// failures, each with its invocation id. They are kept in memory on each
// replica, bounded per key (Config.StderrLogBytes) and in number of keys
// (Config.MaxLogs), and do not survive a restart.
package wasm
