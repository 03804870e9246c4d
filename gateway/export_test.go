package gateway

import "net/http"

// RegisterUpstreamProtocol makes g's HTTP invoker hand requests for scheme
// to rt instead of dialling (http.Transport.RegisterProtocol), and so
// through the Transport, not the synchronous h1Client: the hot-path
// benchmarks use it to measure the gateway's own work without sockets.
func RegisterUpstreamProtocol(g *Gateway, scheme string, rt http.RoundTripper) {
	g.httpInv.transport.RegisterProtocol(scheme, rt)
	g.httpInv.h1 = nil
}
