package gateway

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/fnmarket/fnmarket"
)

// TestPrivateAddressGuard checks one address in (or just outside) each range
// of the guard, at create time (CheckUpstreamURL with the address as the
// URL's host) and at dial time (the dialer's Control function): both must
// agree.
func TestPrivateAddressGuard(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		blocked bool
	}{
		// IPv4 special-purpose registry.
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"10.1.2.3", true},
		{"100.64.0.1", true},
		{"100.127.255.254", true},
		{"100.128.0.1", false},
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"169.254.169.254", true},
		{"172.16.0.1", true},
		{"172.31.255.254", true},
		{"172.32.0.1", false},
		{"192.0.0.1", true},
		{"192.0.0.170", true},
		{"192.0.2.1", true}, // TEST-NET-1
		{"192.31.196.1", true},
		{"192.52.193.1", true},
		{"192.88.99.1", true},
		{"192.168.1.1", true},
		{"192.175.48.1", true},
		{"198.18.0.1", true},
		{"198.19.255.254", true},
		{"198.20.0.1", false},
		{"198.51.100.7", true}, // TEST-NET-2
		{"203.0.113.9", true},  // TEST-NET-3
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		{"93.184.216.34", false},
		{"8.8.8.8", false},
		{"1.1.1.1", false},

		// IPv6 special-purpose registry.
		{"::", true},
		{"::1", true},
		{"100::1", true},  // discard-only
		{"2001::1", true}, // Teredo
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true},
		{"2001:2::1", true},   // benchmarking
		{"2001:20::1", true},  // ORCHIDv2
		{"2001:db8::1", true}, // documentation
		{"3fff::1", true},     // documentation
		{"2620:4f:8000::1", true},
		{"5f00::1", true}, // SRv6 SIDs
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"ff0e::1", true},
		{"2606:4700::1111", false},
		{"2a00:1450:4001::200e", false},

		// IPv6 forms that embed an IPv4 address.
		{"::ffff:127.0.0.1", true}, // IPv4-mapped
		{"::ffff:10.0.0.1", true},
		{"::ffff:192.0.2.1", true},
		{"::ffff:8.8.8.8", false},
		{"::127.0.0.1", true}, // IPv4-compatible
		{"::169.254.169.254", true},
		{"::ffff:0:7f00:1", true}, // SIIT, 127.0.0.1
		{"::ffff:0:a00:1", true},  // SIIT, 10.0.0.1
		{"64:ff9b::127.0.0.1", true},
		{"64:ff9b::10.0.0.1", true},
		{"64:ff9b::169.254.169.254", true},
		{"64:ff9b::8.8.8.8", false},  // NAT64 to a public address
		{"64:ff9b:1::8.8.8.8", true}, // local-use translation
		{"64:ff9b:1:ffff::1", true},
		{"2002:7f00:1::1", true}, // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", true},
		{"2002:c000:201::1", true}, // 6to4 of 192.0.2.1
		{"2002:808:808::1", false}, // 6to4 of 8.8.8.8
	}
	ctx := context.Background()
	for _, tt := range tests {
		ip, err := netip.ParseAddr(tt.addr)
		if err != nil {
			t.Fatalf("parse %s: %v", tt.addr, err)
		}
		dialErr := dialGuard("tcp", net.JoinHostPort(tt.addr, "443"), nil)
		if got := dialErr != nil; got != tt.blocked {
			t.Errorf("dial %s: refused = %v, want %v", tt.addr, got, tt.blocked)
		}
		if ip.Zone() != "" {
			continue // not a URL host
		}
		host := tt.addr
		if ip.Is6() {
			host = "[" + host + "]"
		}
		createErr := CheckUpstreamURL(ctx, "https://"+host+"/fn", false)
		if got := createErr != nil; got != tt.blocked {
			t.Errorf("create %s: refused = %v (%v), want %v", tt.addr, got, createErr, tt.blocked)
		}
		if createErr != nil && fnmarket.ErrorCode(createErr) != fnmarket.EINVALID {
			t.Errorf("create %s: code %s, want %s", tt.addr, fnmarket.ErrorCode(createErr), fnmarket.EINVALID)
		}
	}
}
