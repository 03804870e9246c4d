package backend

import (
	"encoding/json"
	"testing"
)

func TestDecodedRemembersEachSpec(t *testing.T) {
	var c Decoded[struct {
		URL string `json:"url"`
	}]
	spec := json.RawMessage(`{"url":"https://example.com/f"}`)
	for i := 0; i < 2; i++ {
		got, err := c.Of(spec)
		if err != nil || got.URL != "https://example.com/f" {
			t.Fatalf("call %d: %+v, %v", i, got, err)
		}
	}
	if len(c.m) != 1 {
		t.Errorf("cache holds %d specs, want 1", len(c.m))
	}
	if _, err := c.Of(json.RawMessage(`{"url":`)); err == nil {
		t.Error("a broken spec decoded")
	}
	if len(c.m) != 1 {
		t.Errorf("a broken spec was cached: %d entries", len(c.m))
	}
}
