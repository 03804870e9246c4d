package gateway

import "net/netip"

// The private-address guard: which addresses a function backend must never be
// reached at, unless Config.AllowPrivateUpstreams. It is built from IANA's
// IPv4 and IPv6 Special-Purpose Address Registries (every entry that is not
// globally reachable, and the few global ones no function lives at), plus
// multicast, and judges an IPv4 address embedded in an IPv6 one as that IPv4
// address. CheckUpstreamURL (at create time) and the dialer (on every
// connection) ask the same function, blockedAddr.

// blockedIPv4 are the IPv4 ranges refused outright.
var blockedIPv4 = prefixes(
	"0.0.0.0/8",          // "this network" (RFC 791), 0.0.0.0/32 included
	"10.0.0.0/8",         // private use (RFC 1918)
	"100.64.0.0/10",      // shared address space, carrier-grade NAT (RFC 6598)
	"127.0.0.0/8",        // loopback (RFC 1122)
	"169.254.0.0/16",     // link-local, cloud metadata at 169.254.169.254 (RFC 3927)
	"172.16.0.0/12",      // private use (RFC 1918)
	"192.0.0.0/24",       // IETF protocol assignments, DS-Lite, NAT64 discovery (RFC 6890 and others)
	"192.0.2.0/24",       // documentation, TEST-NET-1 (RFC 5737)
	"192.31.196.0/24",    // AS112-v4 (RFC 7535)
	"192.52.193.0/24",    // AMT (RFC 7450)
	"192.88.99.0/24",     // deprecated 6to4 relay anycast (RFC 7526)
	"192.168.0.0/16",     // private use (RFC 1918)
	"192.175.48.0/24",    // direct delegation AS112 service (RFC 7534)
	"198.18.0.0/15",      // benchmarking (RFC 2544)
	"198.51.100.0/24",    // documentation, TEST-NET-2 (RFC 5737)
	"203.0.113.0/24",     // documentation, TEST-NET-3 (RFC 5737)
	"224.0.0.0/4",        // multicast (RFC 5771)
	"240.0.0.0/4",        // reserved (RFC 1112)
	"255.255.255.255/32", // limited broadcast (RFC 919)
)

// globalUnicastIPv6 is the only IPv6 space IANA allocates for global
// unicast; everything outside it (unspecified, loopback, IPv4-compatible,
// discard-only 100::/64, SRv6 5f00::/16, unique-local fc00::/7, link-local
// fe80::/10, site-local fec0::/10, multicast ff00::/8, and the unassigned
// rest) is refused, except the IPv4-embedding forms judged below.
var globalUnicastIPv6 = netip.MustParsePrefix("2000::/3")

// blockedIPv6 are the non-global ranges inside 2000::/3.
var blockedIPv6 = prefixes(
	"2001::/23",         // IETF protocol assignments: Teredo 2001::/32 (RFC 4380), benchmarking, ORCHID (RFC 2928)
	"2001:db8::/32",     // documentation (RFC 3849)
	"3fff::/20",         // documentation (RFC 9637)
	"2620:4f:8000::/48", // direct delegation AS112 service (RFC 7534)
)

// IPv6 forms that carry an IPv4 address in their last 32 bits: the IPv4
// address decides. Go dials IPv4-mapped addresses as IPv4; the others reach
// the IPv4 address through a translator or the host's own stack.
var embedsIPv4InLow32 = prefixes(
	"::ffff:0:0/96",   // IPv4-mapped (RFC 4291)
	"::/96",           // IPv4-compatible, deprecated (RFC 4291)
	"::ffff:0:0:0/96", // SIIT IPv4-translated (RFC 2765)
	"64:ff9b::/96",    // NAT64 well-known prefix (RFC 6052)
)

// nat64LocalUse is the local-use IPv4/IPv6 translation prefix (RFC 8215): a
// site decides where in it the IPv4 address sits, so all of it is refused.
var nat64LocalUse = netip.MustParsePrefix("64:ff9b:1::/48")

// sixToFour is 6to4 (RFC 3056): the IPv4 address is bits 16 to 47.
var sixToFour = netip.MustParsePrefix("2002::/16")

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func inAny(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// blockedAddr reports whether ip is an address a function backend must never
// be reached at when private upstreams are not allowed.
func blockedAddr(ip netip.Addr) bool {
	ip = ip.WithZone("") // a zone changes nothing about where ip is
	switch {
	case !ip.IsValid():
		return true
	case ip.Is4():
		return inAny(ip, blockedIPv4)
	}
	b := ip.As16()
	switch {
	case inAny(ip, embedsIPv4InLow32):
		v4 := netip.AddrFrom4([4]byte(b[12:16]))
		// ::/96 also holds :: and ::1, whose low 32 bits (0.0.0.0, 0.0.0.1)
		// are in 0.0.0.0/8 and so refused with them.
		return blockedAddr(v4)
	case nat64LocalUse.Contains(ip):
		return true
	case sixToFour.Contains(ip):
		return blockedAddr(netip.AddrFrom4([4]byte(b[2:6])))
	case !globalUnicastIPv6.Contains(ip):
		return true
	}
	return inAny(ip, blockedIPv6)
}
