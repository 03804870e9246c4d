package webhooks_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is a real HTTP server that records what it gets and answers
// with the statuses in answers, one per request (the last one repeats).
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answers []int
}

func newReceiver(t *testing.T, answers ...int) *receiver {
	r := &receiver{answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{header: req.Header.Clone(), body: b})
		code := 200
		if len(r.answers) > 0 {
			code = r.answers[0]
			if len(r.answers) > 1 {
				r.answers = r.answers[1:]
			}
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

type env struct {
	t       *testing.T
	db      *database.DB
	clock   *fnmarket.TestClock
	store   *webhooks.Store
	deliver *webhooks.Deliverer
	account string
}

func newEnv(t *testing.T, b testenv.Backend) *env {
	db := testenv.DB(t, b)
	clock := fnmarket.NewTestClock(time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC))
	acc, err := accounts.NewStore(db, clock, bcrypt.MinCost).SignUp(t.Context(), "owner@example.com", "Owner", "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, db: db, clock: clock, account: acc.ID,
		store:   webhooks.NewStore(db, clock, true),
		deliver: webhooks.NewDeliverer(webhooks.DeliverConfig{DB: db, Clock: clock, AllowPrivate: true, Timeout: 300 * time.Millisecond})}
}

func (e *env) endpoint(url string, events ...string) webhooks.Endpoint {
	e.t.Helper()
	ep, err := e.store.CreateEndpoint(e.t.Context(), e.account, url, events)
	if err != nil {
		e.t.Fatal(err)
	}
	return ep
}

func (e *env) enqueue(typ string) string {
	e.t.Helper()
	id, ok, err := webhooks.Enqueue(e.db.DB, webhooks.Event{AccountID: e.account, Type: typ, Data: map[string]any{"n": 1}}, e.clock.Now())
	if err != nil || !ok {
		e.t.Fatalf("enqueue: %v %v", ok, err)
	}
	return id
}

func (e *env) pass() webhooks.PassStats {
	e.t.Helper()
	st, err := e.deliver.RunOnce(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func (e *env) deliveries(ep string) []webhooks.Delivery {
	e.t.Helper()
	ds, err := e.store.Deliveries(e.t.Context(), e.account, ep, "", 100)
	if err != nil {
		e.t.Fatal(err)
	}
	return ds
}

func (e *env) payload(eventID string) string {
	var p string
	if err := e.db.Raw("SELECT payload FROM webhook_events WHERE id = ?", eventID).Scan(&p).Error; err != nil {
		e.t.Fatal(err)
	}
	return p
}

// TestDeliverySignedAndRetriedWithSameID: a receiver answering 500 then 200
// gets the event twice, 5 s apart on the clock, with the same webhook-id,
// the outbox payload byte for byte, and signatures an independent verifier
// accepts; endpoints not subscribed to the type get nothing, "*" gets it.
func TestDeliverySignedAndRetriedWithSameID(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			flaky, other, all := newReceiver(t, 500, 200), newReceiver(t), newReceiver(t)
			ep := e.endpoint(flaky.URL, webhooks.TypeInvoicePaid)
			e.endpoint(other.URL, webhooks.TypeKeyRevoked)
			e.endpoint(all.URL, "*")
			id := e.enqueue(webhooks.TypeInvoicePaid)

			if st := e.pass(); st.Events != 1 || st.Sent != 2 || st.Delivered != 1 {
				t.Fatalf("first pass %+v, want 1 event, 2 attempts, 1 delivered", st)
			}
			ds := e.deliveries(ep.ID)
			if len(ds) != 1 || ds[0].Status != webhooks.StatusPending || ds[0].Attempts != 1 || ds[0].LastStatusCode == nil || *ds[0].LastStatusCode != 500 ||
				ds[0].NextAttemptAt == nil || !ds[0].NextAttemptAt.Equal(e.clock.Now().Add(5*time.Second)) || ds[0].EventID != id {
				t.Fatalf("after a 500: %+v", ds)
			}
			if st := e.pass(); st.Sent != 0 {
				t.Fatalf("a retry went before its time: %+v", st)
			}
			e.clock.Advance(5 * time.Second)
			if st := e.pass(); st.Sent != 1 || st.Delivered != 1 {
				t.Fatalf("retry pass %+v", st)
			}
			ds = e.deliveries(ep.ID)
			if ds[0].Status != webhooks.StatusDelivered || ds[0].Attempts != 2 || *ds[0].LastStatusCode != 200 || ds[0].NextAttemptAt != nil {
				t.Fatalf("after the 200: %+v", ds[0])
			}
			got := flaky.requests()
			if len(got) != 2 {
				t.Fatalf("receiver got %d requests, want 2", len(got))
			}
			want := e.payload(id)
			for i, r := range got {
				if r.header.Get("webhook-id") != id || string(r.body) != want || r.header.Get("Content-Type") != "application/json" {
					t.Fatalf("attempt %d: id %q body %s, want %q %s", i, r.header.Get("webhook-id"), r.body, id, want)
				}
				if err := verify(ep.Secret, r.header, r.body, e.clock.Now()); err != nil {
					t.Fatalf("attempt %d: %v", i, err)
				}
				if err := verify(webhooks.NewSecret(), r.header, r.body, e.clock.Now()); err == nil {
					t.Fatal("another secret verified the signature")
				}
			}
			if got[0].header.Get("webhook-timestamp") == got[1].header.Get("webhook-timestamp") {
				t.Fatal("the retry carried the first attempt's timestamp, not its own")
			}
			if len(other.requests()) != 0 || len(all.requests()) != 1 {
				t.Fatalf("unsubscribed got %d, \"*\" got %d; want 0 and 1", len(other.requests()), len(all.requests()))
			}
		})
	}
}

