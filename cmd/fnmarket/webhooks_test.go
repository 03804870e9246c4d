package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestWebhooksEndToEnd: serve runs the deliverer. An endpoint created
// through the API receives its test event, signed so the specification's
// verifier accepts it with the secret shown at create, and the delivery log
// says delivered.
func TestWebhooksEndToEnd(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			var mu sync.Mutex
			var got []*http.Request
			var bodies [][]byte
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				got, bodies = append(got, r), append(bodies, body)
				mu.Unlock()
			}))
			t.Cleanup(rcv.Close)
			env := baseEnv(t, b)
			env["FNMARKET_WEBHOOK_POLL_INTERVAL"] = "100ms"
			inst := start(t, "serve", env)
			c := client{t: t, base: inst.url}
			tok := c.signup("hooks@example.com")
			ep := c.call("POST", "/api/v1/webhooks", tok, map[string]any{"url": rcv.URL + "/hook", "events": []string{"*"}}, 201)
			id := ep["id"].(string)
			ev := c.call("POST", "/api/v1/webhooks/"+id+"/test", tok, nil, 202)
			eventually(t, 10*time.Second, "the test event delivered", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) > 0
			})
			mu.Lock()
			r, body := got[0], bodies[0]
			mu.Unlock()
			wh, err := standardwebhooks.NewWebhook(ep["secret"].(string))
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(body, r.Header); err != nil || r.Header.Get("webhook-id") != ev["event_id"] {
				t.Fatalf("delivery %v %s: %v", r.Header, body, err)
			}
			eventually(t, 10*time.Second, "the delivery logged as delivered", func() bool {
				items := c.call("GET", "/api/v1/webhooks/"+id+"/deliveries", tok, nil, 200)["items"].([]any)
				return len(items) == 1 && items[0].(map[string]any)["status"] == "delivered"
			})
		})
	}
}
