package gateway

import "net/http"

// RegisterUpstreamProtocol makes g's HTTP invoker hand requests for scheme
// to rt instead of dialling (http.Transport.RegisterProtocol): the hot-path
// benchmarks use it to measure the proxy without sockets.
func RegisterUpstreamProtocol(g *Gateway, scheme string, rt http.RoundTripper) {
	g.httpInv.transport.RegisterProtocol(scheme, rt)
}
