// Package backend is the registry of backend kinds: what a function version
// runs on ("http", "wasm", ...). Each kind owns its part of the backend
// document, its validation and preparation when a version is created, its
// OpenAPI schema, and (in the gateway) its invocation; the API and the
// gateway dispatch by the document's "type" and never switch on it. Kinds are
// registered once, in cmd/fnmarket, in the manner of caddy's modules.
//
// A backend is stored and shown as one JSON object, {"type": ..., fields of
// the kind...}; catalog.Backend keeps it as the type and the kind's spec.
package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/fnmarket/fnmarket"
)

// Kind is one type of backend.
type Kind interface {
	// Type is the name the backend document's "type" field carries.
	Type() string
	// Prepare checks the backend document a vendor sent (the whole object,
	// "type" included) and returns the spec to keep with the version (the
	// kind's fields, without "type"). Problems go into v under fields named
	// "backend.<field>"; v may already hold problems with the rest of the
	// request, and a kind skips slow work (resolving, compiling) then.
	// The returned spec is used only when v is empty afterwards.
	Prepare(ctx context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage
	// Schema describes the kind's fields for the OpenAPI document.
	Schema() Schema
}

// Schema is a kind's part of the OpenAPI document: the properties (OpenAPI
// schema objects) it adds to the backend a vendor sends and to the backend
// the API shows.
type Schema struct {
	Input  map[string]any
	Stored map[string]any
}

// Registry is the set of backend kinds a server knows, by type.
type Registry struct {
	kinds map[string]Kind
	types []string
}

// NewRegistry returns a registry of kinds; two kinds of one type, or a kind
// without a type, are an error.
func NewRegistry(kinds ...Kind) (*Registry, error) {
	r := &Registry{kinds: make(map[string]Kind, len(kinds))}
	for _, k := range kinds {
		t := k.Type()
		if t == "" {
			return nil, errors.New("backend: a kind without a type")
		}
		if _, dup := r.kinds[t]; dup {
			return nil, fmt.Errorf("backend: kind %q registered twice", t)
		}
		r.kinds[t] = k
		r.types = append(r.types, t)
	}
	sort.Strings(r.types)
	return r, nil
}

// Kind returns the kind of type t.
func (r *Registry) Kind(t string) (Kind, bool) {
	if r == nil {
		return nil, false
	}
	k, ok := r.kinds[t]
	return k, ok
}

// Types lists the registered types in order.
func (r *Registry) Types() []string {
	if r == nil {
		return nil
	}
	return append([]string(nil), r.types...)
}

// Prepare checks a vendor's backend document and returns the spec of its
// kind to keep (see Kind.Prepare); an unknown or missing type is a problem
// with "backend.type".
func (r *Registry) Prepare(ctx context.Context, v fnmarket.Validation, doc json.RawMessage) (string, json.RawMessage) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		v.Add("backend", "must be an object with a string \"type\"")
		return "", nil
	}
	k, ok := r.Kind(head.Type)
	switch {
	case len(r.Types()) == 0:
		v.Add("backend.type", "no backend types are enabled on this server")
		return "", nil
	case head.Type == "":
		v.Add("backend.type", "is required: "+r.quotedTypes())
		return "", nil
	case !ok:
		v.Add("backend.type", "must be "+r.quotedTypes())
		return "", nil
	}
	return head.Type, k.Prepare(ctx, v, doc)
}

// quotedTypes is `"http" or "wasm"`.
func (r *Registry) quotedTypes() string {
	q := make([]string, 0, len(r.Types()))
	for _, t := range r.Types() {
		q = append(q, strconv.Quote(t))
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// Decode decodes a kind's backend document into dst strictly, as the API
// decodes request bodies: an unknown (or differently cased) field or a
// value of the wrong type is a problem in v naming "backend.<field>". It
// reports whether the document decoded.
func Decode(v fnmarket.Validation, doc json.RawMessage, dst any) bool {
	err := jsonv2.Unmarshal(doc, dst, jsonv2.RejectUnknownMembers(true))
	if err == nil {
		return true
	}
	var se *jsonv2.SemanticError
	if errors.As(err, &se) {
		f := "backend"
		for tok := range se.JSONPointer.Tokens() {
			f += "." + tok
		}
		if errors.Is(err, jsonv2.ErrUnknownName) {
			v.Add(f, "is not a known field (names are case-sensitive)")
		} else {
			v.Add(f, "must be "+jsonKind(se.GoType))
		}
		return false
	}
	v.Add("backend", "must be a JSON object")
	return false
}

// Spec marshals a kind's stored fields into the spec kept with a version.
func Spec(fields any) json.RawMessage {
	b, err := json.Marshal(fields)
	if err != nil {
		panic(fmt.Sprintf("backend: marshal spec: %v", err))
	}
	return b
}

// jsonKind names a Go type as the API's problems do.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64, reflect.Uint32:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice:
		return "an array"
	}
	return "a " + t.Kind().String()
}
