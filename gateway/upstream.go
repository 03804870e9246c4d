package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"

	"github.com/fnmarket/fnmarket"
)

// upstreamURLField is the input field CheckUpstreamURL names in its errors, as
// the portal API sends it.
const upstreamURLField = "backend.url"

// CheckUpstreamURL reports whether rawURL may be a function's HTTP backend: an
// absolute http or https URL without credentials whose host, unless
// allowPrivate, resolves only to public unicast addresses (no loopback,
// private, link-local, unspecified, CGNAT, multicast or reserved ones); a name
// that does not resolve (yet) is accepted. The API
// calls it at publish time; the gateway checks every dialled address again, so
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
	u, err := url.Parse(rawURL)
	if err != nil {
		return bad("must be an absolute http or https URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return bad("must use the http or https scheme")
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("must be an absolute http or https URL with a host")
	}
	if u.User != nil {
		return bad("must not carry credentials")
	}
	host := u.Hostname()
	if host == "" {
		return bad("must name a host")
	}
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

// blockedAddr reports whether ip is an address a function backend must never
// be reached at when private upstreams are not allowed.
func blockedAddr(ip netip.Addr) bool {
	if !ip.IsValid() {
		return true
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() {
		return true
	}
	if ip.Is4() {
		b := ip.As4()
		switch {
		case b[0] == 0: // 0.0.0.0/8, "this network"
			return true
		case b[0] == 100 && b[1]&0xc0 == 64: // 100.64.0.0/10, carrier-grade NAT
			return true
		case b[0] == 192 && b[1] == 0 && b[2] == 0: // 192.0.0.0/24, IETF protocol assignments
			return true
		case b[0] == 198 && b[1]&0xfe == 18: // 198.18.0.0/15, benchmarking
			return true
		case b[0] >= 240: // 240.0.0.0/4 reserved, and the broadcast address
			return true
		}
		return false
	}
	b := ip.As16()
	// 64:ff9b::/96 (NAT64) embeds an IPv4 address: judge that one.
	if b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && allZero(b[4:12]) {
		return blockedAddr(netip.AddrFrom4([4]byte(b[12:16])))
	}
	// 2002::/16 (6to4) embeds an IPv4 address too.
	if b[0] == 0x20 && b[1] == 0x02 {
		return blockedAddr(netip.AddrFrom4([4]byte(b[2:6])))
	}
	return false
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
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
