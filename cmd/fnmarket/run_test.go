package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/openapicheck"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// syncBuffer collects what run writes, safely across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// instance is one fnmarket process started through run.
type instance struct {
	url string
	// metricsURL is where /metrics is served when FNMARKET_METRICS_ADDR is set.
	metricsURL string
	logs       *syncBuffer
	stop       func() error
}

// start runs `fnmarket <cmd> [flags]` on 127.0.0.1:0 with env and returns
// once it listens.
func start(t *testing.T, cmd string, env map[string]string, flags ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	done := make(chan error, 1)
	getenv := func(k string) string { return env[k] }
	go func() {
		err := run(ctx, append([]string{"fnmarket", cmd, "--addr", "127.0.0.1:0"}, flags...), getenv, pw, logs)
		_ = pw.CloseWithError(io.EOF)
		done <- err
	}()
	urlRe := regexp.MustCompile(`listening on (http://\S+)`)
	metricsRe := regexp.MustCompile(`metrics on (http://\S+)`)
	found := make(chan string, 1)
	var metricsURL string // printed before the listening line
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := metricsRe.FindStringSubmatch(sc.Text()); m != nil {
				metricsURL = m[1]
			}
			if m := urlRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	var url string
	select {
	case u, ok := <-found:
		if !ok {
			cancel()
			t.Fatalf("fnmarket %s exited before listening: %v\n%s", cmd, <-done, logs.String())
		}
		url = u
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("fnmarket %s did not start\n%s", cmd, logs.String())
	}
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("fnmarket %s did not stop", cmd)
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &instance{url: url, metricsURL: metricsURL, logs: logs, stop: stop}
}

// baseEnv is the environment for backend b: a temp data dir, and the real
// services when the backend has them (each test its own schema and prefix is
// not possible through the environment, so real runs use their own schema).
func baseEnv(t *testing.T, b testenv.Backend) map[string]string {
	env := map[string]string{"FNMARKET_DATA_DIR": t.TempDir(), "FNMARKET_ALLOW_PRIVATE_UPSTREAMS": "true"}
	if b.DatabaseURL != "" {
		dsn, cleanup := testenv.PostgresSchema(t, b.DatabaseURL)
		t.Cleanup(cleanup)
		env["DATABASE_URL"] = dsn
	}
	if b.RedisURL != "" {
		env["REDIS_URL"] = b.RedisURL
		env["FNMARKET_REDIS_PREFIX"] = "t" + testenv.RandomSuffix() + ":"
	}
	return env
}

type client struct {
	t    *testing.T
	base string
}

func (c client) call(method, path, token string, body any, want int) map[string]any {
	c.t.Helper()
	out, _ := c.do(method, path, token, body, want)
	return out
}

// signup creates an account and returns its session token.
func (c client) signup(email string) string {
	c.t.Helper()
	return c.call("POST", "/api/v1/auth/signup", "", map[string]any{"email": email, "password": "correct horse battery", "name": "Test " + email}, 201)["token"].(string)
}

// publishFunction signs up v@example.com as vendor "acme" and publishes
// acme/<name> with the given backend and pricing; it returns the vendor's
// token and the function's id.
func (c client) publishFunction(name string, backend, pricing map[string]any) (vendor, functionID string) {
	c.t.Helper()
	vendor = c.signup("v@example.com")
	c.call("POST", "/api/v1/vendor", vendor, map[string]any{"slug": "acme", "display_name": "Acme"}, 201)
	fn := c.call("POST", "/api/v1/functions", vendor, map[string]any{"name": name, "backend": backend, "pricing": pricing, "timeout_ms": 5000}, 201)
	functionID = fn["id"].(string)
	c.call("POST", "/api/v1/functions/"+functionID+"/publish", vendor, map[string]any{"version": 1}, 200)
	return vendor, functionID
}

// invoke calls a function through the gateway with an API key.
func (c client) invoke(path, key, body string) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+path, strings.NewReader(body))
	req.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("invoke %s: %v", path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res, string(raw)
}

func (c client) do(method, path, token string, body any, want int) (map[string]any, http.Header) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	openapicheck.Check(c.t, req, res, raw)
	if res.StatusCode != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, res.StatusCode, want, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out, res.Header
}

