package wasm

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// Invoker runs wasm backends for the gateway: the request goes to the module
// CGI-style and its answer comes back as the function's answer. Compute is
// the time spent in the module (instantiation and _start), rounded up like
// HTTP calls; a call cut at its timeout is billed as the timeout.
type Invoker struct{ rt *Runtime }

var _ gateway.Invoker = (*Invoker)(nil)

// NewInvoker returns the gateway invoker for backend type "wasm".
func NewInvoker(rt *Runtime) *Invoker { return &Invoker{rt: rt} }

// Invoke runs one call.
func (i *Invoker) Invoke(w http.ResponseWriter, r *http.Request, call *gateway.Invocation) (gateway.Outcome, error) {
	b := call.Route.Version.Backend
	resp, err := i.rt.Run(r.Context(), b.ModuleSHA256, Request{
		Method: r.Method, Path: call.Rest, RawQuery: r.URL.RawQuery, Header: r.Header, Body: r.Body,
		RemoteAddr: r.RemoteAddr, InvocationID: call.ID,
		LogKey: LogKey(call.Route.FunctionID, call.Route.Version.Version),
	}, Limits{Timeout: call.Timeout, MemoryPages: uint32(b.MemoryPages)})
	switch {
	case call.BodyTooLarge():
		// The module saw a truncated request: refuse it, unbilled.
		return gateway.Outcome{}, fnmarket.Errorf(fnmarket.ETOOLARGE, "the request body is over the limit")
	case call.BodyStalled():
		// The body stopped arriving before the module started: unbilled.
		return gateway.Outcome{}, fnmarket.Errorf(fnmarket.EREQUESTTIMEOUT, "the request body sent nothing for too long")
	case err != nil && fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND:
		return gateway.Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's module is not available", Err: err}
	case errors.Is(err, ErrBusy):
		// Not run, not billed: the process is at its wasm bounds.
		w.Header().Set("Retry-After", strconv.FormatInt(max(int64((i.rt.cfg.AdmissionWait+time.Second-1)/time.Second), 1), 10))
		return gateway.Outcome{}, ErrBusy
	case err != nil && r.Context().Err() != nil:
		// The caller went away mid-call: bill the compute used so far.
		return gateway.Outcome{Reached: resp.Compute > 0, ComputeMs: gateway.ComputeMs(resp.Compute)}, err
	case err != nil:
		return gateway.Outcome{}, &fnmarket.Error{Code: fnmarket.EINTERNAL, Message: "run wasm module", Err: err}
	case resp.TimedOut:
		return gateway.Outcome{Reached: true, TimedOut: true, ComputeMs: gateway.ComputeMs(call.Timeout)},
			fnmarket.Errorf(fnmarket.EUPSTREAMTIME, "the function did not finish within its timeout of %d ms", call.Timeout.Milliseconds())
	}
	ms := gateway.ComputeMs(resp.Compute)
	h := w.Header()
	gateway.CopyAnswerHeaders(h, resp.Header)
	h.Set("X-Compute-Ms", strconv.FormatInt(ms, 10))
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp.Body)
	}
	return gateway.Outcome{Reached: true, Status: resp.Status, ComputeMs: ms, HeadersSent: true}, nil
}

// LogKey names the stderr log of one function version, so vendors who upload
// identical bytes never read each other's logs.
func LogKey(functionID string, version int) string { return functionID + "@" + strconv.Itoa(version) }

// Preparer validates and stores uploaded modules when a vendor creates a
// version (the API's BackendPreparer for type "wasm").
type Preparer struct{ rt *Runtime }

// NewPreparer returns the API's wasm backend preparer.
func NewPreparer(rt *Runtime) *Preparer { return &Preparer{rt: rt} }

// PrepareBackend decodes, validates, compiles and stores a module and returns
// the backend document the version keeps (the module by its SHA-256).
func (p *Preparer) PrepareBackend(ctx context.Context, b64 string, memoryPages int) (catalog.Backend, error) {
	code, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(code) == 0 {
		return catalog.Backend{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the module is not valid base64",
			Fields: map[string]string{FieldModule: "must be the module's bytes in standard base64"}}
	}
	if memoryPages < 0 || memoryPages > int(p.rt.cfg.MaxMemoryPages) {
		return catalog.Backend{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "memory limit out of range",
			Fields: map[string]string{"backend.memory_pages": "must be between 0 (the default) and " + strconv.Itoa(int(p.rt.cfg.MaxMemoryPages)) + " pages of 64 KiB"}}
	}
	info, err := p.rt.Prepare(ctx, code)
	if err != nil {
		return catalog.Backend{}, err
	}
	if memoryPages != 0 && uint32(memoryPages) < info.MinMemoryPages {
		return catalog.Backend{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "memory limit below the module's minimum",
			Fields: map[string]string{"backend.memory_pages": "must be at least the module's own minimum of " + strconv.Itoa(int(info.MinMemoryPages)) + " pages"}}
	}
	return catalog.Backend{Type: catalog.BackendWasm, ModuleSHA256: info.SHA256, MemoryPages: memoryPages}, nil
}
