package main

import (
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestServeDemo: `serve --demo` on a fresh install shows a living
// marketplace (vendors, working WebAssembly functions, a week of usage for
// the charts), and a restart on the same data seeds nothing twice.
func TestServeDemo(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			env := baseEnv(t, b)
			delete(env, "FNMARKET_ALLOW_PRIVATE_UPSTREAMS") // as on a fresh install
			inst := start(t, "serve", env, "--demo")
			waitDemoSeeded(t, inst)
			c := client{t: t, base: inst.url}
			m := regexp.MustCompile(`"demo data seeded".*"calls":(\d+)`).FindStringSubmatch(inst.logs.String())
			if m == nil {
				t.Fatalf("no demo seeding in the logs:\n%s", inst.logs.String())
			}
			seeded, _ := strconv.ParseInt(m[1], 10, 64)
			if seeded < 1000 {
				t.Errorf("demo seeded %d calls, want a week's worth", seeded)
			}
			var names []string
			for _, it := range c.call("GET", "/api/v1/catalog", "", nil, 200)["items"].([]any) {
				names = append(names, it.(map[string]any)["vendor"].(string)+"/"+it.(map[string]any)["name"].(string))
			}
			if len(names) < 3 {
				t.Fatalf("catalog after --demo: %v, want the demo functions", names)
			}

			token := c.call("POST", "/api/v1/auth/login", "", map[string]any{"email": demoConsumerEmail, "password": demoPassword}, 200)["token"].(string)
			// Every demo function answers, offline.
			key := c.call("POST", "/api/v1/keys", token, map[string]any{"name": "test"}, 201)["key"].(string)
			for _, name := range names {
				res, body := c.invoke("/v1/invoke/"+name, key, "")
				if res.StatusCode != 200 || !strings.HasPrefix(body, "{") || res.Header.Get("Content-Type") != "application/json" {
					t.Errorf("calling demo function %s: %d %q %q", name, res.StatusCode, res.Header.Get("Content-Type"), body)
				}
			}
			want := seeded + int64(len(names))
			days := map[string]bool{}
			eventually(t, 20*time.Second, "the demo usage and the test's calls in usage", func() bool {
				got, d := usageTotal(c, token)
				days = d
				return got == want
			})
			if len(days) < 7 {
				t.Errorf("demo usage spans %d days, want a week for the charts", len(days))
			}
			// The seeded calls are priced as the gateway prices calls: a
			// paid demo function (no free calls) makes the month cost money.
			if up := c.call("GET", "/api/v1/invoices/upcoming", token, nil, 200); up["subtotal"] == "0.00" {
				t.Errorf("the demo consumer's month costs nothing: %v", up)
			}
			vendor := c.call("POST", "/api/v1/auth/login", "", map[string]any{"email": demoVendors()[0].email, "password": demoPassword}, 200)["token"].(string)
			if items := c.call("GET", "/api/v1/vendor/usage?granularity=day", vendor, nil, 200)["items"].([]any); len(items) == 0 {
				t.Error("the demo vendor sees no usage of its functions")
			}
			if err := inst.stop(); err != nil {
				t.Fatal(err)
			}

			again := start(t, "serve", env, "--demo")
			waitDemoSeeded(t, again)
			if !strings.Contains(again.logs.String(), "demo data already seeded") {
				t.Errorf("restart with --demo did not notice the demo data:\n%s", again.logs.String())
			}
			c2 := client{t: t, base: again.url}
			if n := len(c2.call("GET", "/api/v1/catalog", "", nil, 200)["items"].([]any)); n != len(names) {
				t.Errorf("catalog after restart has %d functions, want %d", n, len(names))
			}
			token = c2.call("POST", "/api/v1/auth/login", "", map[string]any{"email": demoConsumerEmail, "password": demoPassword}, 200)["token"].(string)
			eventually(t, 20*time.Second, "usage unchanged by the restart", func() bool {
				got, _ := usageTotal(c2, token)
				return got == want
			})
		})
	}
}

// usageTotal sums a consumer's calls over every page of daily usage, and
// says which days have any.
func usageTotal(c client, token string) (int64, map[string]bool) {
	c.t.Helper()
	var total int64
	days := map[string]bool{}
	cursor := ""
	for {
		from := time.Now().UTC().Add(-9 * 24 * time.Hour).Format(time.RFC3339)
		out := c.call("GET", "/api/v1/usage?granularity=day&from="+url.QueryEscape(from)+"&cursor="+url.QueryEscape(cursor), token, nil, 200)
		for _, it := range out["items"].([]any) {
			row := it.(map[string]any)
			total += int64(row["calls"].(float64))
			days[row["period_start"].(string)] = true
		}
		cursor, _ = out["next_cursor"].(string)
		if cursor == "" {
			return total, days
		}
	}
}

// waitDemoSeeded waits for a `serve --demo` to finish seeding (or to find
// its data already there): seeding runs after the server listens, through
// its own API, and hashes a few passwords, which takes a while under -race.
func waitDemoSeeded(t *testing.T, inst *instance) {
	t.Helper()
	eventually(t, 3*time.Minute, "demo data seeded", func() bool {
		logs := inst.logs.String()
		if strings.Contains(logs, "seeding demo data failed") {
			t.Fatalf("seeding failed:\n%s", logs)
		}
		return strings.Contains(logs, "demo data seeded") || strings.Contains(logs, "demo data already seeded")
	})
}
