package main

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// buildExample compiles one of examples/ for GOOS=wasip1 GOARCH=wasm, with
// extra go build flags (-buildmode=c-shared for a reactor).
func buildExample(t *testing.T, name string, flags ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, "../../examples/"+name)...)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build example %s: %v\n%s", name, err, b)
	}
	code, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// TestWasmFunctionEndToEnd uploads a Go-built module through the API, calls
// it through the gateway, and finds the call in usage and on the upcoming
// invoice like any HTTP function's.
func TestWasmFunctionEndToEnd(t *testing.T) {
	module := buildExample(t, "json-transform")
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			vendor := c.signup("v@example.com")
			c.call("POST", "/api/v1/vendor", vendor, map[string]any{"slug": "acme", "display_name": "Acme"}, 201)
			bad := c.call("POST", "/api/v1/functions", vendor, map[string]any{
				"name": "broken", "backend": map[string]any{"type": "wasm", "module_base64": base64.StdEncoding.EncodeToString([]byte("not wasm at all"))},
				"pricing": map[string]any{"per_call": "0.001", "per_compute_ms": "0.00001"}}, 400)
			if errs, _ := bad["errors"].(map[string]any); errs["backend.module_base64"] == nil {
				t.Errorf("a bad module is refused without naming the field: %v", bad)
			}
			fn := c.call("POST", "/api/v1/functions", vendor, map[string]any{
				"name": "transform", "backend": map[string]any{"type": "wasm", "module_base64": base64.StdEncoding.EncodeToString(module)},
				"pricing": map[string]any{"per_call": "0.001", "per_compute_ms": "0.00001"}, "timeout_ms": 5000}, 201)
			v1 := fn["versions"].([]any)[0].(map[string]any)["backend"].(map[string]any)
			if sha, _ := v1["module_sha256"].(string); len(sha) != 64 || v1["module_base64"] != nil {
				t.Errorf("version backend %v: want module_sha256 and no module bytes", v1)
			}
			c.call("POST", "/api/v1/functions/"+fn["id"].(string)+"/publish", vendor, map[string]any{"version": 1}, 200)
			consumer := c.signup("c@example.com")
			key := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "k"}, 201)["key"].(string)
			res, body := c.invoke("/v1/invoke/acme/transform", key, `{"HelloWorld":"  hi  "}`)
			if res.StatusCode != 200 || !strings.Contains(body, `"hello_world":"hi"`) || res.Header.Get("X-Compute-Ms") == "" {
				t.Fatalf("wasm call: %d %v %s", res.StatusCode, res.Header, body)
			}
			res, _ = c.invoke("/v1/invoke/acme/transform", key, `not json`)
			if res.StatusCode != 400 {
				t.Errorf("bad input to the module: %d, want the module's own 400", res.StatusCode)
			}
			// The module's stderr reaches its vendor's log, never the caller.
			eventually(t, 5*time.Second, "stderr in the function's log", func() bool {
				logs := c.call("GET", "/api/v1/functions/"+fn["id"].(string)+"/logs", vendor, nil, 200)["items"].([]any)
				for _, l := range logs {
					if strings.Contains(l.(map[string]any)["text"].(string), "bad input") {
						return true
					}
				}
				return false
			})
			c.call("GET", "/api/v1/functions/"+fn["id"].(string)+"/logs", consumer, nil, 403)
			eventually(t, 10*time.Second, "wasm calls on the upcoming invoice", func() bool {
				up := c.call("GET", "/api/v1/invoices/upcoming", consumer, nil, 200)
				lines, _ := up["lines"].([]any)
				return len(lines) == 1 && lines[0].(map[string]any)["calls"] == float64(2)
			})
		})
	}
}
