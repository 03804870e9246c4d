package gateway

import (
	"net/url"
	"strconv"
	"strings"
)

// parseInvokePath splits an escaped request path of the form
// prefix{vendor}/{name}[@{version}][/{rest...}]. version is 0 when none was
// given; rest keeps its escaping and starts with "/" when present.
func parseInvokePath(path, prefix string) (vendor, name string, version int, rest string, ok bool) {
	p, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return "", "", 0, "", false
	}
	vendor, p, ok = strings.Cut(p, "/")
	if !ok || !isSlug(vendor) {
		return "", "", 0, "", false
	}
	fn, after, hasRest := strings.Cut(p, "/")
	if hasRest {
		rest = "/" + after
	}
	name, ver, hasVersion := strings.Cut(fn, "@")
	if !isSlug(name) {
		return "", "", 0, "", false
	}
	if hasVersion {
		if ver == "" || len(ver) > 9 || strings.TrimLeft(ver, "0123456789") != "" {
			return "", "", 0, "", false
		}
		v, err := strconv.Atoi(ver)
		if err != nil || v <= 0 {
			return "", "", 0, "", false
		}
		version = v
	}
	return vendor, name, version, rest, true
}

// isSlug reports whether s could be a vendor slug or function name: [a-z0-9-]+.
func isSlug(s string) bool {
	if s == "" || len(s) > 60 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// maxUnescapeRounds is how many layers of percent-encoding restEscapesBase
// peels off: a backend (or a proxy in front of it) that decodes twice must
// not see a dot-segment either.
const maxUnescapeRounds = 3

// restEscapesBase reports whether the escaped rest path could leave the
// backend's base path once decoded: it has a "." or ".." segment in any form
// a server might understand, percent-encoded (%2e, %2E, also encoded twice),
// split by an encoded slash (%2f) or by a backslash (literal or %5c), or
// followed by ";parameters" (as Tomcat reads "..;"). A path that cannot be
// decoded at all counts as escaping. The gateway refuses such calls rather than
// cleaning them, so the function never sees a path its vendor did not mean
// to serve.
func restEscapesBase(rest string) bool {
	p := rest
	for round := range maxUnescapeRounds {
		if hasDotSegment(p) {
			return true
		}
		if !strings.Contains(p, "%") {
			return false
		}
		u, err := url.PathUnescape(p)
		if err != nil {
			// Undecodable as sent is refused; a later layer that does not
			// decode (a literal "%" such as "100%25") cannot hide a dot.
			return round == 0
		}
		p = u
	}
	return hasDotSegment(p)
}

// hasDotSegment reports whether p, split at "/" and "\", has a segment that
// is "." or ".." (ignoring ";parameters"), or holds an overlong UTF-8 form
// (0xC0 or 0xC1 lead bytes, or 0xE0 0x80 and 0xF0 0x80 prefixes), which old
// servers decode to "." or "/" and which no valid UTF-8 contains.
func hasDotSegment(p string) bool {
	if strings.IndexByte(p, 0xc0) >= 0 || strings.IndexByte(p, 0xc1) >= 0 ||
		strings.Contains(p, "\xe0\x80") || strings.Contains(p, "\xf0\x80") {
		return true
	}
	for seg := range strings.FieldsFuncSeq(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		seg, _, _ = strings.Cut(seg, ";")
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
