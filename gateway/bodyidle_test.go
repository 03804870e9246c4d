package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
)

// trickle sends a chunked POST to the gateway over a raw connection: one
// chunk, then a chunk every gap for n more, then either the end of the body
// or (stall) nothing at all. It returns the gateway's answer.
func trickle(t *testing.T, e *env, path string, n int, gap time.Duration, stall bool) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n", path, testKey)
	for range n {
		time.Sleep(gap)
		if _, err := io.WriteString(c, "1\r\nb\r\n"); err != nil {
			t.Fatalf("write chunk: %v", err)
		}
	}
	if !stall {
		_, _ = io.WriteString(c, "0\r\n\r\n")
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return resp
}

// TestBodyIdleTimeout: a request body that sends nothing for BodyIdleTimeout
// is cut with 408 and not billed; one that keeps sending, however slowly
// overall, streams on; and once the body is in, a function may take longer
// than the idle timeout.
func TestBodyIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return // the gateway cut the body
		}
		if r.URL.Path == "/slow" {
			time.Sleep(3 * idle)
		}
		fmt.Fprintf(w, "got %d bytes", len(b))
	})
	cfg := private()
	cfg.BodyIdleTimeout = idle
	e := newEnv(t, envOptions{cfg: cfg})
	e.routes.addVersion("acme", "body", 1, up.URL, true)

	t.Run("stalled", func(t *testing.T) {
		resp := trickle(t, e, "/v1/invoke/acme/body", 0, 0, true)
		wantProblem(t, resp, http.StatusRequestTimeout, fnmarket.EREQUESTTIMEOUT)
	})
	if n := len(e.meter.recorded()); n != 0 {
		t.Errorf("recorded %d calls, want none for a stalled body", n)
	}
	t.Run("trickling but alive", func(t *testing.T) {
		// 12 gaps of idle/3: the whole body takes longer than idle.
		resp := trickle(t, e, "/v1/invoke/acme/body", 12, idle/3, false)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "got 13 bytes" {
			t.Errorf("answer %d %q, want 200 got 13 bytes", resp.StatusCode, b)
		}
	})
	t.Run("slow function after the body", func(t *testing.T) {
		resp := trickle(t, e, "/v1/invoke/acme/body/slow", 0, 0, false)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "got 1 bytes" {
			t.Errorf("answer %d %q, want 200 got 1 bytes", resp.StatusCode, b)
		}
	})
}
