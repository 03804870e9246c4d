package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// greetingKind is a backend kind only this test knows: {"type":"greeting",
// "text": 1 to 20 characters}.
type greetingKind struct{}

func (greetingKind) Type() string { return "greeting" }

func (greetingKind) Schema() backend.Schema {
	text := map[string]any{"type": "string"}
	return backend.Schema{Input: map[string]any{"text": text}, Stored: map[string]any{"text": text}}
}

func (greetingKind) Prepare(_ context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	var in struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if !backend.Decode(v, doc, &in) {
		return nil
	}
	if n := utf8.RuneCountInString(in.Text); n < 1 || n > 20 {
		v.Add("backend.text", "must be 1 to 20 characters")
		return nil
	}
	return backend.Spec(map[string]string{"text": in.Text})
}

// TestTestOnlyBackendKind: a kind registered by a test, which neither api
// nor catalog names, is validated, stored and shown through the registry,
// and the served OpenAPI document describes it.
func TestTestOnlyBackendKind(t *testing.T) {
	h := newHarness(t, testenv.Backends()[0], func(d *api.Deps) {
		d.Backends = mustKinds(t, gateway.HTTPKind{}, greetingKind{})
	})
	tok, _ := h.vendor("kinds@example.com", "kinds")
	// Sent raw: the harness's contract check knows the standard kinds only.
	send := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, h.url+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		return res.StatusCode, out
	}
	post := func(backendJSON string) (int, map[string]any) {
		t.Helper()
		return send("POST", "/api/v1/functions", `{"name":"hello","backend":`+backendJSON+`,"pricing":{"per_call":"0","per_compute_ms":"0"}}`)
	}
	for _, tt := range []struct {
		name, backend, field string
	}{
		{"kind's own rule", `{"type":"greeting","text":""}`, "backend.text"},
		{"unknown field", `{"type":"greeting","text":"hi","url":"https://x.example.com"}`, "backend.url"},
		{"duplicate field", `{"type":"greeting","text":"hi","text":"ho"}`, "backend.text"},
		{"unknown type", `{"type":"ftp"}`, "backend.type"},
	} {
		status, out := post(tt.backend)
		errs, _ := out["errors"].(map[string]any)
		if status != http.StatusBadRequest || errs[tt.field] == nil {
			t.Errorf("%s: %d %v, want 400 naming %s", tt.name, status, out, tt.field)
		}
	}
	if _, out := post(`{"type":"ftp"}`); !strings.Contains(out["errors"].(map[string]any)["backend.type"].(string), `"greeting"`) {
		t.Errorf("unknown type problem does not list the test kind: %v", out)
	}

	status, out := post(`{"type":"greeting","text":"hello"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, out)
	}
	status, got := send("GET", "/api/v1/functions/"+out["id"].(string), "")
	if status != http.StatusOK {
		t.Fatalf("get: %d %v", status, got)
	}
	b, _ := json.Marshal(got["versions"].([]any)[0].(map[string]any)["backend"])
	if got, want := string(b), `{"text":"hello","type":"greeting"}`; got != want {
		t.Errorf("stored backend %s, want %s", got, want)
	}

	_, doc := send("GET", "/api/v1/openapi.json", "")
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, name := range []string{"BackendInput", "Backend"} {
		props := schemas[name].(map[string]any)["properties"].(map[string]any)
		var types []string
		for _, e := range props["type"].(map[string]any)["enum"].([]any) {
			types = append(types, e.(string))
		}
		if !slices.Equal(types, []string{"greeting", "http"}) || props["text"] == nil || props["url"] == nil {
			t.Errorf("%s schema %v, want types greeting and http with text and url", name, props)
		}
	}
}
