package main

import (
	"io"
	"testing"
)

// TestAuthConfig reads the sign-in limits' settings: the per-address rate
// (default 20, 0 turns it off) and the trusted proxies (CIDRs or bare
// addresses).
func TestAuthConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env      map[string]string
		rate     int
		proxies  []string
		wantFail bool
	}{
		{env: map[string]string{}, rate: 20},
		{env: map[string]string{"FNMARKET_AUTH_RATE_PER_MINUTE": "0"}, rate: 0},
		{env: map[string]string{"FNMARKET_AUTH_RATE_PER_MINUTE": "-1"}, wantFail: true},
		{env: map[string]string{"FNMARKET_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7 ,2001:db8::/32"}, rate: 20, proxies: []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}},
		{env: map[string]string{"FNMARKET_TRUSTED_PROXIES": "10.0.0.0/33"}, wantFail: true},
		{env: map[string]string{"FNMARKET_TRUSTED_PROXIES": "proxy.internal"}, wantFail: true},
	} {
		c, err := parseConfig("serve", nil, func(k string) string { return tc.env[k] }, io.Discard)
		if tc.wantFail {
			if err == nil {
				t.Errorf("%v: no error", tc.env)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		var got []string
		for _, n := range c.TrustedProxies {
			got = append(got, n.String())
		}
		if c.AuthRatePerMinute != tc.rate || len(got) != len(tc.proxies) {
			t.Errorf("%v: rate %d proxies %v, want %d %v", tc.env, c.AuthRatePerMinute, got, tc.rate, tc.proxies)
			continue
		}
		for i := range got {
			if got[i] != tc.proxies[i] {
				t.Errorf("%v: proxies %v, want %v", tc.env, got, tc.proxies)
			}
		}
	}
}

// TestSuspendAfterDays reads FNMARKET_SUSPEND_AFTER_DAYS: 14 by default, a
// whole number of days from 0 to 3650.
func TestSuspendAfterDays(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int{"": 14, "0": 0, "30": 30, "-1": -1, "1.5": -1, "3651": -1, "x": -1} {
		c, err := parseConfig("serve", nil, func(k string) string {
			if k == "FNMARKET_SUSPEND_AFTER_DAYS" {
				return v
			}
			return ""
		}, io.Discard)
		switch {
		case want < 0 && err == nil:
			t.Errorf("%q: no error", v)
		case want >= 0 && (err != nil || c.SuspendAfterDays != want):
			t.Errorf("%q: %d %v, want %d", v, c.SuspendAfterDays, err, want)
		}
	}
}
