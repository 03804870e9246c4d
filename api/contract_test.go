package api_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/internal/openapicheck"
)

func checkContract(t *testing.T, req *http.Request, res *http.Response, body []byte) {
	t.Helper()
	openapicheck.Check(t, req, res, body)
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	if _, err := openapicheck.Router(); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAPIForClients: generated clients need a name for every operation
// and to know which fields are always there.
func TestOpenAPIForClients(t *testing.T) {
	doc := api.OpenAPI(openapicheck.Kinds())
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
		// A merge patch (every member optional) says it needs at least one.
		if req, _ := m["required"].([]string); m["type"] == "object" && m["properties"] != nil && len(req) == 0 && m["minProperties"] == nil {
			t.Errorf("schema %s declares no required fields", name)
		}
	}
}
