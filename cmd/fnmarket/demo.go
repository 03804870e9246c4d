package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/metering"
	"github.com/fnmarket/fnmarket/wasm/wasmtest"
)

// demoPassword is every demo account's password: the demo is for trying
// fnmarket on one's own machine, never for a server others can reach.
const demoPassword = "fnmarket demo password"

// demoConsumerEmail is the demo account that calls the demo functions.
const demoConsumerEmail = "demo-consumer@example.com"

// demoFunction is one function `serve --demo` publishes: a hand-assembled
// WebAssembly module that answers a fixed JSON document, so it works with
// no network and no toolchain.
type demoFunction struct {
	name, description, answer string
	pricing                   map[string]any
	callsPerHour              float64 // average of the seeded usage
	errorRate                 float64
}

// demoVendor is one vendor `serve --demo` creates, with its functions.
type demoVendor struct {
	email, slug, displayName string
	functions                []demoFunction
}

func demoVendors() []demoVendor {
	return []demoVendor{
		{email: "demo-vendor@example.com", slug: "northwind", displayName: "Northwind Tools", functions: []demoFunction{
			{name: "hello", description: "Answers a friendly JSON greeting. A demo function: a WebAssembly module of a few hundred bytes that runs inside fnmarket.",
				answer:       `{"message":"Hello from fnmarket!"}`,
				pricing:      map[string]any{"currency": "USD", "per_call": "0.0001", "per_compute_ms": "0.000002", "free_calls_per_month": 100},
				callsPerHour: 40, errorRate: 0.01},
			{name: "status", description: "Reports that everything is fine. A demo function answering `{\"status\":\"ok\"}`.",
				answer:       `{"status":"ok"}`,
				pricing:      map[string]any{"currency": "USD", "per_call": "0.00002", "per_compute_ms": "0.000001", "free_calls_per_month": 1000},
				callsPerHour: 90, errorRate: 0.002},
		}},
		{email: "demo-vendor2@example.com", slug: "lexicon", displayName: "Lexicon Text", functions: []demoFunction{
			{name: "quote", description: "A quotation about software, as JSON. A demo function: always the same quotation.",
				answer:       `{"quote":"Simplicity is prerequisite for reliability.","author":"Edsger W. Dijkstra"}`,
				pricing:      map[string]any{"currency": "USD", "per_call": "0.0005", "per_compute_ms": "0.00001", "free_calls_per_month": 0},
				callsPerHour: 15, errorRate: 0.03},
		}},
	}
}

// demoModule is the WebAssembly module of a demo function: it writes a JSON
// content type and answer to stdout.
func demoModule(answer string) []byte {
	return wasmtest.MinimalModule(wasmtest.Spec{Msg: "Content-Type: application/json\n\n" + answer})
}