// TestServeEndToEnd starts the real program and drives the foundation's user
// flows over HTTP, then shuts it down as SIGTERM would.
func TestServeEndToEnd(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			c.call("GET", "/healthz", "", nil, 200)
			c.call("GET", "/readyz", "", nil, 200)

			vendor := c.signup("v@example.com")
			c.call("POST", "/api/v1/vendor", vendor, map[string]any{"slug": "acme", "display_name": "Acme"}, 201)
			fn := c.call("POST", "/api/v1/functions", vendor, map[string]any{
				"name": "echo", "description": "echoes",
				"backend":    map[string]any{"type": "http", "url": "http://127.0.0.1:1/echo"},
				"pricing":    map[string]any{"per_call": "0.0001", "per_compute_ms": "0.000002", "free_calls_per_month": 10},
				"timeout_ms": 2000,
			}, 201)
			id := fn["id"].(string)
			c.call("PATCH", "/api/v1/functions/"+id, vendor, map[string]any{"description": "echoes back"}, 200)
			c.call("POST", "/api/v1/functions/"+id+"/versions", vendor, map[string]any{
				"backend": map[string]any{"type": "http", "url": "http://127.0.0.1:1/echo2"},
				"pricing": map[string]any{"per_call": "0.0002", "per_compute_ms": "0"}}, 201)
			c.call("POST", "/api/v1/functions/"+id+"/publish", vendor, map[string]any{"version": 2}, 200)
			if items := c.call("GET", "/api/v1/catalog?q=echo", "", nil, 200)["items"].([]any); len(items) != 1 {
				t.Fatalf("catalog has %d items", len(items))
			}
			consumer := c.signup("c@example.com")
			me := c.call("GET", "/api/v1/me", consumer, nil, 200)
			if me["email"] != "c@example.com" {
				t.Errorf("me: %v", me)
			}
			key := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "app"}, 201)
			secret := key["key"].(string)
			c.call("DELETE", "/api/v1/keys/"+key["id"].(string), consumer, nil, 204)
			c.call("GET", "/api/v1/openapi.json", "", nil, 200)

			// Ten wrong passwords lock the account's logins, right one included.
			for i := 0; i < 10; i++ {
				c.call("POST", "/api/v1/auth/login", "", map[string]any{"email": "c@example.com", "password": fmt.Sprintf("wrong guess %d", i)}, 401)
			}
			c.call("POST", "/api/v1/auth/login", "", map[string]any{"email": "c@example.com", "password": "correct horse battery"}, 429)
			// Logging out ends the session.
			c.call("POST", "/api/v1/auth/logout", consumer, nil, 204)
			c.call("GET", "/api/v1/me", consumer, nil, 401)

			if err := inst.stop(); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			logs := inst.logs.String()
			for _, secretText := range []string{secret, "correct horse battery", vendor, consumer} {
				if strings.Contains(logs, secretText) {
					t.Errorf("a secret appears in the logs")
				}
			}
			if !strings.Contains(logs, `"msg":"stopped"`) {
				t.Errorf("no clean stop in the logs:\n%s", logs)
			}
		})
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestInvokeMeterRestart calls a function through the real gateway, sees the
// call in usage within seconds, sees a revoked key refused within 2 s, and
// after a graceful restart finds every call still counted once.
func TestInvokeMeterRestart(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "" || r.Header.Get("Authorization") != "" {
			http.Error(w, "credentials leaked upstream", 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"path":%q,"invocation":%q}`, r.URL.Path, r.Header.Get("X-Invocation-Id"))
	}))
	defer upstream.Close()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			env["FNMARKET_METRICS_ADDR"] = "127.0.0.1:0"
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			vendor, _ := c.publishFunction("echo", map[string]any{"type": "http", "url": upstream.URL + "/base"}, map[string]any{"per_call": "0.001", "per_compute_ms": "0.000002", "free_calls_per_month": 3})
			consumer := c.signup("c@example.com")
			key := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "app"}, 201)
			secret := key["key"].(string)

			const calls = 10
			var computeMs int64
			for i := 0; i < calls; i++ {
				res, body := c.invoke("/v1/invoke/acme/echo/items/7?x=1", secret, `{"n":1}`)
				if res.StatusCode != 200 || !strings.Contains(body, `"path":"/base/items/7"`) {
					t.Fatalf("invoke: %d %s", res.StatusCode, body)
				}
				ms, err := strconv.ParseInt(res.Header.Get("X-Compute-Ms"), 10, 64)
				if err != nil || ms < 1 || res.Header.Get("X-Invocation-Id") == "" {
					t.Fatalf("headers: %v", res.Header)
				}
				computeMs += ms
			}
			if res, _ := c.invoke("/v1/invoke/acme/nope", secret, ""); res.StatusCode != 404 {
				t.Errorf("unknown function: %d", res.StatusCode)
			}
			if res, _ := c.invoke("/v1/invoke/acme/echo", "fnm_not_a_key", ""); res.StatusCode != 401 {
				t.Errorf("bad key: %d", res.StatusCode)
			}
			usageTotals := func(token, path string) (calls, ms int64) {
				out := c.call("GET", path, token, nil, 200)
				for _, it := range out["items"].([]any) {
					row := it.(map[string]any)
					calls += int64(row["calls"].(float64))
					ms += int64(row["compute_ms"].(float64))
				}
				return
			}
			eventually(t, 10*time.Second, "usage shows the calls", func() bool {
				n, ms := usageTotals(consumer, "/api/v1/usage?granularity=hour")
				return n == calls && ms == computeMs
			})
			if n, _ := usageTotals(vendor, "/api/v1/vendor/usage?granularity=day"); n != calls {
				t.Errorf("vendor usage shows %d calls, want %d", n, calls)
			}
			if n, _ := usageTotals(vendor, "/api/v1/usage"); n != 0 {
				t.Errorf("the vendor's own consumer usage shows %d calls of someone else's", n)
			}
			// Metrics name vendors and functions: not on the public port,
			// only on FNMARKET_METRICS_ADDR.
			if res, err := http.Get(inst.url + "/metrics"); err != nil {
				t.Fatal(err)
			} else if res.Body.Close(); res.StatusCode != http.StatusNotFound {
				t.Errorf("GET /metrics on the public port: %d, want 404", res.StatusCode)
			}
			if inst.metricsURL == "" {
				t.Fatal("no metrics address printed")
			}
			res, err := http.Get(inst.metricsURL)
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(res.Body)
			res.Body.Close()
			for _, want := range []string{"fnmarket_gateway_calls_total", "fnmarket_gateway_call_duration_seconds", "fnmarket_metering_backlog_calls", "fnmarket_rollup_passes_total", "fnmarket_webhook_attempts_total"} {
				if !strings.Contains(string(metrics), want) {
					t.Errorf("/metrics has no %s", want)
				}
			}
			me := c.call("GET", "/api/v1/me", consumer, nil, 200)
			for _, secretish := range []string{me["id"].(string), key["id"].(string), key["prefix"].(string)} {
				if strings.Contains(string(metrics), secretish) {
					t.Errorf("/metrics carries a consumer or key label (%s)", secretish)
				}
			}
			c.call("DELETE", "/api/v1/keys/"+key["id"].(string), consumer, nil, 204)
			eventually(t, 2*time.Second, "revoked key refused", func() bool {
				res, _ := c.invoke("/v1/invoke/acme/echo", secret, "")
				return res.StatusCode == 401
			})
			if err := inst.stop(); err != nil {
				t.Fatal(err)
			}
			inst2 := start(t, "serve", env)
			c2 := client{t: t, base: inst2.url}
			login := c2.call("POST", "/api/v1/auth/login", "", map[string]any{"email": "c@example.com", "password": "correct horse battery"}, 200)["token"].(string)
			c = c2
			n, ms := usageTotals(login, "/api/v1/usage?granularity=day")
			if n != calls || ms != computeMs {
				t.Errorf("after restart: %d calls %d ms, want %d and %d", n, ms, calls, computeMs)
			}
			keys := c2.call("GET", "/api/v1/keys", login, nil, 200)["items"].([]any)
			if keys[0].(map[string]any)["last_used_at"] == nil {
				t.Error("key has no last_used_at after use")
			}
		})
	}
}

// TestMigrateAndProbe runs the two operator commands the README and the
// container health checks rely on.
func TestMigrateAndProbe(t *testing.T) {
	env := map[string]string{"FNMARKET_DATA_DIR": t.TempDir()}
	getenv := func(k string) string { return env[k] }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"fnmarket", "migrate"}, getenv, &out, io.Discard); err != nil || !strings.Contains(out.String(), "migrations applied") {
		t.Fatalf("migrate: %v %q", err, out.String())
	}
	inst := start(t, "serve", env)
	if err := run(context.Background(), []string{"fnmarket", "probe", inst.url + "/readyz"}, getenv, io.Discard, io.Discard); err != nil {
		t.Errorf("probe of a ready server: %v", err)
	}
	if err := run(context.Background(), []string{"fnmarket", "probe", inst.url + "/no-such-page"}, getenv, io.Discard, io.Discard); err == nil {
		t.Error("probe of a 404 succeeded")
	}
}
