package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestLooseInputRefused: text that hides what it shows, made-up currencies,
// slugs without letters, non-JSON bodies and keys that do not match a field
// exactly are refused with a problem naming the field.
func TestLooseInputRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0])
	tok, fid := h.vendor("input@example.com", "input-co")
	consumer := h.signup("consumer@example.com")

	fn := func(change func(map[string]any)) string {
		f := validFunction("checker")
		change(f)
		b, _ := json.Marshal(f)
		return string(b)
	}
	cases := []struct {
		name, method, path, token, contentType, body string
		status                                       int
		field                                        string
	}{
		{"NUL in a display name", "POST", "/api/v1/vendor", consumer, "application/json", `{"slug":"nul-co","display_name":"Acme\u0000Corp"}`, 400, "display_name"},
		{"bidi override in a display name", "POST", "/api/v1/vendor", consumer, "application/json", `{"slug":"bidi-co","display_name":"Acme \u202Egnp.exe"}`, 400, "display_name"},
		{"bidi isolate in a key name", "POST", "/api/v1/keys", consumer, "application/json", `{"name":"ci \u2067key"}`, 400, "name"},
		{"invalid UTF-8 in a description", "PATCH", "/api/v1/functions/" + fid, tok, "application/json", "{\"description\":\"caf\xe9\"}", 400, "description"},
		{"NUL in a description", "POST", "/api/v1/functions", tok, "application/json", fn(func(f map[string]any) { f["description"] = "a\x00b" }), 400, "description"},
		{"slug of hyphens", "POST", "/api/v1/vendor", consumer, "application/json", `{"slug":"---","display_name":"Hyphens"}`, 400, "slug"},
		{"slug ending in a hyphen", "POST", "/api/v1/vendor", consumer, "application/json", `{"slug":"acme-","display_name":"Acme"}`, 400, "slug"},
		{"slug with a double hyphen", "POST", "/api/v1/vendor", consumer, "application/json", `{"slug":"ac--me","display_name":"Acme"}`, 400, "slug"},
		{"function name of hyphens", "POST", "/api/v1/functions", tok, "application/json", fn(func(f map[string]any) { f["name"] = "--" }), 400, "name"},
		{"made-up currency", "POST", "/api/v1/functions", tok, "application/json", fn(func(f map[string]any) { f["pricing"].(map[string]any)["currency"] = "BTC" }), 400, "pricing.currency"},
		{"zero-decimal currency", "POST", "/api/v1/functions", tok, "application/json", fn(func(f map[string]any) { f["pricing"].(map[string]any)["currency"] = "JPY" }), 400, "pricing.currency"},
		{"Content-Type that only starts with application/json", "POST", "/api/v1/keys", consumer, "application/jsonevil", `{"name":"k"}`, 415, "Content-Type"},
		{"no Content-Type", "POST", "/api/v1/keys", consumer, "", `{"name":"k"}`, 415, "Content-Type"},
		{"form Content-Type", "POST", "/api/v1/vendor", consumer, "application/x-www-form-urlencoded", `slug=form-co`, 415, "Content-Type"},
		{"upper-case key", "POST", "/api/v1/keys", consumer, "application/json", `{"name":"k","NAME":"other"}`, 400, "NAME"},
		{"differently cased key alone", "POST", "/api/v1/keys", consumer, "application/json", `{"Name":"k"}`, 400, "Name"},
		{"duplicate key", "POST", "/api/v1/keys", consumer, "application/json", `{"name":"k","name":"other"}`, 400, "name"},
		{"unknown nested key", "POST", "/api/v1/functions", tok, "application/json", fn(func(f map[string]any) { f["backend"].(map[string]any)["URL"] = "x" }), 400, "backend.URL"},
		{"wrong type", "POST", "/api/v1/functions", tok, "application/json", fn(func(f map[string]any) { f["timeout_ms"] = "5000" }), 400, "timeout_ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.url+c.path, strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			req.Header.Set("Authorization", "Bearer "+c.token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			checkContract(t, req, res, raw)
			var p struct {
				Errors map[string]string `json:"errors"`
			}
			_ = json.Unmarshal(raw, &p)
			if res.StatusCode != c.status || res.Header.Get("Content-Type") != "application/problem+json" || p.Errors[c.field] == "" {
				t.Errorf("%d %s %s, want %d problem+json naming %s", res.StatusCode, res.Header.Get("Content-Type"), raw, c.status, c.field)
			}
		})
	}

	// What is fine stays fine: JSON with parameters, lines in descriptions,
	// other scripts and a supported currency.
	for _, c := range []struct{ path, contentType, body string }{
		{"/api/v1/keys", "application/json; charset=utf-8", `{"name":"Schlüssel für CI"}`},
		{"/api/v1/functions", "application/json", fn(func(f map[string]any) {
			f["name"], f["description"] = "euro-check", "# Prüfer\n\nChecks\tthings, עברית too."
			f["pricing"].(map[string]any)["currency"] = "eur"
		})},
	} {
		req, _ := http.NewRequest("POST", h.url+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.contentType)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		checkContract(t, req, res, raw)
		if res.StatusCode != 201 {
			t.Errorf("POST %s %s: %d %s, want 201", c.path, c.body, res.StatusCode, raw)
		}
	}
}
