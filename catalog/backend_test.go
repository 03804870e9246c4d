package catalog_test

import (
	"encoding/json"
	"testing"

	"github.com/fnmarket/fnmarket/catalog"
)

// TestBackendJSON: backend documents stored before kinds had their own specs
// read back as type and spec, and are written and shown as the same object.
func TestBackendJSON(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		stored, wantType, wantSpec, wantJSON string
	}{
		{`{"type":"http","url":"https://scan.example.com/check"}`, "http", `{"url":"https://scan.example.com/check"}`, `{"type":"http","url":"https://scan.example.com/check"}`},
		{`{"type":"wasm","module_sha256":"ab12","memory_pages":4}`, "wasm", `{"memory_pages":4,"module_sha256":"ab12"}`, `{"type":"wasm","memory_pages":4,"module_sha256":"ab12"}`},
		{`{"type":"wasm","module_sha256":"ab12"}`, "wasm", `{"module_sha256":"ab12"}`, `{"type":"wasm","module_sha256":"ab12"}`},
		{`{"type":"bare"}`, "bare", `{}`, `{"type":"bare"}`},
	} {
		var b catalog.Backend
		if err := json.Unmarshal([]byte(tt.stored), &b); err != nil {
			t.Fatalf("%s: %v", tt.stored, err)
		}
		if b.Type != tt.wantType || string(b.Spec) != tt.wantSpec {
			t.Errorf("%s read as type %q spec %s, want %q %s", tt.stored, b.Type, b.Spec, tt.wantType, tt.wantSpec)
		}
		got, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.wantJSON {
			t.Errorf("%s written as %s, want %s", tt.stored, got, tt.wantJSON)
		}
	}
	if _, err := json.Marshal(catalog.Backend{Type: "http", Spec: json.RawMessage(`["not an object"]`)}); err == nil {
		t.Error("a spec that is not an object was written")
	}
}
