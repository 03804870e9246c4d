// Package openapicheck lets tests check every answer they receive against the
// OpenAPI document the API serves (api.OpenAPI), with kin-openapi's
// openapi3filter: a test harness calls Check after each request.
package openapicheck

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/wasm"
)

// Kinds are the backend kinds cmd/fnmarket registers, for the document
// tests check answers against (their schemas need no runtime).
var Kinds = sync.OnceValue(func() *backend.Registry {
	r, err := backend.NewRegistry(gateway.HTTPKind{}, wasm.NewKind(nil))
	if err != nil {
		panic(err)
	}
	return r
})

// Router is the served document, loaded and validated once.
var Router = sync.OnceValues(func() (routers.Router, error) {
	raw, err := json.Marshal(api.OpenAPI(Kinds()))
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	return legacy.NewRouter(doc)
})

// Check fails the test when an answer does not match the served document:
// an undocumented status, a body that breaks its schema, a missing required
// field, a null where none is allowed.
func Check(t testing.TB, req *http.Request, res *http.Response, body []byte) {
	t.Helper()
	router, err := Router()
	if err != nil {
		t.Fatalf("the served OpenAPI document is invalid: %v", err)
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		// Routes the document does not list answer 404 problems; the
		// route coverage test checks every served route is listed.
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s %s answered %d but is not in the OpenAPI document", req.Method, req.URL.Path, res.StatusCode)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status:  res.StatusCode,
		Header:  res.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: the %d answer does not match the OpenAPI document: %v\n%s", req.Method, req.URL.Path, res.StatusCode, err, body)
	}
}
