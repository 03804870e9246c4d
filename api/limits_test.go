package api_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// countingBody is a large upload made up as it is read, counting the bytes
// the server reads.
type countingBody struct {
	size, read int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.read >= b.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.size-b.read)
	for i := range p[:n] {
		p[i] = 'A'
	}
	if b.read == 0 {
		n = int64(copy(p, `{"backend":{"type":"wasm","module_base64":"`))
	}
	b.read += n
	return int(n), nil
}

// TestUploadRefusedBeforeBodyRead: a caller who may not upload is refused
// without the server reading the (large) body.
func TestUploadRefusedBeforeBodyRead(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0])
	consumer := h.signup("consumer@example.com")
	_, fid := h.vendor("owner@example.com", "owner-co")
	other := h.signup("other@example.com")
	h.must(201, h.do("POST", "/api/v1/vendor", other, map[string]any{"slug": "other-co", "display_name": "Other"}))

	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"consumer creates a function", "/api/v1/functions", consumer, 403},
		{"consumer adds a version", "/api/v1/functions/" + fid + "/versions", consumer, 403},
		{"another vendor adds a version", "/api/v1/functions/" + fid + "/versions", other, 404},
		{"no session", "/api/v1/functions", "", 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingBody{size: 46 << 20}
			req := httptest.NewRequest("POST", tc.path, body)
			req.ContentLength = body.size
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			rec := httptest.NewRecorder()
			h.srv.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if body.read != 0 {
				t.Errorf("the server read %d bytes of the body before refusing the caller", body.read)
			}
		})
	}
}

// TestPortalBodyReadDeadline: a body that trickles in is cut off at the read
// deadline instead of holding the connection for as long as the client likes.
func TestPortalBodyReadDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testenv.Backends()[0], func(d *api.Deps) { d.BodyReadTimeout = 200 * time.Millisecond })
	tok := h.signup("slow@example.com")

	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 1000 // at one byte per 20 ms: 20 s to send it all
	head := "POST /api/v1/keys HTTP/1.1\r\nHost: portal\r\nContent-Type: application/json\r\nAuthorization: Bearer " + tok +
		"\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	answered := make(chan *http.Response, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			res = nil
		}
		answered <- res
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for sent.Load() < size {
		select {
		case res := <-answered:
			if res == nil {
				t.Logf("connection closed after %d of %d body bytes", sent.Load(), size)
				return
			}
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("status %d (%s), want 400 problem+json", res.StatusCode, res.Header.Get("Content-Type"))
			}
			return
		case <-tick.C:
			if _, err := conn.Write([]byte(" ")); err != nil {
				return // the server closed the connection
			}
			sent.Add(1)
		}
	}
	t.Fatalf("the server read the whole trickled body (%d bytes over %s) without cutting it off", size, time.Duration(size)*20*time.Millisecond)
}

// decodingKind is a wasm kind that decodes the module as the real one does
// (base64 straight from the document into bytes), without compiling it.
type decodingKind struct{}

func (decodingKind) Type() string { return "wasm" }

func (decodingKind) Schema() backend.Schema {
	return backend.Schema{Input: map[string]any{"module_base64": map[string]any{"type": "string"}}, Stored: map[string]any{}}
}

func (decodingKind) Prepare(_ context.Context, v fnmarket.Validation, doc json.RawMessage) json.RawMessage {
	var in struct {
		Type         string `json:"type"`
		ModuleBase64 []byte `json:"module_base64"`
	}
	if !backend.Decode(v, doc, &in) {
		return nil
	}
	return backend.Spec(map[string]string{"module_sha256": "00"})
}

// TestUploadDecodedWithoutGrowingCopies: a vendor's large module upload is
// read into one buffer and decoded in place, so the request allocates about
// the body, the backend document and the module (2.75 times the body; 3.5
// times under -race, whose instrumentation keeps one more copy), not a
// series of growing copies (about 7 times before).
func TestUploadDecodedWithoutGrowingCopies(t *testing.T) {
	// Not parallel: it measures the process's allocations.
	h := newHarness(t, testenv.Backends()[0], func(d *api.Deps) {
		d.MaxUploadBytes = 64 << 20
		d.Backends = mustKinds(t, gateway.HTTPKind{}, decodingKind{})
	})
	tok, _ := h.vendor("big@example.com", "big-co")
	body := `{"name":"big","backend":{"type":"wasm","module_base64":"` + base64.StdEncoding.EncodeToString(make([]byte, 30<<20)) +
		`"},"pricing":{"per_call":"0","per_compute_ms":"0"}}`
	req := httptest.NewRequest("POST", "/api/v1/functions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	h.srv.ServeHTTP(rec, req)
	runtime.ReadMemStats(&after)
	if rec.Code != 201 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	t.Logf("allocated %d bytes for a %d byte body (%.2fx)", after.TotalAlloc-before.TotalAlloc, len(body), float64(after.TotalAlloc-before.TotalAlloc)/float64(len(body)))
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(len(body))*4; got > limit {
		t.Errorf("uploading a %d MiB body allocated %d MiB, want at most %d MiB", len(body)>>20, got>>20, limit>>20)
	}
}