// TestBackoffThenFailedThenDisabled: an endpoint that always answers 500 is
// tried at 0, +5 s, +5 min, +30 min, +2 h, +5 h, +10 h, +10 h, then the
// delivery fails; once every attempt has failed for 5 days the endpoint is
// disabled with a reason its owner reads, and nothing more is sent.
func TestBackoffThenFailedThenDisabled(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			down := newReceiver(t, 500)
			ep := e.endpoint(down.URL, "*")
			e.enqueue(webhooks.TypeInvoiceIssued)
			start := e.clock.Now()
			e.pass()
			for i, wait := range webhooks.Backoff {
				e.clock.Advance(wait - time.Second)
				if st := e.pass(); st.Sent != 0 {
					t.Fatalf("attempt %d went a second early", i+2)
				}
				e.clock.Advance(time.Second)
				if st := e.pass(); st.Sent != 1 {
					t.Fatalf("attempt %d did not go after %s", i+2, wait)
				}
			}
			ds := e.deliveries(ep.ID)
			if ds[0].Status != webhooks.StatusFailed || ds[0].Attempts != 8 || ds[0].NextAttemptAt != nil || !strings.Contains(ds[0].LastError, "500") {
				t.Fatalf("after 8 attempts: %+v", ds[0])
			}
			if span := e.clock.Now().Sub(start); span < 24*time.Hour {
				t.Fatalf("retries spanned %s, want over 24 h", span)
			}
			// One event a day keeps failing until five days after the first failure.
			for e.clock.Now().Sub(start) < webhooks.DisableAfter {
				e.clock.Advance(12 * time.Hour)
				e.enqueue(webhooks.TypeInvoiceIssued)
				e.pass()
			}
			eps, err := e.store.Endpoints(t.Context(), e.account)
			if err != nil || len(eps) != 1 || eps[0].DisabledAt == nil || !strings.Contains(eps[0].DisabledReason, "failed for 5 days") {
				t.Fatalf("endpoint after 5 days of failures: %+v %v", eps, err)
			}
			n := len(down.requests())
			e.enqueue(webhooks.TypeInvoiceIssued)
			e.clock.Advance(24 * time.Hour)
			e.pass()
			if len(down.requests()) != n {
				t.Fatal("a disabled endpoint was sent an event")
			}
			for _, d := range e.deliveries(ep.ID) {
				if d.Status == webhooks.StatusPending {
					t.Fatalf("a disabled endpoint keeps a pending delivery: %+v", d)
				}
			}
			if c := e.deliver.Counts(); c.Disabled != 1 || c.GaveUp < 1 || c.Delivered != 0 || c.Attempts != int64(n) {
				t.Fatalf("counts %+v after %d requests", c, n)
			}
			if err := e.store.RetryDelivery(t.Context(), e.account, ep.ID, ds[0].ID); fnmarket.ErrorCode(err) != fnmarket.ECONFLICT {
				t.Fatalf("retry on a disabled endpoint: %v, want conflict", err)
			}

			// Its owner enables it again: new events go to it, a failed
			// delivery can be retried, and its failing clock starts over
			// (one more failure does not disable it at once). Another
			// account cannot enable it.
			if _, err := e.store.EnableEndpoint(t.Context(), "acct_other", ep.ID); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Fatalf("another account enabling the endpoint: %v, want not found", err)
			}
			en, err := e.store.EnableEndpoint(t.Context(), e.account, ep.ID)
			if err != nil || en.DisabledAt != nil || en.DisabledReason != "" {
				t.Fatalf("enabled endpoint %+v %v", en, err)
			}
			if err := e.store.RetryDelivery(t.Context(), e.account, ep.ID, ds[0].ID); err != nil {
				t.Fatalf("retry after enabling: %v", err)
			}
			e.enqueue(webhooks.TypeInvoiceIssued)
			e.pass()
			if got := len(down.requests()); got != n+2 {
				t.Fatalf("%d requests after enabling (the retried delivery and a new event), want %d", got, n+2)
			}
			if eps, err := e.store.Endpoints(t.Context(), e.account); err != nil || eps[0].DisabledAt != nil {
				t.Fatalf("one failure after enabling disabled the endpoint again: %+v %v", eps, err)
			}
		})
	}
}

