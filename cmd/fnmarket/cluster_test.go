package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// startRedisCluster starts a three-master Redis Cluster from Debian's
// redis-server on free loopback ports and returns its seeds, comma-separated.
func startRedisCluster(t *testing.T) string {
	t.Helper()
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server and redis-cli are required in CI")
		}
		t.Skip("redis-server/redis-cli not installed")
	}
	var addrs []string
	for i := 0; i < 3; i++ {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		dir := t.TempDir()
		cmd := exec.Command(server, "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", dir+"/nodes.conf", "--dir", dir, "--save", "", "--appendonly", "no")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addrs = append(addrs, addr)
	}
	for _, a := range addrs {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err := net.Dial("tcp", a); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis node %s did not start", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("create cluster: %v\n%s", err, out)
	}
	host, port, _ := net.SplitHostPort(addrs[0])
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _ := exec.Command(cli, "-h", host, "-p", port, "cluster", "info").Output()
		if strings.Contains(string(out), "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ok: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return strings.Join(addrs, ",")
}

// TestOnRedisCluster runs the product on a real three-master Redis Cluster:
// calls are admitted, metered, rolled up across every shard and billed
// exactly; a revoked key is refused.
func TestOnRedisCluster(t *testing.T) {
	seeds := startRedisCluster(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer upstream.Close()
	env := map[string]string{"FNMARKET_DATA_DIR": t.TempDir(), "FNMARKET_ALLOW_PRIVATE_UPSTREAMS": "true",
		"REDIS_URL": seeds, "FNMARKET_ROLLUP_INTERVAL": "300ms"}
	inst := start(t, "serve", env)
	c := client{t: t, base: inst.url}
	vendor, _ := c.publishFunction("echo", map[string]any{"type": "http", "url": upstream.URL}, map[string]any{"per_call": "0.01", "per_compute_ms": "0", "free_calls_per_month": 5})
	// Several consumers, so their counters land in different shards and slots.
	const consumers, callsEach = 6, 20
	tokens := make([]string, consumers)
	for i := range tokens {
		tokens[i] = c.call("POST", "/api/v1/auth/signup", "", map[string]any{"email": fmt.Sprintf("c%d@example.com", i), "password": "correct horse battery", "name": "C"}, 201)["token"].(string)
		key := c.call("POST", "/api/v1/keys", tokens[i], map[string]any{"name": "k"}, 201)["key"].(string)
		for j := 0; j < callsEach; j++ {
			if res, body := c.invoke("/v1/invoke/acme/echo", key, ""); res.StatusCode != 200 {
				t.Fatalf("call: %d %s", res.StatusCode, body)
			}
		}
	}
	for i, tok := range tokens {
		eventually(t, 10*time.Second, fmt.Sprintf("consumer %d's calls rolled up", i), func() bool { return usageCalls(t, inst.url, tok) == callsEach })
		up := c.call("GET", "/api/v1/invoices/upcoming", tok, nil, 200)
		if up["total"] != "0.15" { // (20 - 5 free) × 0.01
			t.Errorf("consumer %d upcoming total %v, want 0.15", i, up["total"])
		}
	}
	// Idempotency keys live in one slot per API key, on every master.
	checkIdempotencyOnCluster(t, seeds)
	key := c.call("POST", "/api/v1/keys", tokens[0], map[string]any{"name": "idem"}, 201)["key"].(string)
	idempotentCallOnCluster(t, inst.url, key)
	// A cap holds on the cluster too: 200 concurrent calls, room for 10.
	capsHold(t, inst.url, []string{inst.url}, vendor)
}

// tcpRelay forwards connections to a target it can switch, and can hold
// the bytes flowing back from the target (as a slow network link would) and
// then cut every connection, losing what it held.
type tcpRelay struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	target string
	held   bool
	conns  []net.Conn
}

func newTCPRelay(t *testing.T, target string) *tcpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpRelay{ln: ln, target: target}
	r.cond = sync.NewCond(&r.mu)
	t.Cleanup(func() { _ = ln.Close(); r.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go r.serve(c)
		}
	}()
	return r
}

func (r *tcpRelay) addr() string { return r.ln.Addr().String() }

func (r *tcpRelay) serve(c net.Conn) {
	r.mu.Lock()
	target := r.target
	r.mu.Unlock()
	up, err := net.Dial("tcp", target)
	if err != nil {
		_ = c.Close()
		return
	}
	r.mu.Lock()
	r.conns = append(r.conns, c, up)
	r.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			r.mu.Lock()
			for r.held {
				r.cond.Wait()
			}
			r.mu.Unlock()
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = c.Close()
}

// hold stops passing on what the target sends.
func (r *tcpRelay) hold() {
	r.mu.Lock()
	r.held = true
	r.mu.Unlock()
}

// cut closes every connection, dropping what was held.
func (r *tcpRelay) cut() {
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.conns = nil
	r.held = false
	r.cond.Broadcast()
	r.mu.Unlock()
}

