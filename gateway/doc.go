// Package gateway is the per-call hot path of fnmarket: it serves
// ANY /v1/invoke/{vendor}/{name}[@{version}][/{rest...}] as a plain
// net/http handler. For each call it authenticates the API key, finds the
// function version, asks the Admitter (rate limit, spend cap), dispatches to the
// Invoker for the version's backend type, measures compute time and hands the
// finished call to the Meter.
//
// Backend kinds come from package backend's registry (RegisterKinds): the
// built-in reverse proxy runs "http" (HTTPKind, which also checks http
// backends' URLs when versions are created), and every other kind is its own
// Invoker. The gateway never switches on a backend type. It imports no
// database or Redis driver: routes, calls and admissions are domain types
// (catalog, usage) behind the small interfaces below.
//
// # Caching and invalidation
//
// Keys (by hash) and routes (by vendor, name and version) are cached in
// process in bounded LRU caches, so a call on a cache hit touches no SQL.
// Unknown keys and functions are remembered as unknown for NegativeTTL (2 s),
// in separate bounded caches so made-up keys cannot push real ones out.
// Concurrent misses for one entry share a single store lookup.
//
// Started with Start, a poller asks KeysChangedSince and FunctionsChangedSince
// every PollInterval (500 ms), each time reaching ClockSkew (5 s) further back
// than its last successful poll, and drops what they name: a revoked key or an
// unpublished function is refused by every replica within about one poll
// interval plus one store round trip, well inside 2 s, with no Redis. A
// lookup that was in flight while something was dropped is answered but not
// cached. No entry is trusted longer than MaxEntryAge (30 s), in case the
// poller misses something. When a store cannot be reached, a key or route
// already cached is still served up to MaxStale (15 min) past MaxEntryAge
// (stale-if-error: a revocation cannot be written while the database is down;
// see readThrough in cache.go); anything not cached is answered 500 (fail
// closed: an unknown key is never let through for want of a lookup).
//
// # Answers
//
// The function's status, headers and body come back as they are, minus
// hop-by-hop headers, plus X-Invocation-Id (32 hex digits, random) on every
// answer, refusals included, and X-Compute-Ms. Functions answer on the same
// origin as the portal, so a function's answer (HTTP or wasm) never sets
// cookies there: its Set-Cookie and Set-Cookie2 headers and trailers are
// dropped, and every function answer carries "Content-Security-Policy:
// sandbox" (besides any policy of the function's own), so an HTML answer
// runs in an opaque origin, away from the portal's storage and session. Calls the gateway turns down
// are application/problem+json {"type","title","status","detail","code"}:
//
//	400 invalid_input        a "." or ".." segment in the path after the name;
//	                         an Idempotency-Key that is not 1-255 printable ASCII
//	401 unauthenticated      no key, unknown key, revoked key
//	401 key_expired          the key is past Key.ExpiresAt (its expiry, or for a
//	                         secret a rotation replaced, the end of its grace),
//	                         by the gateway's clock on every call
//	403 forbidden            the function is not in the key's AllowedFunctions
//	404 not_found            unknown, unpublished or malformed function or version
//	408 request_timeout      the body sent nothing for BodyIdleTimeout (20 s)
//	413 payload_too_large    body over MaxBodyBytes (6 MiB)
//	429 rate_limited         with Retry-After and X-RateLimit-Limit/-Remaining/-Reset;
//	                         the limit is the lowest of the default, the version's
//	                         and the key's own (effectiveRateLimit)
//	409 conflict             a call with the same Idempotency-Key is still
//	                         running (with Retry-After), or its answer was not kept
//	422 idempotency_mismatch an Idempotency-Key reused with another request
//	402 spend_cap_reached    the call's worst case does not fit in the key's or
//	                         the account's monthly cap
//	402 payment_required     no way to pay for the call, or an invoice past due
//	                         (Link: <billing page>; rel="payment")
//	502 upstream_unreachable could not connect, address not allowed, no
//	                         complete status line and headers came back
//	503 unavailable          wasm functions at the process's bounds, or a key or
//	                         function not cached while the database is unreachable
//	                         (with Retry-After)
//	504 upstream_timeout     the function did not finish within its timeout_ms
//
// Refusals (400, 401, 403, 404, 408, 409, 413, 422, 429, 402, 503) and every 502 problem
// are not billed and not recorded with the Meter at all; they show only in
// metrics.
//
// # Idempotent invocations
//
// A call with an Idempotency-Key is claimed in an IdempotencyStore after its
// key and route are known and before admission; a repeat replays the kept
// answer without admission, invocation or metering. See idempotency.go for
// the rules (scope, fingerprint, what is kept, lock expiry).
//
// # Compute time, for vendors
//
// X-Compute-Ms is the wall time from the moment the gateway has written the
// request headers to the function's connection to the moment it has read the
// last byte of the function's answer, in whole milliseconds, rounded up, and
// never less than 1. It includes the time the request body takes to stream to
// the function and the answer to stream back, since the function holds the
// call open for both. Billing uses exactly this number.
//
// Answers with a Content-Length up to BufferResponseBytes (1 MiB) are read
// whole before they are sent, so their X-Compute-Ms header is final. Other
// answers (chunked, server-sent events, large bodies) are streamed and flushed
// as they arrive; their X-Compute-Ms header holds the time to the answer's
// headers, and the final value follows as an HTTP trailer of the same name
// (announced with "Trailer: X-Compute-Ms"). To make trailers possible over
// HTTP/1.1, streamed answers are sent chunked, without Content-Length.
//
// # Billing
//
// A call is billed (Meter.Record with Billable true) when the function answered
// with any status, or when it was still running at its timeout_ms: then the
// caller gets 504 (or, if the answer was already streaming, a cut connection)
// and the call is billed as exactly timeout_ms of compute, with X-Compute-Ms
// set to that on a 504. Call.Error is set for 5xx answers, timeouts and
// answers that broke off. A caller that goes away mid-answer is billed for the
// compute used so far.
//
// The function has answered once its status line and headers have arrived.
// If its body then breaks off, the caller gets the function's status, its
// headers and the body so far, and then the connection is cut (as
// httputil.ReverseProxy does, with http.ErrAbortHandler), whatever the
// answer's size; the call is billed. A 502 upstream_unreachable problem is
// sent only when nothing usable came back (no connection, an address not
// allowed, a cut before the end of the headers, or a 101 the gateway never
// asked for), and a 502 problem is never billed. A 502 that is the
// function's own status is its answer like any other, and billed.
//
// Not billed: any refusal, any 502 problem, and a call whose connection
// attempt itself outlasted the timeout (504, no compute).
//
// # Body limit
//
// A Content-Length over MaxBodyBytes is refused with 413 before anything is
// sent upstream. Bodies of unknown length (chunked) are streamed to the
// function, not buffered, through a reader with http.MaxBytesReader semantics.
// If it hits the limit before the function answered, the upstream request is
// aborted (the function sees a truncated request and cannot have answered it),
// the caller gets 413, and nothing is billed. If the function answered before
// reading the whole body, its answer stands and is billed.
//
// Bodies stream, but each read must bring something within BodyIdleTimeout
// (20 s; the connection's read deadline, moved forward before every read and
// cleared at the end of the body). A body that sends nothing for that long is
// cut: as with the size limit, the function sees a truncated request, the
// caller gets 408 request_timeout (and the connection is closed), and nothing
// is billed unless the function had answered already. The whole body may take
// as long as the caller likes, as long as it keeps sending. The server's
// ReadHeaderTimeout (10 s, in cmd/fnmarket) bounds the request headers.
//
// # Upstream safety
//
// Unless AllowPrivateUpstreams, backends at addresses that are not public
// unicast are refused: every range of IANA's IPv4 and IPv6 Special-Purpose
// Address Registries that is not globally reachable (loopback, RFC 1918,
// CGNAT, link-local with 169.254.169.254, documentation and TEST-NETs,
// benchmarking, 2001::/23 with Teredo, unique-local, ...), multicast, and
// IPv6 outside 2000::/3. An IPv4 address embedded in IPv6 (IPv4-mapped
// ::ffff:0:0/96, IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, NAT64
// 64:ff9b::/96, 6to4 2002::/16) is judged as that IPv4 address, and the
// local-use NAT64 prefix 64:ff9b:1::/48 is refused whole. One guard decides
// at publish time (CheckUpstreamURL) and on every connection (the dialer,
// which sees the resolved address, so DNS rebinding does not help). Such a
// call gets 502 and is not billed. Only http and https backends are called;
// redirects from the function are passed to the caller, never followed.
//
// # Upstream connections
//
// Calls to plain-http backends without a body, or with a known body up to
// 16 KiB, go over HTTP/1.1 on connections the gateway keeps per backend
// address (up to 1024 each, closed after 90 s idle), written and read on the
// calling goroutine (h1Client): http.Transport's per-connection reading and
// writing goroutines cost more CPU than the gateway's own checks. Everything
// else (https, HTTP/2, bodies that must stream while the answer comes) goes
// through one tuned http.Transport. Both follow the same rules: a kept
// connection is used again only after its answer was read to the end, a
// connection the backend closed while idle is noticed before use, and a
// request is sent a second time only if nothing of it was written or it is
// safe to repeat (GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key).
//
// # Forwarded request
//
// The function gets the caller's method, path after the function name
// (appended to the backend URL's path), query (appended to the backend URL's
// query), body (streamed) and end-to-end headers, without Authorization,
// X-API-Key, Cookie and hop-by-hop headers, with X-Forwarded-For (appended),
// X-Forwarded-Host, X-Forwarded-Proto and X-Invocation-Id.
//
// The forwarded path always stays under the backend URL's path: a call whose
// path after the function's name has a "." or ".." segment in any form a
// server might decode (%2e, %2f and %5c escapes, escapes encoded twice,
// backslashes, "..;", overlong UTF-8 such as %c0%ae) is refused 400
// invalid_input before it is admitted, so it is not billed. The gateway
// refuses rather than cleans, so the function never sees a path its vendor
// did not mean to serve.
package gateway
