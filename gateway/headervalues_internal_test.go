package gateway

import (
	"net/http"
	"net/textproto"
	"testing"
)

// headerValues.set takes keys as they are stored: every key the gateway sets
// through it must already be canonical, or the header would be sent twice.
func TestHeaderValuesKeysAreCanonical(t *testing.T) {
	for _, k := range []string{
		headerInvocationID, headerComputeMs, headerCost,
		"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset",
		"Content-Length", "Content-Security-Policy",
		"User-Agent", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	} {
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			t.Errorf("%q is set as is but its canonical form is %q", k, c)
		}
	}
}

// Values handed out by one headerValues never share storage: appending to
// one header's values leaves the others alone, and past its array it
// allocates as Header.Set does.
func TestHeaderValuesIndependent(t *testing.T) {
	var hv headerValues
	h := http.Header{}
	for i := range len(hv.arr) + 2 {
		hv.set(h, textproto.CanonicalMIMEHeaderKey("x-h"+string(rune('a'+i))), "v")
	}
	h["X-Ha"] = append(h["X-Ha"], "w")
	if got := h["X-Hb"]; len(got) != 1 || got[0] != "v" {
		t.Errorf("X-Hb = %q after appending to X-Ha", got)
	}
	hv.add(h, "X-Hc", "x")
	if got := h["X-Hc"]; len(got) != 2 || got[1] != "x" {
		t.Errorf("X-Hc = %q, want [v x]", got)
	}
	if got := h["X-Hd"]; len(got) != 1 {
		t.Errorf("X-Hd = %q after adding to X-Hc", got)
	}
	if len(h) != len(hv.arr)+2 {
		t.Errorf("%d headers, want %d", len(h), len(hv.arr)+2)
	}
}
