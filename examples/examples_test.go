package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryExampleIsDocumentedAndWasip1Only keeps README.md and the
// examples in step, and every example out of the host build (a file without
// the constraint would break go build ./... on the host).
func TestEveryExampleIsDocumentedAndWasip1Only(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		n++
		if !strings.Contains(string(readme), "("+d.Name()+"/main.go)") {
			t.Errorf("README.md does not list example %s", d.Name())
		}
		files, _ := filepath.Glob(filepath.Join(d.Name(), "*.go"))
		if len(files) == 0 {
			t.Errorf("example %s has no Go files", d.Name())
		}
		for _, f := range files {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(src), "//go:build wasip1\n") {
				t.Errorf("%s does not start with //go:build wasip1", f)
			}
		}
	}
	if n < 2 {
		t.Errorf("%d examples, want at least 2", n)
	}
}