// switchTo sends new connections to target and cuts the old ones.
func (r *tcpRelay) switchTo(target string) {
	r.mu.Lock()
	r.target = target
	r.mu.Unlock()
	r.cut()
}

// TestRedisFailoverToLaggingReplica fails Redis over to a replica that lagged
// behind the roll-up: the master moves counters to a batch and the worker
// commits them to the database, but the replica never sees the move, so once
// promoted it still holds those counters and flush ids. Usage and the
// upcoming invoice must still equal the answered calls. Replication runs
// through a relay the test can hold and cut (a lagging asynchronous replica
// is the same as one whose link stalls, then breaks); clients reach Redis
// through a second relay that is switched to the replica on failover, as a
// virtual IP would be.
func TestRedisFailoverToLaggingReplica(t *testing.T) {
	server, err1 := exec.LookPath("redis-server")
	cli, err2 := exec.LookPath("redis-cli")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server and redis-cli are required in CI")
		}
		t.Skip("redis-server/redis-cli not installed")
	}
	startRedis := func(extra ...string) (string, *exec.Cmd) {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		dir := t.TempDir()
		cmd := exec.Command(server, append([]string{"--port", port, "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"}, extra...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis %s did not start", addr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return addr, cmd
	}
	redisCLI := func(addr string, args ...string) string {
		t.Helper()
		host, port, _ := net.SplitHostPort(addr)
		out, err := exec.Command(cli, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	masterAddr, master := startRedis()
	repl := newTCPRelay(t, masterAddr)
	rHost, rPort, _ := net.SplitHostPort(repl.addr())
	replicaAddr, _ := startRedis("--replicaof", rHost, rPort)
	eventually(t, 10*time.Second, "replica in sync", func() bool {
		return strings.Contains(redisCLI(replicaAddr, "info", "replication"), "master_link_status:up")
	})
	front := newTCPRelay(t, masterAddr)

	var backend testenv.Backend
	for _, b := range testenv.Backends() {
		if b.DatabaseURL != "" {
			backend = testenv.Backend{Name: "postgres", DatabaseURL: b.DatabaseURL}
		}
	}
	env := baseEnv(t, backend)
	const prefix = "fo:"
	env["REDIS_URL"] = "redis://" + front.addr()
	env["FNMARKET_REDIS_PREFIX"] = prefix
	env["FNMARKET_RATE_LIMIT_PER_KEY"] = "0"
	env["FNMARKET_ROLLUP_INTERVAL"] = "2s"
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer upstream.Close()
	inst := start(t, "serve", env)
	consumer, key := setupMarket(t, inst.url, upstream.URL)

	stop := make(chan struct{})
	billed, other, wait := loadUntil(t, inst.url, key, stop)
	// Hold replication at a moment the replica has live counters (the
	// worker moves them out every 2 s, flushes bring more every 200 ms).
	liveKeys := func(addr string) string { return redisCLI(addr, "--scan", "--pattern", prefix+"*:live") }
	eventually(t, 10*time.Second, "live counters on the replica", func() bool {
		return billed.Load() > 0 && liveKeys(replicaAddr) != ""
	})
	repl.hold()
	if liveKeys(replicaAddr) == "" {
		t.Fatal("the replica had no live counters when replication was held; nothing to test")
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wait()
	// The master's worker rolls everything up and the gateway's flushes are
	// confirmed; the replica sees none of it.
	eventually(t, 20*time.Second, "every answered call rolled up before the failover", func() bool {
		return usageCalls(t, inst.url, consumer) == billed.Load()
	})
	time.Sleep(500 * time.Millisecond) // the meter drops confirmed flushes
	if liveKeys(replicaAddr) == "" {
		t.Fatal("the replica no longer holds the counters the master rolled up; nothing to test")
	}

	// Failover: the master dies, its unsent replication stream with it.
	_ = master.Process.Kill()
	_ = master.Wait()
	repl.cut()
	redisCLI(replicaAddr, "replicaof", "no", "one")
	front.switchTo(replicaAddr)

	// The promoted replica's counters are rolled up too: wait until they
	// are gone, then check nothing was counted twice.
	eventually(t, 20*time.Second, "the promoted replica's counters rolled up", func() bool {
		return liveKeys(replicaAddr) == "" && redisCLI(replicaAddr, "--scan", "--pattern", prefix+"*:batch:*") == ""
	})
	if got := usageCalls(t, inst.url, consumer); got != billed.Load() {
		t.Fatalf("usage counts %d calls after the failover, the gateway answered %d (%d other answers)", got, billed.Load(), other.Load())
	}
	c := client{t: t, base: inst.url}
	total := c.call("GET", "/api/v1/invoices/upcoming", consumer, nil, 200)["total"].(string)
	want := billing.RoundCents(decimal.NewFromInt(billed.Load()).Mul(decimal.RequireFromString("0.001")))
	if got, err := decimal.NewFromString(total); err != nil || !got.Equal(want) {
		t.Fatalf("upcoming invoice total %s, want %s for %d answered calls", total, want, billed.Load())
	}
	t.Logf("%d calls answered and billed once across the failover", billed.Load())
}
