package webhooks_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/webhooks"
)

// readmeBlock returns the first ```lang block of the README's "Webhooks" section.
func readmeBlock(t *testing.T, lang string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(raw), "\n## Webhooks\n")
	if !ok {
		t.Fatal("README.md has no \"Webhooks\" section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	_, block, ok := strings.Cut(sec, "```"+lang+"\n")
	if !ok {
		t.Fatalf("README's Webhooks section has no %s example", lang)
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// TestReadmeWebhookVerifiers runs the README's Go and Python receiver
// examples on a delivery signed as the deliverer signs it: each accepts it
// and refuses it with one byte of the body changed.
func TestReadmeWebhookVerifiers(t *testing.T) {
	secret, id, now := webhooks.NewSecret(), "msg_readme", time.Now()
	body := `{"type":"invoice.paid","timestamp":"2026-11-29T06:00:00Z","data":{"invoice_id":"inv_1"}}`
	sig, err := webhooks.Sign(secret, id, now, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	tampered := strings.Replace(body, "inv_1", "inv_2", 1)
	dir := t.TempDir()

	goSrc := `package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

` + readmeBlock(t, "go") + `
func main() {
	h := http.Header{}
	h.Set("webhook-id", os.Args[2])
	h.Set("webhook-timestamp", os.Args[3])
	h.Set("webhook-signature", os.Args[4])
	fmt.Println(verify(os.Args[1], h, []byte(os.Args[5])), verify(os.Args[1], h, []byte(os.Args[6])))
}
`
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(goSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "main.go", secret, id, ts, sig, body, tampered)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GO111MODULE=on", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "true false" {
		t.Fatalf("README Go verifier: %v\n%s", err, out)
	}

	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 for the README's Python example")
	}
	pySrc := readmeBlock(t, "python") + `
import sys
secret, msg_id, ts, sig, body, tampered = sys.argv[1:]
h = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}
print(verify(secret, h, body.encode()), verify(secret, h, tampered.encode()))
`
	out, err := exec.Command(py, "-c", pySrc, secret, id, ts, sig, body, tampered).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "True False" {
		t.Fatalf("README Python verifier: %v\n%s", err, out)
	}
}
