package wasm

import (
	"bytes"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxHeaderBlockBytes bounds where the empty line ending a header block may
// appear: stdout whose first 64 KiB hold no complete header block is all body.
const maxHeaderBlockBytes = 64 << 10

// Environment variable names the module sees; doc.go describes each.
const (
	EnvGatewayInterface = "GATEWAY_INTERFACE"
	EnvServerSoftware   = "SERVER_SOFTWARE"
	EnvServerProtocol   = "SERVER_PROTOCOL"
	EnvRequestMethod    = "REQUEST_METHOD"
	EnvPathInfo         = "PATH_INFO"
	EnvRawPathInfo      = "X_RAW_PATH_INFO"
	EnvQueryString      = "QUERY_STRING"
	EnvContentType      = "CONTENT_TYPE"
	EnvContentLength    = "CONTENT_LENGTH"
	EnvRemoteAddr       = "REMOTE_ADDR"
	EnvInvocationID     = "X_INVOCATION_ID"
	// EnvHeaderPrefix starts the name of one variable per request header:
	// HTTP_ and the header name upper-cased with "-" turned into "_".
	EnvHeaderPrefix = "HTTP_"
)

// withheldHeader reports whether the request header named canon (in
// canonical form) is kept from modules: the caller's credentials, headers
// about the connection to fnmarket rather than the request, and the two that
// have their own CGI variables.
func withheldHeader(canon string) bool {
	switch canon {
	case "Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization",
		"Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection",
		"Content-Type", "Content-Length":
		return true
	}
	return false
}

// droppedAnswerHeader reports whether a module may not set the answer header
// named canon: the gateway frames the answer and sets these itself.
func droppedAnswerHeader(canon string) bool {
	switch canon {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
		"X-Compute-Ms", "X-Invocation-Id":
		return true
	}
	return false
}

// cgiEnv returns the module's environment for req, whose body is
// contentLength bytes, as sorted "NAME=value" pairs. It is all the module
// sees of the host: the host's own environment is never passed.
func cgiEnv(req Request, contentLength int) [][2]string {
	raw := req.Path
	if !strings.HasPrefix(raw, "/") {
		raw = "/" + raw
	}
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		decoded = raw
	}
	env := map[string]string{
		EnvGatewayInterface: "CGI/1.1",
		EnvServerSoftware:   "fnmarket",
		EnvServerProtocol:   "HTTP/1.1",
		EnvRequestMethod:    req.Method,
		EnvPathInfo:         decoded,
		EnvRawPathInfo:      raw,
		EnvQueryString:      req.RawQuery,
		EnvContentLength:    strconv.Itoa(contentLength),
		EnvRemoteAddr:       req.RemoteAddr,
		EnvInvocationID:     req.InvocationID,
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		env[EnvContentType] = ct
	}
	for name, values := range req.Header {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if withheldHeader(canon) || !validHeaderName(canon) {
			continue
		}
		env[EnvHeaderPrefix+strings.ToUpper(strings.ReplaceAll(canon, "-", "_"))] = strings.Join(values, ", ")
	}
	out := make([][2]string, 0, len(env))
	for k, v := range env {
		out = append(out, [2]string{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// validHeaderName reports whether s is a non-empty HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// errBadStatus is a header block whose Status is not a status code.
type errBadStatus struct{ value string }

func (e errBadStatus) Error() string {
	return fmt.Sprintf("the Status header %q is not a status code from 100 to 599", e.value)
}

// parseOutput splits a module's stdout into status, headers and body.
//
// stdout starts with a header block when its first line is a header line and
// an empty line follows within the first maxHeaderBlockBytes with only header
// lines before it. A header line is a field name (an HTTP token), a colon and
// a value; lines end in LF or CRLF. The empty line ends the block and the
// body is everything after it. In any other case the whole of stdout is the
// body and the status is 200, so a module that prints plain text or JSON
// needs no header block at all.
//
// In a header block, "Status: 201" or "Status: 201 Created" sets the status
// (200 without it; 302 when only Location is given, as CGI has it); every
// other header is passed on, except those that frame the HTTP answer
// (Content-Length, Transfer-Encoding, Connection and other hop-by-hop ones),
// which the gateway sets itself.
func parseOutput(stdout []byte) (int, http.Header, []byte, error) {
	header, body, ok := splitHeaderBlock(stdout)
	if !ok {
		return http.StatusOK, http.Header{}, stdout, nil
	}
	h := http.Header{}
	status := 0
	for _, line := range header {
		name, value, _ := strings.Cut(line, ":")
		name = textproto.CanonicalMIMEHeaderKey(name)
		value = strings.TrimSpace(value)
		if name == "Status" {
			code, _, _ := strings.Cut(value, " ")
			n, err := strconv.Atoi(code)
			if err != nil || len(code) != 3 || n < 100 || n > 599 {
				return 0, nil, nil, errBadStatus{value: value}
			}
			status = n
			continue
		}
		if droppedAnswerHeader(name) {
			continue
		}
		h.Add(name, value)
	}
	if status == 0 {
		status = http.StatusOK
		if h.Get("Location") != "" {
			status = http.StatusFound
		}
	}
	return status, h, body, nil
}

// splitHeaderBlock returns the header lines and the body when stdout starts
// with a header block (see parseOutput), and ok false when it does not.
func splitHeaderBlock(stdout []byte) (lines []string, body []byte, ok bool) {
	rest := stdout
	for {
		consumed := len(stdout) - len(rest)
		if consumed >= maxHeaderBlockBytes {
			return nil, nil, false
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 || consumed+i >= maxHeaderBlockBytes {
			return nil, nil, false
		}
		line := strings.TrimSuffix(string(rest[:i]), "\r")
		rest = rest[i+1:]
		if line == "" {
			if len(lines) == 0 {
				return nil, nil, false
			}
			return lines, rest, true
		}
		if !isHeaderLine(line) {
			return nil, nil, false
		}
		lines = append(lines, line)
	}
}

// isHeaderLine reports whether line is "Name: value" with Name an HTTP token
// and a value with no control characters other than tab.
func isHeaderLine(line string) bool {
	name, value, ok := strings.Cut(line, ":")
	if !ok || !validHeaderName(name) {
		return false
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
