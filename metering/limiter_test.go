package metering

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

func newTestLimiter(t *testing.T, rdb redis.UniversalClient, prefix string, clock fnmarket.Clock, pending PendingUsage) *Limiter {
	t.Helper()
	l, err := NewLimiter(LimiterConfig{Redis: rdb, Prefix: prefix, Pending: pending, Clock: clock, Timeout: 2 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// countAllowed admits n calls concurrently, spread over the limiters, and
// counts how many went ahead.
func countAllowed(t *testing.T, ls []*Limiter, req AdmissionRequest, n int) int {
	t.Helper()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
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
			newTestLimiter(t, rdb, prefix, clock, nil),
			newTestLimiter(t, rdb, prefix, clock, nil),
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
		a, err := replicas[0].Admit(context.Background(), fresh)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Allowed || a.Limit != 10 || a.Remaining != 9 || a.Reset != 100*time.Millisecond {
			t.Fatalf("first admission = %+v, want allowed, limit 10, remaining 9, reset 100ms", a)
		}
	})
}

func TestLimiterSpendCap(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		ctx := context.Background()
		pricing := testPricing()
		pricing.PerCall = decimal.RequireFromString("0.4")
		pricing.PerComputeMs = decimal.Zero
		pricing.FreeCallsPerMonth = 0
		capOne := decimal.RequireFromString("1.00")

		tests := []struct {
			name      string
			flushed   int // calls of 0.40 flushed to Redis before admission
			unflushed int // calls of 0.40 recorded by this process, not flushed
			cap       *decimal.Decimal
			want      bool
		}{
			{"nothing spent", 0, 0, &capOne, true},
			{"under the cap", 2, 0, &capOne, true},
			{"over the cap in redis", 3, 0, &capOne, false},
			{"over the cap counting this process's unflushed spend", 1, 2, &capOne, false},
			{"over the cap only unflushed", 0, 3, &capOne, false},
			{"no cap", 5, 0, nil, true},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				m := newTestMeter(t, rdb, prefix, t.TempDir(), time.Hour)
				defer closeMeter(t, m)
				l := newTestLimiter(t, rdb, prefix, fnmarket.NewTestClock(testStart), m)
				consumer := "con_cap_" + string(rune('a'+i))
				call := Call{ConsumerID: consumer, KeyID: "key_" + consumer, FunctionID: "fn_1", Version: 1, Pricing: pricing, At: testStart, ComputeMs: 3, Billable: true}
				for j := range tc.flushed {
					call.CallsBefore = int64(j)
					m.Record(call)
				}
				if err := m.flushOnce(ctx); err != nil {
					t.Fatal(err)
				}
				for j := range tc.unflushed {
					call.CallsBefore = int64(tc.flushed + j)
					m.Record(call)
				}
				a, err := l.Admit(ctx, AdmissionRequest{
					Caller:     Caller{ConsumerID: consumer, KeyID: call.KeyID, RateLimitPerSecond: 5, MonthlySpendCap: tc.cap},
					FunctionID: "fn_1", Version: 1, Pricing: pricing,
				})
				if err != nil {
					t.Fatal(err)
				}
				if a.Allowed != tc.want {
					t.Fatalf("allowed = %v, want %v (%+v)", a.Allowed, tc.want, a)
				}
				if !tc.want && a.Reason != fnmarket.ESPENDCAP {
					t.Fatalf("reason = %q, want %q", a.Reason, fnmarket.ESPENDCAP)
				}
				if tc.want && a.CallsBefore != int64(tc.flushed+tc.unflushed) {
					t.Fatalf("calls before = %d, want %d", a.CallsBefore, tc.flushed+tc.unflushed)
				}
			})
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
	req := AdmissionRequest{Caller: Caller{ConsumerID: "c", KeyID: "k", RateLimitPerSecond: 3}, FunctionID: "f"}
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
	if a, _ := l.Admit(context.Background(), req); !a.Allowed || !a.Degraded {
		t.Fatalf("after a second: %+v, want allowed and degraded", a)
	}
}
