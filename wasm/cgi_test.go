package wasm

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestParseOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		stdout     string
		wantStatus int
		wantHeader http.Header
		wantBody   string
		wantErr    bool
	}{
		{"plain text", "hello", 200, http.Header{}, "hello", false},
		{"empty", "", 200, http.Header{}, "", false},
		{"json", "{\"a\": 1}\n\n{}", 200, http.Header{}, "{\"a\": 1}\n\n{}", false},
		{"leading empty line is body", "\nbody", 200, http.Header{}, "\nbody", false},
		{"header line without the empty line", "Content-Type: text/plain\nhello", 200, http.Header{}, "Content-Type: text/plain\nhello", false},
		{"non-header line in the block", "Content-Type: text/plain\nnot a header\n\nx", 200, http.Header{}, "Content-Type: text/plain\nnot a header\n\nx", false},
		{"content type only", "Content-Type: text/plain\n\nhello", 200, http.Header{"Content-Type": {"text/plain"}}, "hello", false},
		{"status with reason, CRLF", "Status: 201 Created\r\nContent-Type: application/json\r\n\r\n{}\r\n", 201, http.Header{"Content-Type": {"application/json"}}, "{}\r\n", false},
		{"status only, empty body", "Status: 204\n\n", 204, http.Header{}, "", false},
		{"location means 302", "Location: /elsewhere\n\n", 302, http.Header{"Location": {"/elsewhere"}}, "", false},
		{"location with status", "Status: 301\nLocation: /x\n\n", 301, http.Header{"Location": {"/x"}}, "", false},
		{"framing headers dropped", "Content-Length: 99\nTransfer-Encoding: chunked\nX-Compute-Ms: 0\nx-custom: v\n\nab", 200, http.Header{"X-Custom": {"v"}}, "ab", false},
		{"bad status", "Status: great\n\nbody", 0, nil, "", true},
		{"status out of range", "Status: 700\n\n", 0, nil, "", true},
		{"body keeps later empty lines", "A: b\n\nline\n\nmore", 200, http.Header{"A": {"b"}}, "line\n\nmore", false},
		{"header block too far", strings.Repeat("X: y\n", maxHeaderBlockBytes/5+1) + "\nbody", 200, http.Header{}, strings.Repeat("X: y\n", maxHeaderBlockBytes/5+1) + "\nbody", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, header, body, err := parseOutput([]byte(tt.stdout))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if status != tt.wantStatus || string(body) != tt.wantBody || fmt.Sprint(header) != fmt.Sprint(tt.wantHeader) {
				t.Fatalf("got %d %v %q, want %d %v %q", status, header, body, tt.wantStatus, tt.wantHeader, tt.wantBody)
			}
		})
	}
}

func TestStderrCaptureCutsLines(t *testing.T) {
	t.Parallel()
	s := &stderrCapture{limit: 4000}
	_, _ = s.Write([]byte("one\r\ntw"))
	_, _ = s.Write([]byte("o\n" + strings.Repeat("é", 2000) + "\nlast"))
	lines := s.finish()
	if len(lines) != 4 || lines[0] != "one" || lines[1] != "two" || lines[3] != "last" {
		t.Fatalf("lines = %q", lines)
	}
	if l := lines[2]; len(l) > maxLogLineBytes+len("…") || !strings.HasSuffix(l, "…") || strings.ContainsRune(l, '\uFFFD') {
		t.Fatalf("long line = %d bytes, want cut at %d on a rune boundary", len(l), maxLogLineBytes)
	}
}
