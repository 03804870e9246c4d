package gateway

import (
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
