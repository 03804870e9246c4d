package metering

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/usage"
)

func newTestLimiter(t *testing.T, rdb redis.UniversalClient, prefix string, clock fnmarket.Clock) *Limiter {
	t.Helper()
	l, err := NewLimiter(LimiterConfig{Redis: rdb, Prefix: prefix, Clock: clock, Timeout: 2 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var invocations atomic.Int64

// countAllowed admits n calls concurrently, spread over the limiters, and
// counts how many went ahead.
func countAllowed(t *testing.T, ls []*Limiter, req AdmissionRequest, n int) int {
	t.Helper()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			req := req
			req.InvocationID = fmt.Sprintf("%s-%d-%d", req.Caller.KeyID, i, invocations.Add(1))
			a, err := ls[i%len(ls)].Admit(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			if a.Degraded {
				t.Error("admission degraded with redis up")
			}
			if a.Allowed {
				allowed.Add(1)
				return
			}
			if a.Reason != fnmarket.ERATELIMITED || a.RetryAfter <= 0 || a.Limit != req.Caller.RateLimitPerSecond {
				t.Errorf("refusal = %+v, want rate_limited with Retry-After and limit", a)
			}
		})
	}
	wg.Wait()
	return int(allowed.Load())
}

func TestLimiterGCRAExactAcrossReplicas(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		clock := fnmarket.NewTestClock(testStart)
		replicas := []*Limiter{
			newTestLimiter(t, rdb, prefix, clock),
			newTestLimiter(t, rdb, prefix, clock),
		}
		req := AdmissionRequest{
			Caller:     Caller{ConsumerID: "con_a", KeyID: "key_a", RateLimitPerSecond: 10},
			FunctionID: "fn_1", Version: 1, Pricing: testPricing(),
		}
		steps := []struct {
			name    string
			advance time.Duration
			tries   int
			want    int
		}{
			{"burst of the limit", 0, 40, 10},
			{"nothing more in the same instant", 0, 10, 0},
			{"one emission interval later, one more", 100 * time.Millisecond, 10, 1},
			{"half an interval later, none", 50 * time.Millisecond, 10, 0},
			{"another half, one", 50 * time.Millisecond, 10, 1},
			{"a full second later, the burst again", 5 * time.Second, 30, 10},
		}
		for _, s := range steps {
			clock.Advance(s.advance)
			if got := countAllowed(t, replicas, req, s.tries); got != s.want {
				t.Fatalf("%s: allowed %d of %d, want %d", s.name, got, s.tries, s.want)
			}
		}
		// Another key has its own budget, and unlimited keys are never limited.
		other := req
		other.Caller.KeyID = "key_b"
		if got := countAllowed(t, replicas, other, 15); got != 10 {
			t.Fatalf("other key: allowed %d, want 10", got)
		}
		other.Caller.RateLimitPerSecond = 0
		other.Caller.KeyID = "key_c"
		if got := countAllowed(t, replicas, other, 50); got != 50 {
			t.Fatalf("unlimited key: allowed %d, want 50", got)
		}
		// Headers: a fresh key's first call leaves limit-1 and resets within a second.
		fresh := req
		fresh.Caller.KeyID = "key_d"
		fresh.InvocationID = "fresh"
		a, err := replicas[0].Admit(context.Background(), fresh)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Allowed || a.Limit != 10 || a.Remaining != 9 || a.Reset != 100*time.Millisecond {
			t.Fatalf("first admission = %+v, want allowed, limit 10, remaining 9, reset 100ms", a)
		}
	})
}

func TestLimiterRedisDownDecidesLocally(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	clock := fnmarket.NewTestClock(testStart)
	l, err := NewLimiter(LimiterConfig{Redis: rdb, Clock: clock, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	req := AdmissionRequest{Caller: Caller{ConsumerID: "c", KeyID: "k", RateLimitPerSecond: 3}, FunctionID: "f", InvocationID: "i"}
	var allowed int
	for range 10 {
		a, err := l.Admit(context.Background(), req)
		if err != nil {
			t.Fatalf("admit with redis down: %v", err)
		}
		if !a.Degraded {
			t.Fatalf("admission = %+v, want degraded", a)
		}
		if a.Allowed {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("allowed %d with redis down, want the local burst of 3", allowed)
	}
	clock.Advance(time.Second)
	a, _ := l.Admit(context.Background(), req)
	if !a.Allowed || !a.Degraded {
		t.Fatalf("after a second: %+v, want allowed and degraded", a)
	}
	if a.CallsBefore != 3 {
		t.Fatalf("position with redis down = %d, want 3 (the calls this replica let through)", a.CallsBefore)
	}
	// A cap, credit or a standing short of active cannot be kept without
	// Redis: such calls are refused, to be retried, never let through.
	capped := req
	one := decimal.NewFromInt(1)
	for name, c := range map[string]Caller{
		"key cap":     {ConsumerID: "c", KeyID: "k2", MonthlySpendCap: &one},
		"account cap": {ConsumerID: "c", KeyID: "k2", Account: usage.AccountBilling{MonthlySpendCap: &one}},
		"credit":      {ConsumerID: "c", KeyID: "k2", Account: usage.AccountBilling{CreditGranted: one}},
		"free only":   {ConsumerID: "c", KeyID: "k2", Account: usage.AccountBilling{Standing: usage.StandingFreeOnly}},
	} {
		capped.Caller = c
		a, err := l.Admit(context.Background(), capped)
		if err != nil {
			t.Fatal(err)
		}
		if a.Allowed || a.Reason != fnmarket.EUNAVAILABLE {
			t.Fatalf("%s with redis down: %+v, want refused as unavailable", name, a)
		}
	}
}
