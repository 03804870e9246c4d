package gateway_test

import (
	"io"
	"net/http"
	"slices"
	"testing"
)

// TestAnswerCannotSetCookies: functions answer on the portal's origin, so
// their Set-Cookie and Set-Cookie2 headers (and trailers) are dropped and
// every answer carries Content-Security-Policy: sandbox, next to the
// function's own policy.
func TestAnswerCannotSetCookies(t *testing.T) {
	t.Parallel()
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Set-Cookie", "fnm_session=stolen; Path=/; HttpOnly")
		h.Add("Set-Cookie", "other=1")
		h.Set("Set-Cookie2", "fnm_session=stolen2")
		h.Set("Content-Security-Policy", "default-src 'self'")
		h.Set("X-Kept", "yes")
		switch r.URL.Path {
		case "/stream":
			h.Set("Trailer", "Set-Cookie, X-Tail")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "part one")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, " part two")
			h.Set("Set-Cookie", "fnm_session=from-trailer")
			h.Set("X-Tail", "tail")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, "<script>document.cookie</script>")
		}
	})
	e := newEnv(t, envOptions{cfg: private()})
	e.routes.addVersion("acme", "cookies", 1, up.URL, true)

	for _, path := range []string{"/small", "/stream", "/empty"} {
		t.Run(path, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/v1/invoke/acme/cookies"+path, nil, nil)
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for _, k := range []string{"Set-Cookie", "Set-Cookie2"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("header %s = %q reached the caller", k, v)
				}
				if v, ok := resp.Trailer[k]; ok {
					t.Errorf("trailer %s = %q reached the caller", k, v)
				}
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("cookies %v reached the caller", resp.Cookies())
			}
			csp := resp.Header.Values("Content-Security-Policy")
			if !slices.Contains(csp, "sandbox") || !slices.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy = %q, want the function's and sandbox", csp)
			}
			if resp.Header.Get("X-Kept") != "yes" {
				t.Errorf("X-Kept = %q, want yes", resp.Header.Get("X-Kept"))
			}
			if path == "/stream" && resp.Trailer.Get("X-Tail") != "tail" {
				t.Errorf("trailer X-Tail = %q, want tail", resp.Trailer.Get("X-Tail"))
			}
		})
	}
}
