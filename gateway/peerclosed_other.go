//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package gateway

import "net"

// peerClosed cannot peek on this platform: a kept connection the backend
// closed while idle shows as a failed request, which is sent again where
// that is safe (h1Client.do).
func peerClosed(net.Conn) bool { return false }
