package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"

	"github.com/fnmarket/fnmarket"
)

// upstreamURLField is the input field CheckUpstreamURL names in its errors, as
// the portal API sends it.
const upstreamURLField = "backend.url"

// CheckUpstreamURL reports whether rawURL may be a function's HTTP backend: an
// absolute http or https URL without credentials or fragment whose host, unless
// allowPrivate, resolves only to public unicast addresses (no loopback,
// private, link-local, unspecified, CGNAT, multicast or reserved ones); a name
// that does not resolve (yet) is accepted. The http kind (HTTPKind) calls it
// when a version is created; the gateway checks every dialled address again, so
// a name that resolves differently later (DNS rebinding) is still refused. It
// returns an *fnmarket.Error with code EINVALID naming the field "backend.url".
func CheckUpstreamURL(ctx context.Context, rawURL string, allowPrivate bool) error {
	bad := func(format string, args ...any) error {
		return &fnmarket.Error{
			Code:    fnmarket.EINVALID,
			Message: "the backend URL is not allowed",
			Fields:  map[string]string{upstreamURLField: fmt.Sprintf(format, args...)},
		}
	}
	u, problem := parseUpstreamURL(rawURL)
	if problem != "" {
		return bad("%s", problem)
	}
	host := u.Hostname()
	if allowPrivate {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if blockedAddr(ip) {
			return bad("must not point at a loopback, private, link-local or reserved address")
		}
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		// A name that does not resolve yet (DNS not set up, or no network
		// here) is accepted: the dial guard checks whatever it resolves to
		// on every call, and a call that cannot connect answers 502.
		return nil
	}
	for _, ip := range addrs {
		if blockedAddr(ip) {
			return bad("host %q resolves to a loopback, private, link-local or reserved address", host)
		}
	}
	return nil
}

// parseUpstreamURL is the one check of an HTTP backend URL's form, at create
// time (CheckUpstreamURL) and when the gateway first calls a version
// (httpInvoker.target, which keeps the result): an absolute http or https URL
// with a host, without credentials or fragment. It returns the problem with
// rawURL, or "".
func parseUpstreamURL(rawURL string) (*url.URL, string) {
	if rawURL == "" {
		return nil, "is required"
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return nil, "must be an absolute http or https URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "must use the http or https scheme"
	case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
		return nil, "must be an absolute http or https URL with a host"
	case u.User != nil:
		return nil, "must not carry credentials"
	case u.Fragment != "" || strings.HasSuffix(rawURL, "#"):
		return nil, "must not carry a fragment"
	}
	return u, ""
}

// blockedAddrError is what the dial guard returns for a refused address.
type blockedAddrError struct{ addr string }

func (e *blockedAddrError) Error() string {
	return "upstream address " + e.addr + " is private or reserved and not allowed"
}

// dialGuard is a net.Dialer Control func that refuses to connect to a blocked
// address. It runs after name resolution, on the very address being dialled,
// which is what defeats DNS rebinding.
func dialGuard(network, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return &blockedAddrError{addr: address}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || blockedAddr(ip) {
		return &blockedAddrError{addr: host}
	}
	return nil
}

func isBlockedDial(err error) bool {
	var b *blockedAddrError
	return errors.As(err, &b)
}

// DialGuard is dialGuard for other outbound HTTP clients that must not reach
// private addresses either (outbound webhooks): a net.Dialer Control func.
func DialGuard(network, address string, c syscall.RawConn) error {
	return dialGuard(network, address, c)
}

// IsBlockedDial reports whether err is DialGuard refusing an address.
func IsBlockedDial(err error) bool { return isBlockedDial(err) }
