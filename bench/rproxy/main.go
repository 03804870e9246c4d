// Command rproxy is the baseline for the gateway load test: a bare
// httputil.ReverseProxy whose transport keeps a big enough idle pool (the
// default keeps 2 idle connections per host and churns sockets).
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9102", "listen address")
	target := flag.String("target", "http://127.0.0.1:9101", "upstream")
	flag.Parse()
	u, err := url.Parse(*target)
	if err != nil {
		log.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	log.Fatal(http.ListenAndServe(*addr, p))
}
