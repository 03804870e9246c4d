package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/fnmarket/fnmarket/api"
)

// contract is the served OpenAPI document, loaded and validated once.
var contract = sync.OnceValues(func() (routers.Router, error) {
	raw, err := json.Marshal(api.OpenAPI())
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

// checkContract fails the test when an answer the API gave does not match
// the OpenAPI document it serves: every request the harness sends passes
// through here, so every test checks the document.
func checkContract(t *testing.T, req *http.Request, res *http.Response, body []byte) {
	t.Helper()
	router, err := contract()
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

func TestOpenAPIDocumentIsValid(t *testing.T) {
	if _, err := contract(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAPIForClients: generated clients need a name for every operation
// and to know which fields are always there.
func TestOpenAPIForClients(t *testing.T) {
	doc := api.OpenAPI()
	ids := map[string]string{}
	camel := regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)
	for path, ops := range doc["paths"].(map[string]any) {
		for method, op := range ops.(map[string]any) {
			where := strings.ToUpper(method) + " " + path
			id, _ := op.(map[string]any)["operationId"].(string)
			if !camel.MatchString(id) {
				t.Errorf("%s: operationId %q is not camelCase", where, id)
			}
			if other, dup := ids[id]; dup {
				t.Errorf("%s and %s share operationId %q", where, other, id)
			}
			ids[id] = where
		}
	}
	for name, s := range doc["components"].(map[string]any)["schemas"].(map[string]any) {
		m := s.(map[string]any)
		if req, _ := m["required"].([]string); m["type"] == "object" && m["properties"] != nil && len(req) == 0 {
			t.Errorf("schema %s declares no required fields", name)
		}
	}
}