// seedDemo publishes the demo vendors and functions through the API at base
// and records a week of usage by a demo consumer, unless a previous start
// did (the demo consumer exists). It prints the demo logins.
func (a *app) seedDemo(ctx context.Context, base string) error {
	c := demoClient{base: base, http: &http.Client{Timeout: 30 * time.Second}}
	defer func() {
		fmt.Fprintf(a.stdout, "demo: sign in as %s (consumer) or %s (vendor), password %q\n", demoConsumerEmail, demoVendors()[0].email, demoPassword)
	}()
	if _, err := c.do(ctx, "POST", "/api/v1/auth/login", "", map[string]any{"email": demoConsumerEmail, "password": demoPassword}, http.StatusOK); err == nil {
		a.log.Info("demo data already seeded")
		return nil
	}
	var fns []demoSeeded
	for _, v := range demoVendors() {
		token, err := c.signup(ctx, v.email, v.displayName)
		if err != nil {
			return err
		}
		if _, err := c.do(ctx, "POST", "/api/v1/vendor", token, map[string]any{"slug": v.slug, "display_name": v.displayName}, http.StatusCreated); err != nil {
			return err
		}
		for _, f := range v.functions {
			out, err := c.do(ctx, "POST", "/api/v1/functions", token, map[string]any{
				"name": f.name, "description": f.description,
				"backend":    map[string]any{"type": "wasm", "module_base64": base64.StdEncoding.EncodeToString(demoModule(f.answer))},
				"pricing":    f.pricing,
				"timeout_ms": 1000,
			}, http.StatusCreated)
			if err != nil {
				return err
			}
			id, _ := out["id"].(string)
			if _, err := c.do(ctx, "POST", "/api/v1/functions/"+id+"/publish", token, map[string]any{"version": 1}, http.StatusOK); err != nil {
				return err
			}
			route, err := a.catalog.Route(ctx, v.slug, f.name, 0)
			if err != nil {
				return fmt.Errorf("demo: route of %s/%s: %w", v.slug, f.name, err)
			}
			fns = append(fns, demoSeeded{fn: f, call: metering.Call{FunctionID: route.FunctionID, Version: route.Version.Version, Pricing: route.Version.Pricing}})
		}
	}
	// The consumer signs up last: its existence marks a finished seed.
	token, err := c.signup(ctx, demoConsumerEmail, "Demo Consumer")
	if err != nil {
		return err
	}
	me, err := c.do(ctx, "GET", "/api/v1/me", token, nil, http.StatusOK)
	if err != nil {
		return err
	}
	key, err := c.do(ctx, "POST", "/api/v1/keys", token, map[string]any{"name": "demo app"}, http.StatusCreated)
	if err != nil {
		return err
	}
	consumerID, _ := me["id"].(string)
	keyID, _ := key["id"].(string)
	n := a.recordDemoUsage(fns, consumerID, keyID, a.clock.Now())
	a.log.Info("demo data seeded", "vendors", len(demoVendors()), "functions", len(fns), "calls", n)
	return nil
}

type demoSeeded struct {
	fn   demoFunction
	call metering.Call
}

// recordDemoUsage meters a week of calls, hour by hour up to now, through
// the gateway's own meter, as if the demo consumer had made them: busier in
// the day than at night, a few errors, compute-ms as such modules take.
func (a *app) recordDemoUsage(fns []demoSeeded, consumerID, keyID string, now time.Time) int {
	rng := rand.New(rand.NewPCG(1, 2))
	first := now.Truncate(time.Hour).Add(-7 * 24 * time.Hour)
	n := 0
	for _, s := range fns {
		before := map[time.Time]int64{} // calls so far in each month
		for h := first; !h.After(now); h = h.Add(time.Hour) {
			daily := 1 + 0.7*math.Sin(2*math.Pi*float64(h.Hour()-9)/24)
			calls := int(s.fn.callsPerHour * daily * (0.6 + 0.8*rng.Float64()))
			month := time.Date(h.Year(), h.Month(), 1, 0, 0, 0, 0, time.UTC)
			for i := 0; i < calls; i++ {
				at := h.Add(time.Duration(rng.Int64N(int64(time.Hour))))
				if at.After(now) {
					continue
				}
				c := s.call
				c.InvocationID = fnmarket.NewID("demo")
				c.ConsumerID, c.KeyID = consumerID, keyID
				c.At = at
				c.CallsBefore = before[month]
				c.ComputeMs = 1 + int64(rng.ExpFloat64()*1.5)
				c.Billable = true
				c.Error = rng.Float64() < s.fn.errorRate
				// Priced as the gateway prices a call at its position; the
				// meter adds it to the spend counters (nothing was held).
				c.Cost = c.Pricing.CallCost(c.CallsBefore, c.ComputeMs)
				c.Free = c.Pricing.SlotAt(c.CallsBefore).Free
				a.meter.Record(c)
				before[month]++
				n++
			}
		}
	}
	return n
}

// demoClient calls fnmarket's own API over HTTP, as any client would.
type demoClient struct {
	base string
	http *http.Client
}

func (c demoClient) signup(ctx context.Context, email, name string) (string, error) {
	out, err := c.do(ctx, "POST", "/api/v1/auth/signup", "", map[string]any{"email": email, "password": demoPassword, "name": name}, http.StatusCreated)
	if err != nil {
		return "", err
	}
	token, _ := out["token"].(string)
	return token, nil
}

func (c demoClient) do(ctx context.Context, method, path, token string, body any, want int) (map[string]any, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode != want {
		return nil, fmt.Errorf("demo: %s %s answered %d: %s", method, path, res.StatusCode, raw)
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	return out, nil
}
