package main

import (
	"encoding/base64"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

// TestReadmeFirstSession runs the README's "A first session with curl" shell
// block, as written, with bash against a fresh server (no network needed, no
// private upstreams allowed), and checks its call answered 2xx and was metered
// and priced, so the README cannot drift from what fnmarket does.
func TestReadmeFirstSession(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is needed to run the README's first session", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## A first session with curl\n.*?```sh\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no ```sh block under \"A first session with curl\"")
	}
	block := string(m[1])
	const addr = "B=http://127.0.0.1:8080"
	if strings.Count(block, addr) != 1 {
		t.Fatalf("the block should set %s once, so the test can point it at its server:\n%s", addr, block)
	}
	// The module is what the README says it is.
	hello := base64.StdEncoding.EncodeToString(wasmtest.MinimalModule(wasmtest.Spec{Msg: `{"ok":true}`}))
	if !strings.Contains(block, "\nHELLO="+hello+"\n") || len(hello)*3/4 >= 200 {
		t.Errorf("the README's HELLO module is not the %d-byte output of go run ./bench/wasmmin", len(hello)*3/4)
	}
	inst := start(t, "serve", map[string]string{"FNMARKET_DATA_DIR": t.TempDir()})
	script := strings.Replace(block, addr, "B="+inst.url, 1) + "\nprintf '\\nREADME_TOKEN=%s\\n' \"$TOKEN\"\n"
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's first session failed: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^HTTP/1\.1 2\d\d `).Match(out) {
		t.Fatalf("the README's call did not answer 2xx:\n%s", out)
	}
	tm := regexp.MustCompile(`README_TOKEN=(\S+)`).FindSubmatch(out)
	if tm == nil {
		t.Fatalf("no token from the README's session:\n%s", out)
	}
	c := client{t: t, base: inst.url}
	eventually(t, 10*time.Second, "the README's call in usage, priced", func() bool {
		items, _ := c.call("GET", "/api/v1/usage", string(tm[1]), nil, 200)["items"].([]any)
		if len(items) != 1 {
			return false
		}
		row := items[0].(map[string]any)
		return row["function"] == "acme/hello" && row["calls"] == float64(1) && row["cost"] != nil && row["cost"] != ""
	})
	lines, _ := c.call("GET", "/api/v1/invoices/upcoming", string(tm[1]), nil, 200)["lines"].([]any)
	if len(lines) != 1 || lines[0].(map[string]any)["calls"] != float64(1) {
		t.Errorf("the README's call is not on the upcoming invoice: %v", lines)
	}
}
