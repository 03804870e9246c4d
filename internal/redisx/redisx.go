// Package redisx connects to Redis: a single server or a Redis Cluster from
// REDIS_URL, or, when none is configured, a Redis-protocol server embedded in
// the process (miniredis) so a laptop needs nothing installed.
package redisx

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Conn is a Redis client plus, for the embedded default, the server it owns.
type Conn struct {
	redis.UniversalClient
	Embedded *miniredis.Miniredis
	stop     chan struct{}
}

// Open connects to url. "redis://..." is one server; several comma-separated
// "host:port" are the seeds of a cluster; "" starts an embedded server.
func Open(ctx context.Context, url string) (*Conn, error) {
	if url == "" {
		return OpenEmbedded()
	}
	var opts redis.UniversalOptions
	if strings.Contains(url, ",") || !strings.Contains(url, "://") {
		opts.Addrs = strings.Split(url, ",")
		for i := range opts.Addrs {
			opts.Addrs[i] = strings.TrimPrefix(strings.TrimSpace(opts.Addrs[i]), "redis://")
		}
		opts.IsClusterMode = true
	} else {
		o, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		opts.Addrs = []string{o.Addr}
		opts.Username, opts.Password, opts.DB = o.Username, o.Password, o.DB
		opts.TLSConfig = o.TLSConfig
	}
	opts.DialTimeout = 2 * time.Second
	opts.ReadTimeout = 2 * time.Second
	opts.WriteTimeout = 2 * time.Second
	opts.PoolSize = 64
	// Honour per-call deadlines (the limiter gives Redis ~75 ms before it
	// decides locally) on single servers and clusters alike.
	opts.ContextTimeoutEnabled = true
	opts.MinIdleConns = 4
	c := &Conn{UniversalClient: redis.NewUniversalClient(&opts)}
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.UniversalClient.Close()
		return nil, fmt.Errorf("reach redis: %w", err)
	}
	return c, nil
}

// OpenEmbedded starts an in-process Redis-protocol server on a loopback port
// and connects to it. miniredis never expires keys on its own, so a ticker
// advances its clock in step with real time.
func OpenEmbedded() (*Conn, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	c := &Conn{
		UniversalClient: redis.NewClient(&redis.Options{Addr: m.Addr(), PoolSize: 32, ContextTimeoutEnabled: true}),
		Embedded:        m,
		stop:            make(chan struct{}),
	}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-c.stop:
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return c, nil
}

// Close closes the client and stops an embedded server.
func (c *Conn) Close() error {
	err := c.UniversalClient.Close()
	if c.Embedded != nil {
		close(c.stop)
		c.Embedded.Close()
	}
	return err
}
