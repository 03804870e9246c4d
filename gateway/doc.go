// Package gateway is the per-call hot path of fnmarket: it serves
// ANY /v1/invoke/{vendor}/{name}[@{version}][/{rest...}] as a plain
// net/http handler. For each call it authenticates the API key, finds the
// function version, asks the Admitter (rate limit, spend cap), dispatches to the
// Invoker for the version's backend type, measures compute time and hands the
// finished call to the Meter.
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
// answer, refusals included, and X-Compute-Ms. Calls the gateway turns down
// are application/problem+json {"type","title","status","detail","code"}:
//
//	401 unauthenticated      no key, unknown key, revoked key
//	404 not_found            unknown, unpublished or malformed function or version
//	413 payload_too_large    body over MaxBodyBytes (6 MiB)
//	429 rate_limited         with Retry-After and X-RateLimit-Limit/-Remaining/-Reset
//	402 spend_cap_reached    the key's monthly spend cap is reached
//	502 upstream_unreachable could not connect, address not allowed, answer broke off
//	504 upstream_timeout     the function did not finish within its timeout_ms
//
// Refusals (401, 404, 413, 429, 402, and 502 before any answer) are not billed
// and not recorded with the Meter at all; they show only in metrics.
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
// compute used so far. Not billed: any refusal, a connection that failed
// before the function answered (502), and a call whose connection attempt
// itself outlasted the timeout (504, no compute).
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
// # Upstream safety
//
// Unless AllowPrivateUpstreams, backends at loopback, private (RFC 1918,
// fc00::/7), link-local (including 169.254.169.254), unspecified, CGNAT
// (100.64.0.0/10), multicast and reserved addresses are refused: at publish
// time by CheckUpstreamURL, and on every connection by the dialer, which sees
// the resolved address (so DNS rebinding does not help). Such a call gets 502
// and is not billed. Only http and https backends are called; redirects from
// the function are passed to the caller, never followed.
//
// # Forwarded request
//
// The function gets the caller's method, path after the function name
// (appended to the backend URL's path), query (appended to the backend URL's
// query), body (streamed) and end-to-end headers, without Authorization,
// X-API-Key, Cookie and hop-by-hop headers, with X-Forwarded-For (appended),
// X-Forwarded-Host, X-Forwarded-Proto and X-Invocation-Id.
package gateway
