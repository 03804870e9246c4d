package wasm

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/gateway"
)

// BackendWasm is the type of wasm backends.
const BackendWasm = "wasm"

// Kind is the "wasm" backend kind. For the API it decodes, validates,
// compiles and stores an uploaded module when a version is created; for the
// gateway it runs calls: the request goes to the module CGI-style and its
// answer comes back as the function's answer. Compute is the time spent in
// the module (instantiation and _start), rounded up like HTTP calls; a call
// cut at its timeout is billed as the timeout.
type Kind struct {
	rt    *Runtime
	specs backend.Decoded[spec]
}

var (
	_ gateway.Invoker = (*Kind)(nil)
	_ backend.Kind    = (*Kind)(nil)
)

// NewKind returns the wasm backend kind over rt.
func NewKind(rt *Runtime) *Kind { return &Kind{rt: rt} }

// spec is what a wasm backend keeps: the module by its SHA-256 and the
// memory limit (0: the runtime's default).
type spec struct {
	ModuleSHA256 string `json:"module_sha256"`
	MemoryPages  int    `json:"memory_pages,omitempty"`
	// InstanceReuse runs the module as a reactor on instances reused per
	// consumer (Runtime.RunReused).
	InstanceReuse bool `json:"instance_reuse,omitempty"`
}

// Type is "wasm".
func (*Kind) Type() string { return BackendWasm }

// Schema lists the module fields.
func (*Kind) Schema() backend.Schema {
	return backend.Schema{
		Input:  map[string]any{"module_base64": map[string]any{"type": "string"}, "memory_pages": map[string]any{"type": "integer", "format": "int64"}, "instance_reuse": map[string]any{"type": "boolean"}},
		Stored: map[string]any{"module_sha256": map[string]any{"type": "string"}, "memory_pages": map[string]any{"type": "integer", "format": "int64"}, "instance_reuse": map[string]any{"type": "boolean"}},
	}
}

// Prepare decodes the vendor's module, and when the rest of the request is
// valid, compiles and stores it.
func (k *Kind) Prepare(ctx context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	// The module is decoded from base64 straight out of the document (a
	// []byte field), so an upload is held as the body, the document and the
	// module, never also as one more string.
	var in struct {
		Type          string `json:"type"`
		ModuleBase64  []byte `json:"module_base64"`
		MemoryPages   int    `json:"memory_pages"`
		InstanceReuse bool   `json:"instance_reuse"`
	}
	dv := fnmarket.Validation{}
	ok := backend.Decode(dv, doc, &in)
	for f, m := range dv {
		if f == FieldModule {
			m = "must be the module's bytes in standard base64"
		}
		v.Add(f, m)
	}
	if !ok {
		return nil
	}
	if len(in.ModuleBase64) == 0 {
		v.Add(FieldModule, "is required for wasm backends")
		return nil
	}
	if len(v) > 0 {
		return nil
	}
	sp, err := k.prepare(ctx, in.ModuleBase64, in.MemoryPages, in.InstanceReuse)
	if err != nil {
		if f := fnmarket.ErrorFields(err); len(f) > 0 {
			for name, m := range f {
				v.Add(name, m)
			}
		} else {
			v.Add("backend", fnmarket.ErrorMessage(err))
		}
		return nil
	}
	return backend.Spec(sp)
}

// Invoke runs one call.
func (k *Kind) Invoke(w http.ResponseWriter, r *http.Request, call *gateway.Invocation) (gateway.Outcome, error) {
	b, err := k.specs.Of(call.Route.Version.Backend.Spec)
	if err != nil {
		return gateway.Outcome{}, &fnmarket.Error{Code: fnmarket.EUNREACHABLE, Message: "the function's backend is not valid", Err: err}
	}
	req := Request{
		Method: r.Method, Path: call.Rest, RawQuery: r.URL.RawQuery, Header: r.Header, Body: r.Body,
		RemoteAddr: r.RemoteAddr, InvocationID: call.ID,
		LogKey: LogKey(call.Route.FunctionID, call.Route.Version.Version),
	}
	lim := Limits{Timeout: call.Timeout, MemoryPages: uint32(b.MemoryPages)}
	var resp Response
	if b.InstanceReuse {
		// Instances are kept per consumer, never shared between them.
		resp, err = k.rt.RunReused(r.Context(), b.ModuleSHA256, call.ConsumerID, req, lim)
	} else {
		resp, err = k.rt.Run(r.Context(), b.ModuleSHA256, req, lim)
	}
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
		w.Header().Set("Retry-After", strconv.FormatInt(max(int64((k.rt.cfg.AdmissionWait+time.Second-1)/time.Second), 1), 10))
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
	call.SetMeasured(h, ms)
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

// prepare decodes, validates, compiles and stores a module and returns the
// spec the version keeps (the module by its SHA-256).
func (k *Kind) prepare(ctx context.Context, code []byte, memoryPages int, reuse bool) (spec, error) {
	if memoryPages < 0 || memoryPages > int(k.rt.cfg.MaxMemoryPages) {
		return spec{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "memory limit out of range",
			Fields: map[string]string{"backend.memory_pages": "must be between 0 (the default) and " + strconv.Itoa(int(k.rt.cfg.MaxMemoryPages)) + " pages of 64 KiB"}}
	}
	prepare := k.rt.Prepare
	if reuse {
		prepare = k.rt.PrepareReactor
	}
	info, err := prepare(ctx, code)
	if err != nil {
		return spec{}, err
	}
	if memoryPages != 0 && uint32(memoryPages) < info.MinMemoryPages {
		return spec{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "memory limit below the module's minimum",
			Fields: map[string]string{"backend.memory_pages": "must be at least the module's own minimum of " + strconv.Itoa(int(info.MinMemoryPages)) + " pages"}}
	}
	return spec{ModuleSHA256: info.SHA256, MemoryPages: memoryPages, InstanceReuse: reuse}, nil
}
