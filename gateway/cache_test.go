package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/gateway"
)

// outage wraps the fake stores so they can fail as an unreachable database
// does, and counts every lookup, failed or not.
type outage struct {
	mu      sync.Mutex
	down    bool
	lookups int
}

var errDBDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

func (o *outage) set(down bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.down = down
}

func (o *outage) lookup() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lookups++
	if o.down {
		return errDBDown
	}
	return nil
}

func (o *outage) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lookups
}

type outageKeys struct {
	*fakeKeys
	o *outage
}

func (k outageKeys) KeyByHash(ctx context.Context, hash string) (gateway.Key, error) {
	if err := k.o.lookup(); err != nil {
		return gateway.Key{}, err
	}
	return k.fakeKeys.KeyByHash(ctx, hash)
}

func (k outageKeys) KeysChangedSince(ctx context.Context, since time.Time) ([]string, error) {
	if err := k.o.lookup(); err != nil {
		return nil, err
	}
	return k.fakeKeys.KeysChangedSince(ctx, since)
}

type outageRoutes struct {
	*fakeRoutes
	o *outage
}

func (r outageRoutes) Route(ctx context.Context, vendor, name string, version int) (catalog.Route, error) {
	if err := r.o.lookup(); err != nil {
		return catalog.Route{}, err
	}
	return r.fakeRoutes.Route(ctx, vendor, name, version)
}

func (r outageRoutes) FunctionsChangedSince(ctx context.Context, since time.Time) ([]gateway.FunctionRef, error) {
	if err := r.o.lookup(); err != nil {
		return nil, err
	}
	return r.fakeRoutes.FunctionsChangedSince(ctx, since)
}

// TestCachedEntriesServedWhileStoreDown checks stale-if-error: once the
// database stops answering, keys and routes already cached keep being
// served past MaxEntryAge, up to MaxStale, asking the store again at most
// once per DefaultStaleRetry; keys never seen still fail closed; the
// gateway's StoreStatus says it is degraded until the store answers again.
func TestCachedEntriesServedWhileStoreDown(t *testing.T) {
	t.Parallel()
	up := echoUpstream(t, "ok")
	clock := fnmarket.NewTestClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	cfg := private()
	cfg.Clock = clock
	cfg.MaxStale = 10 * time.Minute
	o := &outage{}
	fk := newFakeKeys(clock)
	fk.add(testKey, gateway.Key{ID: "key-1", ConsumerID: "consumer-1"})
	fr := newFakeRoutes(clock)
	fr.addVersion("acme", "fn", 1, up.URL, true)
	meter := newFakeMeter()
	gw, err := gateway.New(cfg, outageKeys{fk, o}, outageRoutes{fr, o}, &fakeAdmitter{meter: meter, windows: map[string]*window{}}, meter)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gw.Close() })
	call := func(key string) *http.Response {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/v1/invoke/acme/fn", nil)
		req.Header.Set("X-Api-Key", key)
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, req)
		return rec.Result()
	}
	wantStatus := func(what string, resp *http.Response, status int) {
		t.Helper()
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("%s: status %d, want %d", what, resp.StatusCode, status)
		}
	}

	wantStatus("healthy", call(testKey), 200)
	if st := gw.StoreStatus(); st.Unreachable {
		t.Fatalf("store status %+v before the outage", st)
	}

	o.set(true)
	clock.Advance(gateway.DefaultMaxEntryAge + time.Second)
	wantStatus("cached key past its max age, database down", call(testKey), 200)
	st := gw.StoreStatus()
	if !st.Unreachable || !errors.Is(st.Err, errDBDown) || !st.Since.Equal(clock.Now()) || st.MaxStale != cfg.MaxStale {
		t.Fatalf("store status %+v during the outage", st)
	}
	// A key never seen fails closed: 503 with Retry-After, not a 500.
	res := call("fnm_never_seen")
	if res.Header.Get("Retry-After") == "" {
		t.Error("unknown key during the outage: no Retry-After")
	}
	wantProblem(t, res, 503, fnmarket.EUNAVAILABLE)

	// Served stale without asking the store on every call.
	n := o.count()
	clock.Advance(gateway.DefaultStaleRetry / 2)
	wantStatus("within the stale retry", call(testKey), 200)
	if got := o.count(); got != n {
		t.Errorf("store asked %d more times within the stale retry, want 0", got-n)
	}
	clock.Advance(gateway.DefaultStaleRetry)
	wantStatus("after the stale retry", call(testKey), 200)
	if got := o.count(); got != n+2 {
		t.Errorf("store asked %d more times after the stale retry, want 2 (key and route)", got-n)
	}

	// Bounded: past MaxStale the gateway fails closed again.
	clock.Advance(cfg.MaxStale)
	wantProblem(t, call(testKey), 503, fnmarket.EUNAVAILABLE)

	o.set(false)
	wantStatus("database back", call(testKey), 200)
	if st := gw.StoreStatus(); st.Unreachable {
		t.Fatalf("store status %+v after the outage", st)
	}
}
