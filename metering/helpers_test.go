package metering

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// eachBackend runs fn as a parallel subtest on every configured backend.
func eachBackend(t *testing.T, fn func(t *testing.T, b testenv.Backend)) {
	t.Helper()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			fn(t, b)
		})
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

var testStart = time.Date(2026, 3, 15, 10, 20, 0, 0, time.UTC)

func testPricing() catalog.Pricing {
	return catalog.Pricing{
		Currency:          "USD",
		PerCall:           decimal.RequireFromString("0.0001"),
		PerComputeMs:      decimal.RequireFromString("0.000000123"),
		FreeCallsPerMonth: 5,
	}
}

// genCall is the i-th call of a deterministic mix of consumers, keys,
// functions, hours, outcomes and latencies.
func genCall(i int) Call {
	consumer := fmt.Sprintf("con_%d", i%3)
	ms := int64(i%97 + 1)
	if i%13 == 0 {
		ms = 40_000 // the overflow bucket
	}
	c := Call{
		InvocationID: fmt.Sprintf("inv_%d", i),
		ConsumerID:   consumer,
		KeyID:        fmt.Sprintf("key_%d_%d", i%3, i%2),
		FunctionID:   fmt.Sprintf("fn_%d", i%2),
		Version:      1 + i%2,
		Pricing:      testPricing(),
		CallsBefore:  int64(i / 6),
		At:           testStart.Add(time.Duration(i%5) * 17 * time.Minute),
		ComputeMs:    ms,
		Billable:     i%7 != 0,
		Error:        i%11 == 0,
		Settled:      i%4 != 0,
	}
	if c.Billable {
		c.Cost = c.Pricing.CallCost(c.CallsBefore, c.ComputeMs)
		c.Free = c.CallsBefore < c.Pricing.FreeCallsPerMonth
	}
	return c
}

// totals is what a set of calls adds up to, computed independently of the
// meter's own aggregation.
type totals struct {
	Calls, Billable, ComputeMs, Errors int64
	Spend                              decimal.Decimal
}

func (a *totals) add(c Call) {
	a.Calls++
	if c.Error {
		a.Errors++
	}
	if c.Billable {
		a.Billable++
		a.ComputeMs += c.ComputeMs
		a.Spend = a.Spend.Add(c.Pricing.CallCost(c.CallsBefore, c.ComputeMs))
	}
}

func (a totals) String() string {
	return fmt.Sprintf("calls=%d billable=%d compute_ms=%d errors=%d spend=%s", a.Calls, a.Billable, a.ComputeMs, a.Errors, a.Spend)
}

func (a totals) equal(b totals) bool {
	return a.Calls == b.Calls && a.Billable == b.Billable && a.ComputeMs == b.ComputeMs && a.Errors == b.Errors && a.Spend.Equal(b.Spend)
}

// redisTotals sums what Redis holds for the test's calls: every live hash
// and pending batch; with withSpend also the cost the rows carry.
func redisTotals(t *testing.T, rdb redis.UniversalClient, prefix string, withSpend bool) totals {
	t.Helper()
	ctx := context.Background()
	ks := keyspace{prefix: prefix}
	var got totals
	got.Spend = decimal.Zero
	for shard := range NumShards {
		hashes := []string{ks.live(shard)}
		ids, err := rdb.SMembers(ctx, ks.pending(shard)).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			hashes = append(hashes, ks.batch(shard, id))
		}
		for _, k := range hashes {
			h, err := rdb.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			rows, err := rowsFromHash(h, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				got.Calls += r.Calls
				got.Billable += r.BillableCalls
				got.ComputeMs += r.ComputeMs
				got.Errors += r.Errors
				if withSpend {
					got.Spend = got.Spend.Add(fromPico(r.CostPico))
				}
			}
		}
	}
	return got
}

func newTestMeter(t *testing.T, rdb redis.UniversalClient, prefix, dir string, interval time.Duration) *Meter {
	t.Helper()
	m, err := NewMeter(MeterConfig{
		Redis: rdb, Prefix: prefix, SpoolDir: dir,
		FlushInterval: interval, MaxBackoff: 50 * time.Millisecond, SendTimeout: 2 * time.Second,
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatalf("new meter: %v", err)
	}
	return m
}

// newSteppedMeter opens a meter whose loops do not run: the test steps them
// with flushTick and conf.tick.
func newSteppedMeter(t *testing.T, cfg MeterConfig) *Meter {
	t.Helper()
	m, err := newMeter(cfg)
	if err != nil {
		t.Fatalf("new meter: %v", err)
	}
	close(m.done)
	close(m.confirmDone)
	return m
}

func closeMeter(t *testing.T, m *Meter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("close meter: %v", err)
	}
}

// tcpProxy forwards connections to a Redis server and can cut them all and
// refuse new ones, to make Redis unreachable without stopping it.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  map[net.Conn]struct{}
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.setUp(false) })
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.up {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if !p.up {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[u] = struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(u, c); u.Close(); c.Close() }()
	_, _ = io.Copy(c, u)
	u.Close()
	c.Close()
}

func (p *tcpProxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

// proxiedClient is a client for backend b's Redis that goes through a proxy
// the test controls; ok is false for a cluster, which the proxy cannot front.
func proxiedClient(t *testing.T, b testenv.Backend, conn *redisx.Conn) (*redis.Client, *tcpProxy, bool) {
	t.Helper()
	opts := &redis.Options{}
	target := ""
	switch {
	case conn.Embedded != nil:
		target = conn.Embedded.Addr()
	case strings.Contains(b.RedisURL, ",") || !strings.Contains(b.RedisURL, "://"):
		return nil, nil, false
	default:
		o, err := redis.ParseURL(b.RedisURL)
		if err != nil {
			t.Fatal(err)
		}
		opts, target = o, o.Addr
	}
	p := newTCPProxy(t, target)
	opts.Addr = p.addr()
	opts.DialTimeout = 300 * time.Millisecond
	opts.ReadTimeout = time.Second
	opts.WriteTimeout = time.Second
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c, p, true
}
