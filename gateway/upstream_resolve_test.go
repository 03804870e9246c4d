package gateway_test

import (
	"context"
	"testing"

	"github.com/fnmarket/fnmarket/gateway"
)

// TestCheckUpstreamURLAcceptsUnresolvedName: a vendor may publish before its
// DNS is set up (or on a machine with no network); the dial guard is what
// refuses private addresses, on every call.
func TestCheckUpstreamURLAcceptsUnresolvedName(t *testing.T) {
	t.Parallel()
	// .invalid never resolves (RFC 6761).
	if err := gateway.CheckUpstreamURL(context.Background(), "https://scan.not-yet.invalid/check", false); err != nil {
		t.Errorf("an unresolvable host is refused: %v", err)
	}
}
