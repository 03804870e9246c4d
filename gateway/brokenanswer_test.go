package gateway_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/fnmarket/fnmarket"
)

// rawUpstream answers every request on its connection with raw, then
// closes the connection.
func rawUpstream(t *testing.T, raw string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, raw)
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// TestBrokenAnswerContract: a 502 problem is sent only when nothing of the
// function's answer arrived, and then the call is not billed; once its status
// line and headers arrived, the caller gets that status, what body arrived
// and a cut connection, and the call is billed (as an error).
func TestBrokenAnswerContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    string
		status int // 502: a problem, not billed
	}{
		{"nothing", "", 502},
		{"half a status line", "HTTP/1.1 2", 502},
		{"headers cut", "HTTP/1.1 200 OK\r\nContent-Le", 502},
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n", 502},
		{"small body cut", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", 200},
		{"small error body cut", "HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\nnope", 404},
		{"large body cut", "HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n0123456789", 200},
		{"chunked body cut", "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{cfg: private()})
			e.routes.addVersion("acme", "broken", 1, rawUpstream(t, tt.raw), true)
			resp := e.do(http.MethodGet, "/v1/invoke/acme/broken", nil, nil)
			if tt.status == 502 {
				wantProblem(t, resp, 502, fnmarket.EUNREACHABLE)
				if n := len(e.meter.recorded()); n != 0 {
					t.Errorf("recorded %d calls, want none: a 502 problem is never billed", n)
				}
				return
			}
			_, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Content-Type") == "application/problem+json" {
				t.Fatalf("status %d (%s), want the function's %d", resp.StatusCode, resp.Header.Get("Content-Type"), tt.status)
			}
			if readErr == nil {
				t.Errorf("the answer body read to its end; want the connection cut")
			}
			calls := e.meter.recorded()
			if len(calls) != 1 || !calls[0].Billable || !calls[0].Error {
				t.Errorf("recorded %+v, want one billable call marked as an error", calls)
			}
		})
	}
}
