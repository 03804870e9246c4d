package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestMain lets a test re-run this binary as a real fnmarket process
// (FNMARKET_TEST_CHILD=1), so a test can kill -9 it.
func TestMain(m *testing.M) {
	redis.SetLogger(redisLogger{slog.New(slog.NewTextHandler(io.Discard, nil))})
	if os.Getenv("FNMARKET_TEST_CHILD") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := run(ctx, append([]string{"fnmarket"}, os.Args[1:]...), os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is fnmarket running as a separate process.
type child struct {
	cmd *exec.Cmd
	url string
}

func startChild(t *testing.T, env map[string]string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// The child sees only the configuration the test gives it: never the
	// DATABASE_URL/REDIS_URL of the test run itself.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "REDIS_URL=") && !strings.HasPrefix(kv, "FNMARKET_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "FNMARKET_TEST_CHILD=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listening on (http://\S+)`)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case u := <-found:
		return &child{cmd: cmd, url: u}
	case <-time.After(60 * time.Second):
		t.Fatalf("child did not start:\n%s", logs.String())
	}
	return nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// loadUntil sends calls from several workers until stop is closed and
// counts the billable answers (status from the function) and refusals.
func loadUntil(t *testing.T, base, key string, stop <-chan struct{}) (billed, other *atomic.Int64, wait func()) {
	billed, other = &atomic.Int64{}, &atomic.Int64{}
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 10 * time.Second}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", base+"/v1/invoke/acme/echo", nil)
				req.Header.Set("X-API-Key", key)
				res, err := hc.Do(req)
				if err != nil {
					// The gateway was killed mid-call: the caller got no
					// answer, so the call may or may not be billed; the
					// test stops its load before a kill to avoid this.
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.Header.Get("X-Compute-Ms") != "" {
					billed.Add(1)
				} else {
					other.Add(1)
				}
			}
		}()
	}
	return billed, other, wg.Wait
}

func setupMarket(t *testing.T, base, upstream string) (consumer, key string) {
	c := client{t: t, base: base}
	c.publishFunction("echo", map[string]any{"type": "http", "url": upstream}, map[string]any{"per_call": "0.001", "per_compute_ms": "0"})
	consumer = c.signup("c@example.com")
	key = c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "k"}, 201)["key"].(string)
	return consumer, key
}

func usageCalls(t *testing.T, base, token string) int64 {
	c := client{t: t, base: base}
	var n int64
	for _, it := range c.call("GET", "/api/v1/usage?granularity=day", token, nil, 200)["items"].([]any) {
		n += int64(it.(map[string]any)["calls"].(float64))
	}
	return n
}

// TestGatewayKilled kills a serving process with SIGKILL right after its
// callers got their answers and checks that the restarted process (which
// replays the metering spool) counts every answered call exactly once.
func TestGatewayKilled(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer upstream.Close()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			env["FNMARKET_RATE_LIMIT_PER_KEY"] = "0"
			env["FNMARKET_ADDR"] = freeAddr(t)
			ch := startChild(t, env, "serve")
			consumer, key := setupMarket(t, ch.url, upstream.URL)
			stop := make(chan struct{})
			billed, _, wait := loadUntil(t, ch.url, key, stop)
			time.Sleep(700 * time.Millisecond)
			close(stop)
			wait()
			// Every caller has its answer: now kill -9, before the meter's
			// next flush and the worker's next roll-up can have run for all.
			if err := ch.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = ch.cmd.Wait()
			if billed.Load() == 0 {
				t.Fatal("no call answered")
			}
			ch2 := startChild(t, env, "serve")
			c := client{t: t, base: ch2.url}
			tok := c.call("POST", "/api/v1/auth/login", "", map[string]any{"email": "c@example.com", "password": "correct horse battery"}, 200)["token"].(string)
			_ = consumer
			// On the embedded default the in-process Redis dies with the
			// process: the spool keeps every flush until the database has
			// it, so the restarted process resends what Redis lost.
			eventually(t, 15*time.Second, "every answered call counted", func() bool { return usageCalls(t, ch2.url, tok) >= billed.Load() })
			time.Sleep(time.Second) // a few more roll-ups: nothing may be added twice
			if got := usageCalls(t, ch2.url, tok); got != billed.Load() {
				t.Fatalf("usage counts %d calls, the gateway answered %d", got, billed.Load())
			}
		})
	}
}

// TestRedisRestartedUnderLoad stops and restarts a real Redis (its own
// redis-server, with AOF) in the middle of load: calls keep being served,
// and every answered call is counted exactly once.
func TestRedisRestartedUnderLoad(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is required in CI")
		}
		t.Skip("redis-server not installed")
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer upstream.Close()
	dir := t.TempDir()
	port := freeAddr(t)
	_, p, _ := net.SplitHostPort(port)
	startRedis := func() *exec.Cmd {
		cmd := exec.Command(server, "--port", p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if c, err := net.Dial("tcp", port); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("redis-server did not start")
			}
			time.Sleep(20 * time.Millisecond)
		}
		return cmd
	}
	redis := startRedis()
	t.Cleanup(func() { _ = redis.Process.Kill(); _ = redis.Wait() })

	env := map[string]string{"FNMARKET_DATA_DIR": t.TempDir(), "FNMARKET_ALLOW_PRIVATE_UPSTREAMS": "true",
		"REDIS_URL": "redis://" + port, "FNMARKET_RATE_LIMIT_PER_KEY": "0", "FNMARKET_ROLLUP_INTERVAL": "200ms"}
	inst := start(t, "serve", env)
	consumer, key := setupMarket(t, inst.url, upstream.URL)
	stop := make(chan struct{})
	billed, other, wait := loadUntil(t, inst.url, key, stop)
	time.Sleep(500 * time.Millisecond)
	_ = redis.Process.Signal(syscall.SIGTERM)
	_ = redis.Wait()
	before := billed.Load()
	time.Sleep(1500 * time.Millisecond) // Redis is away
	during := billed.Load() - before
	redis = startRedis()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wait()
	if during == 0 {
		t.Errorf("no call was served while Redis was away")
	}
	eventually(t, 20*time.Second, "every answered call counted", func() bool { return usageCalls(t, inst.url, consumer) >= billed.Load() })
	time.Sleep(time.Second)
	if got := usageCalls(t, inst.url, consumer); got != billed.Load() {
		t.Fatalf("usage counts %d calls, the gateway answered %d (%d other answers)", got, billed.Load(), other.Load())
	}
	t.Logf("%d calls answered, %d of them while Redis was away; %d other answers", billed.Load(), during, other.Load())
}