// TestTimeoutRedirectAndPrivateAddress: an answer later than the timeout, a
// redirect (not followed) and an address the dial guard refuses all count
// as failed attempts; the private-address guard also refuses at create.
func TestTimeoutRedirectAndPrivateAddress(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			release := make(chan struct{})
			slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(slow.Close)
			t.Cleanup(func() { close(release) })
			target := newReceiver(t)
			redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
			t.Cleanup(redirect.Close)
			epSlow := e.endpoint(slow.URL, "*")
			epRedirect := e.endpoint(redirect.URL, "*")
			e.enqueue(webhooks.TypeKeyRevoked)
			if st := e.pass(); st.Sent != 2 || st.Delivered != 0 {
				t.Fatalf("pass %+v", st)
			}
			if d := e.deliveries(epSlow.ID)[0]; d.Status != webhooks.StatusPending || d.LastStatusCode != nil || !strings.Contains(d.LastError, "no answer within") {
				t.Fatalf("timed-out delivery %+v", d)
			}
			if d := e.deliveries(epRedirect.ID)[0]; d.Status != webhooks.StatusPending || d.LastStatusCode == nil || *d.LastStatusCode != 302 {
				t.Fatalf("redirected delivery %+v", d)
			}
			if n := len(target.requests()); n != 0 {
				t.Fatalf("the redirect was followed: its target got %d requests", n)
			}

			guarded := webhooks.NewStore(e.db, e.clock, false)
			for _, u := range []string{target.URL, strings.Replace(target.URL, "http:", "https:", 1), "https://localhost/hook", "https://10.0.0.1/hook", "https://[::1]/x", "ftp://example.com/"} {
				if _, err := guarded.CreateEndpoint(t.Context(), e.account, u, []string{"*"}); fnmarket.ErrorCode(err) != fnmarket.EINVALID {
					t.Fatalf("create %s without private upstreams: %v, want invalid_input", u, err)
				}
			}
			// At dial: an endpoint accepted earlier (DNS answered a public
			// address then, or private upstreams were allowed) is refused on
			// every connection by a deliverer that does not allow them.
			before := len(target.requests())
			ep := e.endpoint(target.URL, "*")
			strict := webhooks.NewDeliverer(webhooks.DeliverConfig{DB: e.db, Clock: e.clock, Timeout: time.Second})
			e.enqueue(webhooks.TypeCreditsAdded)
			if _, err := strict.RunOnce(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n := len(target.requests()); n != before {
				t.Fatal("the dial guard let a delivery reach a loopback address")
			}
			if d := e.deliveries(ep.ID)[0]; d.Status != webhooks.StatusPending || d.Attempts != 1 || !strings.Contains(d.LastError, "refused") {
				t.Fatalf("guarded delivery %+v", d)
			}
		})
	}
}

