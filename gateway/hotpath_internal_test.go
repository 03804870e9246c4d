package gateway

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"reflect"
	"strings"
	"testing"

	"github.com/fnmarket/fnmarket"
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

// forwardHeadersBefore is forwardHeaders as it was before the hot-path work
// (clone, then delete), the reference the faster one must match.
func forwardHeadersBefore(r *http.Request, invocationID string) http.Header {
	h := r.Header.Clone()
	removeHopByHop(h)
	for _, k := range []string{"Authorization", "X-Api-Key", "Cookie"} {
		delete(h, k)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		h.Set("X-Forwarded-For", ip)
	}
	h.Set("X-Forwarded-Host", r.Host)
	if r.TLS != nil {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	h.Set(headerInvocationID, invocationID)
	return h
}

// copyAnswerHeadersBefore is CopyAnswerHeaders as it was before the hot-path work.
func copyAnswerHeadersBefore(dst, src http.Header) {
	removeHopByHop(src)
	for k, vv := range src {
		if _, set := dst[k]; set || !functionMaySend(k) {
			continue
		}
		dst[k] = vv
	}
	dst.Add("Content-Security-Policy", "sandbox")
}

func TestHeaderCopiesMatchTheirReference(t *testing.T) {
	headers := []http.Header{
		{},
		{"Accept": {"*/*"}, "User-Agent": {"curl/8"}, "Authorization": {"Bearer k"}},
		{"X-Api-Key": {"k"}, "Cookie": {"a=1", "b=2"}, "Accept": {"a", "b", "c"}, "X-Many": {"1", "2", "3", "4"}},
		{"Connection": {"keep-alive, X-Hop", "x-other"}, "X-Hop": {"1"}, "X-Other": {"2"}, "Keep-Alive": {"timeout=5"},
			"Te": {"trailers"}, "Proxy-Authorization": {"p"}, "Upgrade": {"h2c"}, "X-Stay": {"3"}},
		{"X-Forwarded-For": {"203.0.113.7", "198.51.100.1"}, "X-Forwarded-Host": {"spoofed"}, "X-Invocation-Id": {"spoofed"}},
		{"X-Empty": {}, "X-Nil": nil, "Content-Security-Policy": {"default-src 'self'"}, "Set-Cookie": {"s=1"},
			"X-Compute-Ms": {"9"}, "Content-Type": {"text/plain"}},
	}
	for i, src := range headers {
		r := httptest.NewRequest(http.MethodGet, "http://gw.example/v1/invoke/a/b", nil)
		r.Header = src.Clone()
		var hv headerValues
		got, want := forwardHeaders(r, "inv-1", &hv), forwardHeadersBefore(r, "inv-1")
		if !reflect.DeepEqual(got, want) {
			t.Errorf("case %d: forwarded\n got %q\nwant %q", i, got, want)
		}
		if !reflect.DeepEqual(r.Header, src) {
			t.Errorf("case %d: the caller's headers changed: %q", i, r.Header)
		}

		gotDst, wantDst := http.Header{headerInvocationID: {"inv-1"}}, http.Header{headerInvocationID: {"inv-1"}}
		gotSrc, wantSrc := src.Clone(), src.Clone()
		copyAnswerHeaders(gotDst, gotSrc, &hv)
		copyAnswerHeadersBefore(wantDst, wantSrc)
		if !reflect.DeepEqual(gotDst, wantDst) || !reflect.DeepEqual(gotSrc, wantSrc) {
			t.Errorf("case %d: answer headers\n got %q (source left %q)\nwant %q (source left %q)", i, gotDst, gotSrc, wantDst, wantSrc)
		}
	}
}

// The key cache's keyHash is fnmarket.HashAPIKey before its hex encoding,
// and the poller reads HashAPIKey's form back.
func TestKeyHashIsHashAPIKey(t *testing.T) {
	for _, raw := range []string{"", "fnm_test_0123456789abcdef0123456789abcdef", strings.Repeat("k", 200)} {
		h := hashPresentedKey(raw)
		if got, want := h.String(), fnmarket.HashAPIKey(raw); got != want {
			t.Errorf("%q: hash %s, want %s", raw, got, want)
		}
		if back, ok := parseKeyHash(fnmarket.HashAPIKey(raw)); !ok || back != h {
			t.Errorf("%q: parseKeyHash gave %x, %v", raw, back, ok)
		}
	}
	for _, bad := range []string{"", "abc", strings.Repeat("z", 64)} {
		if _, ok := parseKeyHash(bad); ok {
			t.Errorf("parseKeyHash(%q) accepted", bad)
		}
	}
}

// removeHopByHop is how the gateway dropped hop-by-hop headers before the
// hot-path work (copyAnswerHeaders now does it in its one pass): it deletes
// those of RFC 9110 section 7.6.1, including those the Connection header
// names. The references above use it.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	for k := range h {
		if isHopByHop(k) {
			delete(h, k)
		}
	}
}
