package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestConcurrentCallsBilledExactly sends thousands of concurrent calls of
// random duration through the real gateway and Redis, then rolls up and
// bills, and checks the invoice equals what the answers' X-Compute-Ms say,
// computed here independently of the pricing code.
func TestConcurrentCallsBilledExactly(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := strconv.Atoi(r.URL.Query().Get("sleep_us"))
		time.Sleep(time.Duration(d) * time.Microsecond)
		if r.URL.Query().Get("fail") == "1" {
			http.Error(w, "boom", 500)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer upstream.Close()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			env["FNMARKET_RATE_LIMIT_PER_KEY"] = "0"
			env["FNMARKET_ROLLUP_INTERVAL"] = "300ms"
			// Admission never decides locally here (a busy -race run must
			// not look like Redis away): every position is Redis's.
			env["FNMARKET_ADMISSION_TIMEOUT"] = "5s"
			monthAtStart := time.Now().UTC().Format("2006-01")
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			c.publishFunction("work", map[string]any{"type": "http", "url": upstream.URL}, map[string]any{"per_call": "0.0013", "per_compute_ms": "0.000137", "free_calls_per_month": 100})
			consumer := c.signup("c@example.com")
			secret := c.call("POST", "/api/v1/keys", consumer, map[string]any{"name": "load"}, 201)["key"].(string)

			const workers, perWorker = 32, 64
			const calls = workers * perWorker
			var sumMs, answered atomic.Int64
			var costMu sync.Mutex
			sumCost := decimal.Zero
			var wg sync.WaitGroup
			tr := &http.Transport{MaxIdleConnsPerHost: workers}
			hc := &http.Client{Transport: tr}
			errs := make(chan error, workers)
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(seed uint64) {
					defer wg.Done()
					r := rand.New(rand.NewPCG(seed, 7))
					for i := 0; i < perWorker; i++ {
						url := fmt.Sprintf("%s/v1/invoke/acme/work?sleep_us=%d&fail=%d", inst.url, r.IntN(4000), b2i(r.IntN(10) == 0))
						req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte("x")))
						req.Header.Set("Authorization", "Bearer "+secret)
						res, err := hc.Do(req)
						if err != nil {
							errs <- err
							return
						}
						res.Body.Close()
						if res.StatusCode != 200 && res.StatusCode != 500 {
							errs <- fmt.Errorf("status %d", res.StatusCode)
							return
						}
						ms, err := strconv.ParseInt(res.Header.Get("X-Compute-Ms"), 10, 64)
						if err != nil || ms < 1 {
							errs <- fmt.Errorf("X-Compute-Ms %q", res.Header.Get("X-Compute-Ms"))
							return
						}
						cost, ok := strings.CutSuffix(res.Header.Get("X-Cost"), " USD")
						d, err := decimal.NewFromString(cost)
						if !ok || err != nil {
							errs <- fmt.Errorf("X-Cost %q", res.Header.Get("X-Cost"))
							return
						}
						costMu.Lock()
						sumCost = sumCost.Add(d)
						costMu.Unlock()
						sumMs.Add(ms)
						answered.Add(1)
					}
				}(uint64(w))
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Independently: every answered call billed, the first 100 free of per_call.
			exact := decimal.RequireFromString("0.0013").Mul(decimal.NewFromInt(answered.Load() - 100)).
				Add(decimal.RequireFromString("0.000137").Mul(decimal.NewFromInt(sumMs.Load())))
			// And what the answers said they cost adds up to it exactly.
			if !sumCost.Equal(exact) {
				t.Fatalf("the answers' X-Cost add up to %s, want %s", sumCost, exact)
			}
			want := exact.RoundBank(2)

			// The upcoming invoice shows it live (Redis counts included) once
			// the gateway's 200 ms metering flush has run.
			var got string
			eventually(t, 5*time.Second, "upcoming invoice total", func() bool {
				got = c.call("GET", "/api/v1/invoices/upcoming", consumer, nil, 200)["total"].(string)
				return decimal.RequireFromString(got).Equal(want)
			})
			if err := inst.stop(); err != nil {
				t.Fatal(err)
			}
			if now := time.Now().UTC().Format("2006-01"); now != monthAtStart {
				t.Skip("the test crossed a month boundary; its calls span two invoices")
			}
			var out bytes.Buffer
			bill := func(args ...string) error {
				return run(context.Background(), append([]string{"fnmarket", "bill"}, args...), func(k string) string { return env[k] }, &out, &bytes.Buffer{})
			}
			if err := bill("--period", monthAtStart); err == nil || !strings.Contains(err.Error(), "not over") {
				t.Errorf("billing the running month without --through now: %v, want a refusal saying it is not over", err)
			}
			if err := bill("--period", "2026-13"); err == nil || !strings.Contains(err.Error(), "--period must be a month") {
				t.Errorf("a bad period: %v", err)
			}
			for i := 0; i < 2; i++ { // billing twice changes nothing
				out.Reset()
				if err := run(context.Background(), []string{"fnmarket", "bill", "--period", monthAtStart, "--through", "now"}, func(k string) string { return env[k] }, &out, &bytes.Buffer{}); err != nil {
					t.Fatalf("bill: %v", err)
				}
			}
			if !strings.Contains(out.String(), "0 invoices created") {
				t.Errorf("second bill run created invoices: %s", out.String())
			}
			inst2 := start(t, "serve", env)
			c2 := client{t: t, base: inst2.url}
			tok := c2.call("POST", "/api/v1/auth/login", "", map[string]any{"email": "c@example.com", "password": "correct horse battery"}, 200)["token"].(string)
			items := c2.call("GET", "/api/v1/invoices", tok, nil, 200)["items"].([]any)
			if len(items) != 1 {
				t.Fatalf("%d invoices, want 1", len(items))
			}
			inv := items[0].(map[string]any)
			if got := decimal.RequireFromString(inv["total"].(string)); !got.Equal(want) || inv["total_cents"] != float64(want.Shift(2).IntPart()) {
				t.Errorf("invoice total %v (%v cents), want %s", inv["total"], inv["total_cents"], want)
			}
			// An operator cannot mark a draft paid: only open invoices move.
			err := run(context.Background(), []string{"fnmarket", "invoice", "--id", inv["id"].(string), "--status", "paid"}, func(k string) string { return env[k] }, &out, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "is draft and cannot become paid") {
				t.Errorf("marking a draft paid: %v, want a refusal", err)
			}
			line := inv["lines"].([]any)[0].(map[string]any)
			if line["calls"] != float64(calls) || line["free_calls"] != float64(100) || line["compute_ms"] != float64(sumMs.Load()) {
				t.Errorf("line %v, want %d calls, 100 free, %d ms", line, calls, sumMs.Load())
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
