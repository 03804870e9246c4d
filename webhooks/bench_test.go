package webhooks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/webhooks"
)

// benchSetup is one account with one "*" endpoint at a local receiver that
// answers 200 and calls arrived with each webhook-id.
func benchSetup(b *testing.B, be testenv.Backend, arrived func(id string)) (*database.DB, string) {
	db := testenv.DB(b, be)
	acc, err := accounts.NewStore(db, nil, bcrypt.MinCost).SignUp(context.Background(), "bench@example.com", "Bench", "correct horse battery")
	if err != nil {
		b.Fatal(err)
	}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { arrived(r.Header.Get("webhook-id")) }))
	b.Cleanup(rcv.Close)
	if _, err := webhooks.NewStore(db, nil, true).CreateEndpoint(context.Background(), acc.ID, rcv.URL, []string{"*"}); err != nil {
		b.Fatal(err)
	}
	return db, acc.ID
}

// BenchmarkDeliveryThroughput: one worker drains b.N events already in the
// outbox (fan-out, claim, sign, POST, record); deliveries/s per worker.
func BenchmarkDeliveryThroughput(b *testing.B) {
	for _, be := range testenv.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db, acc := benchSetup(b, be, func(string) {})
			for range b.N {
				if _, _, err := webhooks.Enqueue(db.DB, webhooks.Event{AccountID: acc, Type: webhooks.TypeInvoicePaid, Data: map[string]any{"invoice_id": "inv_x"}}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			d := webhooks.NewDeliverer(webhooks.DeliverConfig{DB: db, AllowPrivate: true})
			b.ResetTimer()
			start := time.Now()
			delivered := 0
			for delivered < b.N {
				st, err := d.RunOnce(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				delivered += st.Delivered
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkEnqueueToDelivery: events committed one every 2 ms while one
// worker runs at its poll interval; the time from each event's commit to
// its arrival at the receiver, p50 and p99.
func BenchmarkEnqueueToDelivery(b *testing.B) {
	for _, be := range testenv.Backends() {
		for _, poll := range []time.Duration{time.Second, 100 * time.Millisecond} {
			b.Run(be.Name+"/poll="+poll.String(), func(b *testing.B) {
				var mu sync.Mutex
				committed := map[string]time.Time{}
				var lat []time.Duration
				done := make(chan struct{})
				db, acc := benchSetup(b, be, func(id string) {
					now := time.Now()
					mu.Lock()
					defer mu.Unlock()
					if t, ok := committed[id]; ok {
						lat = append(lat, now.Sub(t))
						delete(committed, id)
						if len(lat) == b.N {
							close(done)
						}
					}
				})
				d := webhooks.NewDeliverer(webhooks.DeliverConfig{DB: db, AllowPrivate: true, Clock: fnmarket.SystemClock{}})
				ctx, cancel := context.WithCancel(context.Background())
				stopped := make(chan struct{})
				go func() { d.Run(ctx, poll); close(stopped) }()
				b.ResetTimer()
				tick := time.NewTicker(2 * time.Millisecond)
				for range b.N {
					<-tick.C
					mu.Lock() // held over the commit so the arrival always finds the time
					id, _, err := webhooks.Enqueue(db.DB, webhooks.Event{AccountID: acc, Type: webhooks.TypeKeyRevoked}, time.Now())
					committed[id] = time.Now()
					mu.Unlock()
					if err != nil {
						b.Fatal(err)
					}
				}
				tick.Stop()
				<-done
				b.StopTimer()
				cancel()
				<-stopped
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			})
		}
	}
}
