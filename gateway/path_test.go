package gateway_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/fnmarket/fnmarket"
)

// TestEncodedDotSegmentsStayUnderBase: a rest path that decodes to a "." or
// ".." segment, in any encoding, is refused 400 and not billed, so a caller
// cannot reach other paths on the vendor's host at this function's price.
func TestEncodedDotSegmentsStayUnderBase(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.EscapedPath())
		mu.Unlock()
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("v", "f", 1, up.URL+"/pub/fn/", true)

	refused := []string{
		"/%2e%2e/%2e%2e/private/admin.txt",
		"/%2E%2E/%2E%2E/private/admin.txt",
		"/..%2f..%2fprivate/admin.txt",
		"/..%2F..%2Fprivate/admin.txt",
		"/%2e%2e%2f%2e%2e%2fprivate/admin.txt",
		"/.%2e/%2e./private/admin.txt",
		"/a/%2e%2e/%2e%2e/%2e%2e/private",
		"/..%5c..%5cprivate/admin.txt",
		"/..%5C..%5Cprivate",
		"/..\\..\\private/admin.txt",
		"/a\\..\\..\\private",
		"/%252e%252e/%252e%252e/private/admin.txt", // encoded twice
		"/..%252f..%252fprivate",
		"/%25252e%25252e/private", // encoded three times
		"/..;/..;/private/admin.txt",
		"/%2e%2e;x=1/private",
		"/%2e",
		"/x/%2e/y",
		"/%2e%2e",
		"/..%2f",
		"/%c0%ae%c0%ae/%c0%ae%c0%ae/private", // overlong UTF-8 "."
		"/..%c0%af..%c0%afprivate",           // overlong UTF-8 "/"
		"/%e0%80%ae%e0%80%ae/private",
		"/..%c1%9c..%c1%9cprivate", // overlong UTF-8 "\"
	}
	for _, p := range refused {
		req, err := http.NewRequest(http.MethodGet, e.srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Opaque sends the request-target exactly as written.
		req.URL.Opaque = "/v1/invoke/v/f" + p
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(p, func(t *testing.T) { wantProblem(t, resp, 400, fnmarket.EINVALID) })
	}
	mu.Lock()
	if len(seen) != 0 {
		t.Errorf("upstream saw %q, want nothing", seen)
	}
	mu.Unlock()
	if n := len(e.meter.recorded()); n != 0 {
		t.Errorf("recorded %d calls, want none", n)
	}

	allowed := []struct{ path, want string }{
		{"/a/b", "/pub/fn/a/b"},
		{"/a..b/..c/d..", "/pub/fn/a..b/..c/d.."},
		{"/.well-known/x", "/pub/fn/.well-known/x"},
		{"/%2e%2e%2e", "/pub/fn/%2e%2e%2e"},
		{"/a%2fb", "/pub/fn/a%2fb"},
		{"/100%25", "/pub/fn/100%25"},
		{"/100%2525", "/pub/fn/100%2525"},
		{"/caf%C3%A9", "/pub/fn/caf%C3%A9"},
	}
	for _, tt := range allowed {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL, nil)
		req.URL.Opaque = "/v1/invoke/v/f" + tt.path
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: status %d, want 200", tt.path, resp.StatusCode)
			continue
		}
		mu.Lock()
		got := seen[len(seen)-1]
		mu.Unlock()
		if got != tt.want {
			t.Errorf("%s: upstream saw %q, want %q", tt.path, got, tt.want)
		}
	}
}
