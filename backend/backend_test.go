package backend_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
)

type kind string

func (k kind) Type() string           { return string(k) }
func (k kind) Schema() backend.Schema { return backend.Schema{} }
func (k kind) Prepare(_ context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	var in struct {
		Type string `json:"type"`
		N    int    `json:"n"`
	}
	if !backend.Decode(v, doc, &in) {
		return nil
	}
	return backend.Spec(map[string]int{"n": in.N})
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	if _, err := backend.NewRegistry(kind("a"), kind("a")); err == nil {
		t.Error("two kinds of one type were registered")
	}
	if _, err := backend.NewRegistry(kind("")); err == nil {
		t.Error("a kind without a type was registered")
	}
	var none *backend.Registry
	v := fnmarket.Validation{}
	if _, spec := none.Prepare(context.Background(), v, json.RawMessage(`{"type":"a"}`)); spec != nil || v["backend.type"] != "no backend types are enabled on this server" {
		t.Errorf("no kinds: spec %s, problems %v", spec, v)
	}
	r, err := backend.NewRegistry(kind("b"), kind("a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		doc, wantType, wantSpec string
		wantProblems            map[string]string
	}{
		{`{"type":"a","n":3}`, "a", `{"n":3}`, nil},
		{`{"type":"c"}`, "", "", map[string]string{"backend.type": `must be "a" or "b"`}},
		{`{}`, "", "", map[string]string{"backend.type": `is required: "a" or "b"`}},
		{`{"type":"b","N":3}`, "b", "", map[string]string{"backend.N": "is not a known field (names are case-sensitive)"}},
		{`{"type":"b","n":"3"}`, "b", "", map[string]string{"backend.n": "must be an integer"}},
		{`"http"`, "", "", map[string]string{"backend": `must be an object with a string "type"`}},
	} {
		v := fnmarket.Validation{}
		gotType, gotSpec := r.Prepare(context.Background(), v, json.RawMessage(tt.doc))
		if gotType != tt.wantType || string(gotSpec) != tt.wantSpec || len(v) != len(tt.wantProblems) {
			t.Errorf("Prepare(%s) = %q, %s, %v; want %q, %s, %v", tt.doc, gotType, gotSpec, v, tt.wantType, tt.wantSpec, tt.wantProblems)
			continue
		}
		for f, m := range tt.wantProblems {
			if v[f] != m {
				t.Errorf("Prepare(%s): %s %q, want %q", tt.doc, f, v[f], m)
			}
		}
	}
}