// TestDeletedEndpointGetsNothing: an endpoint deleted after its deliveries
// were made, or before an event, is sent nothing; its log stays readable to
// no route (not found), and another account never sees the endpoint.
func TestDeletedEndpointGetsNothing(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			r := newReceiver(t)
			ep := e.endpoint(r.URL, "*")
			e.enqueue(webhooks.TypeInvoicePaid)
			if _, err := e.deliver.FanOut(t.Context()); err != nil {
				t.Fatal(err)
			}
			other, err := accounts.NewStore(e.db, e.clock, bcrypt.MinCost).SignUp(t.Context(), "other@example.com", "Other", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			if err := e.store.DeleteEndpoint(t.Context(), other.ID, ep.ID); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Fatalf("another account deleted the endpoint: %v", err)
			}
			if err := e.store.DeleteEndpoint(t.Context(), e.account, ep.ID); err != nil {
				t.Fatal(err)
			}
			e.enqueue(webhooks.TypeInvoicePaid)
			e.clock.Advance(time.Minute)
			if st := e.pass(); st.Sent != 0 || len(r.requests()) != 0 {
				t.Fatalf("a deleted endpoint was sent %d requests (%+v)", len(r.requests()), st)
			}
			if eps, _ := e.store.Endpoints(t.Context(), e.account); len(eps) != 0 {
				t.Fatalf("a deleted endpoint is listed: %+v", eps)
			}
			if err := e.store.DeleteEndpoint(t.Context(), e.account, ep.ID); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Fatalf("deleting twice: %v", err)
			}
		})
	}
}

// TestSendTestAndRetry: the test route's event goes to its endpoint only
// (even one not subscribed to it); a failed delivery retried by its owner
// is sent again at once with the same webhook-id.
func TestSendTestAndRetry(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b)
			r, bystander := newReceiver(t, 503, 200), newReceiver(t)
			ep := e.endpoint(r.URL, webhooks.TypeInvoicePaid)
			e.endpoint(bystander.URL, "*")
			id, err := e.store.SendTest(t.Context(), e.account, ep.ID)
			if err != nil {
				t.Fatal(err)
			}
			e.pass()
			if len(bystander.requests()) != 0 {
				t.Fatal("a test event reached another endpoint")
			}
			d := e.deliveries(ep.ID)[0]
			if d.Type != webhooks.TypeTest || d.Status != webhooks.StatusPending || d.EventID != id {
				t.Fatalf("test delivery %+v", d)
			}
			if err := e.store.RetryDelivery(t.Context(), e.account, ep.ID, d.ID); err != nil {
				t.Fatal(err)
			}
			if st := e.pass(); st.Delivered != 1 {
				t.Fatalf("the retried delivery did not go at once: %+v", st)
			}
			got := r.requests()
			if len(got) != 2 || got[0].header.Get("webhook-id") != id || got[1].header.Get("webhook-id") != id || !strings.Contains(string(got[1].body), `"type":"webhook.test"`) {
				t.Fatalf("requests %+v", got)
			}
			if err := e.store.RetryDelivery(t.Context(), e.account, ep.ID, d.ID); fnmarket.ErrorCode(err) != fnmarket.ECONFLICT {
				t.Fatalf("retrying a delivered delivery: %v, want conflict", err)
			}
		})
	}
}

// TestTwoDeliverersShareTheOutbox: on PostgreSQL, two deliverers passing at
// the same time over a burst of events send each delivery exactly once.
func TestTwoDeliverersShareTheOutbox(t *testing.T) {
	if testenv.PostgresURL() == "" {
		t.Skip("needs TEST_DATABASE_URL: SQLite is one process")
	}
	e := newEnv(t, testenv.Backend{Name: "real", DatabaseURL: testenv.PostgresURL()})
	var mu sync.Mutex
	seen := map[string]int{}
	r := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		seen[req.Header.Get("webhook-id")]++
		mu.Unlock()
	}))
	t.Cleanup(r.Close)
	e.endpoint(r.URL, "*")
	const events = 300
	for range events {
		e.enqueue(webhooks.TypeKeyRevoked)
	}
	workers := []*webhooks.Deliverer{
		webhooks.NewDeliverer(webhooks.DeliverConfig{DB: e.db, Clock: e.clock, AllowPrivate: true, Batch: 40}),
		webhooks.NewDeliverer(webhooks.DeliverConfig{DB: e.db, Clock: e.clock, AllowPrivate: true, Batch: 40}),
	}
	var wg sync.WaitGroup
	sent := make([]int, len(workers))
	for i, w := range workers {
		wg.Go(func() {
			for {
				st, err := w.RunOnce(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				sent[i] += st.Sent
				if st.Events == 0 && st.Sent == 0 {
					var left int64
					e.db.Raw("SELECT count(*) FROM webhook_events WHERE fanned_out_at IS NULL").Scan(&left)
					var pending int64
					e.db.Raw("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").Scan(&pending)
					if left == 0 && pending == 0 {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != events {
		t.Fatalf("%d distinct events delivered, want %d", len(seen), events)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("event %s delivered %d times", id, n)
		}
	}
	if sent[0] == 0 || sent[1] == 0 {
		t.Logf("one worker sent everything (%v): the burst did not overlap", sent)
	}
}
