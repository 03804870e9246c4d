package metering

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/usage"
)

// TestLeaseRateOvershootBound drives one rate-limited key through two
// replicas with leases, on a simulated clock, and checks the bound the
// Leaser documents: at any instant the replicas together admit no more
// than the burst; since the key's first call they never admit more than
// the GCRA allows; in any window they admit at most what the limit allows
// plus the tokens both replicas may hold. One replica alone is exact.
func TestLeaseRateOvershootBound(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		clock := fnmarket.NewTestClock(testStart)
		const limit = 100
		var replicas []*Leaser
		for range 2 {
			replicas = append(replicas, NewLeaser(newTestLimiter(t, rdb, prefix, clock), LeaseConfig{}))
		}
		held := replicas[0].tokensMax(limit)
		var n atomic.Int64
		req := func(key string) AdmissionRequest {
			return AdmissionRequest{
				Caller:     Caller{ConsumerID: "con_rate", KeyID: key, RateLimitPerSecond: limit},
				FunctionID: "fn_rate", Version: 1, Pricing: testPricing(),
				InvocationID: fmt.Sprintf("inv_rate_%d", n.Add(1)), At: clock.Now(),
			}
		}
		admit := func(s *Leaser, r AdmissionRequest) bool {
			a, err := s.Admit(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			if !a.Allowed && (a.Reason != fnmarket.ERATELIMITED || a.RetryAfter <= 0) {
				t.Fatalf("refusal %+v, want rate_limited with a Retry-After", a)
			}
			return a.Allowed
		}

		// A burst of 500 at one instant over both replicas: the burst, exactly.
		var wg sync.WaitGroup
		var burst atomic.Int64
		for i := range 500 {
			wg.Go(func() {
				if admit(replicas[i%2], req("key_burst")) {
					burst.Add(1)
				}
			})
		}
		wg.Wait()
		if burst.Load() != limit {
			t.Fatalf("a burst of 500 at one instant admitted %d, want exactly the burst %d", burst.Load(), limit)
		}

		// Random arrivals for 4 simulated seconds, above the limit.
		run := func(key string, rs []*Leaser) []time.Duration {
			rng := rand.New(rand.NewPCG(7, uint64(len(rs))))
			start := clock.Now()
			var admitted []time.Duration
			for clock.Now().Sub(start) < 4*time.Second {
				clock.Advance(time.Duration(rng.IntN(4000)) * time.Microsecond)
				if admit(rs[rng.IntN(len(rs))], req(key)) {
					admitted = append(admitted, clock.Now().Sub(start))
				}
			}
			return admitted
		}
		// allowed is what the GCRA admits in a window of d: the burst plus
		// one call per emission interval.
		allowed := func(d time.Duration) int { return limit + int(d*limit/time.Second) }
		check := func(name string, admitted []time.Duration, slack int) {
			t.Helper()
			sort.Slice(admitted, func(i, j int) bool { return admitted[i] < admitted[j] })
			if len(admitted) < 4*limit {
				t.Fatalf("%s: %d admitted in 4s at a limit of %d/s, want at least %d", name, len(admitted), limit, 4*limit)
			}
			for i := range admitted {
				if i+1 > allowed(admitted[i]) {
					t.Fatalf("%s: %d admitted by %v since the first call, over the GCRA's %d", name, i+1, admitted[i], allowed(admitted[i]))
				}
				for j := i; j < len(admitted); j++ {
					if got, most := j-i+1, allowed(admitted[j]-admitted[i])+slack; got > most {
						t.Fatalf("%s: %d admitted in the window %v..%v, over %d (the limit's %d plus %d held)",
							name, got, admitted[i], admitted[j], most, most-slack, slack)
					}
				}
			}
		}
		// The overshoot is real: tokens one replica took stay usable after
		// the shared GCRA has refilled. Replica 0 takes a lease with its
		// first call, replica 1 empties the burst; a second later replica
		// 1 takes the refilled burst and replica 0 spends what it held.
		if !admit(replicas[0], req("key_skew")) {
			t.Fatal("first call refused")
		}
		for admit(replicas[1], req("key_skew")) {
		}
		clock.Advance(time.Second)
		instant := 0
		for admit(replicas[1], req("key_skew")) {
			instant++
		}
		for admit(replicas[0], req("key_skew")) {
			instant++
		}
		if instant <= limit || instant > limit+held {
			t.Fatalf("one instant a second after the burst admitted %d, want more than the burst %d (replica 0's lease) and at most %d", instant, limit, limit+held)
		}

		check("one replica", run("key_one", replicas[:1]), 0)
		check("two replicas", run("key_two", replicas), 2*held)
	})
}

// TestLeaseOfAKilledReplicaIsKept: a replica killed while it holds a money
// lease never gives it back; when the lease expires it stays counted as
// spent, so the cap is never exceeded (the key loses the unused part for the
// month), while a lease given back returns all that was not spent.
func TestLeaseOfAKilledReplicaIsKept(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newHoldsEnv(t, b, 2, true)
		p := flatPricing("0.10")
		c := Caller{ConsumerID: "con_kill", KeyID: "key_kill", MonthlySpendCap: decPtr("2.00")}
		if a, _ := e.call(0, e.request(c, p, 100), true, 1); !a.Allowed {
			t.Fatalf("first call refused: %+v", a)
		}
		killed := e.moneyLease(0, "key_kill")
		if killed.hold <= 0 || killed.spent != toPico(dec("0.10")) {
			t.Fatalf("the first replica's lease holds %d and spent %d, want a hold and 0.10 spent", killed.hold, killed.spent)
		}
		kept := fromPico(killed.hold)
		// Replica 0 is killed: it never renews nor gives back. Much later,
		// replica 1 admits until the cap refuses.
		e.clock.Advance(e.lims[0].cfg.HoldGrace + 2*time.Second)
		n := 0
		for range 40 {
			a, _ := e.call(1, e.request(c, p, 100), true, 1)
			if !a.Allowed {
				if a.Reason != fnmarket.ESPENDCAP {
					t.Fatalf("refusal %+v, want spend_cap_reached", a)
				}
				break
			}
			n++
		}
		spent := dec("0.10").Mul(dec(fmt.Sprint(n)))
		if want := dec("2.00").Sub(kept); !spent.Equal(want) {
			t.Fatalf("after the kill, the other replica spent %s, want the cap less the killed lease (%s) = %s", spent, kept, want)
		}
		h, err := e.rdb.HLen(context.Background(), e.ks.holds(shardOf(c.ConsumerID), c.ConsumerID)).Result()
		if err != nil || h != 0 {
			t.Fatalf("holds left after the expired lease was swept and the other given back: %d, %v", h, err)
		}
		if got := e.keySpend(c.ConsumerID, c.KeyID); !got.Equal(spent.Add(kept)) || got.GreaterThan(dec("2")) {
			t.Fatalf("key spend %s, want %s spent + %s kept, never over the cap", got, spent, kept)
		}
	})
}

// TestLeasesAreGivenBackWhenIdle: once a key is idle, its tokens, positions
// and money go back to Redis, and Close gives back the rest.
func TestLeasesAreGivenBackWhenIdle(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		clock := fnmarket.NewTestClock(testStart)
		s := NewLeaser(newTestLimiter(t, rdb, prefix, clock), LeaseConfig{Idle: 20 * time.Millisecond, Tick: 5 * time.Millisecond})
		s.Start(context.Background())
		ks := keyspace{prefix: prefix}
		c := Caller{ConsumerID: "con_idle", KeyID: "key_idle", RateLimitPerSecond: 1000, MonthlySpendCap: decPtr("100")}
		p := flatPricing("0.01")
		req := AdmissionRequest{Caller: c, FunctionID: "fn_idle", Version: 1, Pricing: p, InvocationID: "inv_idle", At: clock.Now()}
		a, err := s.Admit(context.Background(), req)
		if err != nil || !a.Allowed {
			t.Fatalf("admit: %+v, %v", a, err)
		}
		if _, err := s.Settle(context.Background(), req, a, true, dec("0.01")); err != nil {
			t.Fatal(err)
		}
		shard := shardOf(c.ConsumerID)
		spend := func() string {
			v, _ := rdb.Get(context.Background(), ks.spend(shard, c.KeyID, monthOf(clock.Now()))).Result()
			return v
		}
		if spend() == "10000000000" {
			t.Fatal("the key's spend is exactly the call's cost while its lease is held: no lease was taken")
		}
		deadline := time.Now().Add(5 * time.Second)
		for spend() != "10000000000" || len(s.laneKeys()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("idle lease not given back: spend %s, lanes %v", spend(), s.laneKeys())
			}
			time.Sleep(5 * time.Millisecond)
		}
		next, err := NewPositions(rdb, prefix).CallsThisMonth(context.Background(), c.ConsumerID, "fn_idle", clock.Now())
		if err != nil || next != 1 {
			t.Fatalf("next position after the block was given back = %d, %v; want 1", next, err)
		}
		if tat, _ := rdb.Get(context.Background(), ks.rateLimit(shard, c.KeyID)).Int64(); tat != clock.Now().UnixMicro()+1000 {
			t.Fatalf("rate state %d after the tokens came back, want one call's interval past now (%d)", tat, clock.Now().UnixMicro()+1000)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeasesOfAPastMonthAreGivenBack: a key busy across the turn of a month
// gives last month's position block and money lease back without going idle.
func TestLeasesOfAPastMonthAreGivenBack(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newHoldsEnv(t, b, 1, true)
		p := flatPricing("0.10")
		c := Caller{ConsumerID: "con_month", KeyID: "key_month", MonthlySpendCap: decPtr("5")}
		e.clock.Set(time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC))
		if a, _ := e.call(0, e.request(c, p, 100), true, 1); !a.Allowed {
			t.Fatalf("March call refused: %+v", a)
		}
		march := monthOf(e.clock.Now())
		e.clock.Advance(2 * time.Second)
		if a, _ := e.call(0, e.request(c, p, 100), true, 1); !a.Allowed || a.CallsBefore != 0 {
			t.Fatalf("April's first call: %+v, want admitted at position 0", a)
		}
		s := e.leasers[0]
		ln := s.lanes[c.KeyID]
		ln.mu.Lock()
		err := s.giveBackPast(context.Background(), ln, e.clock.Now())
		_, marchMoney := ln.money[moneyKey{month: march}]
		ln.mu.Unlock()
		if err != nil || marchMoney {
			t.Fatalf("March's lease still held after giving back past months (err %v)", err)
		}
		got, err := e.rdb.Get(context.Background(), e.ks.spend(shardOf(c.ConsumerID), c.KeyID, march)).Result()
		if err != nil || got != "100000000000" {
			t.Fatalf("March spend %s (%v), want the one call's 0.10 once its lease is given back", got, err)
		}
	})
}

// TestSoleLeaserLeasesEveryStep: the only replica of its Redis (the
// embedded default) leases blocks of positions among free calls and earlier
// tiers too, and still hands them out in order, each at its price.
func TestSoleLeaserLeasesEveryStep(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		clock := fnmarket.NewTestClock(testStart)
		s := NewLeaser(newTestLimiter(t, rdb, prefix, clock), LeaseConfig{Sole: true})
		p := flatPricing("0.10")
		p.FreeCallsPerMonth = 3
		p.Tiers = []catalog.Tier{{UpTo: 5, PerCall: dec("0.2")}, {UpTo: 0, PerCall: dec("0.1")}}
		c := Caller{ConsumerID: "con_sole", KeyID: "key_sole", MonthlySpendCap: decPtr("100")}
		ks := keyspace{prefix: prefix}
		want := int64(0) // the position the next call must take
		for i := range 12 {
			req := AdmissionRequest{Caller: c, FunctionID: "fn_sole", Version: 1, Pricing: p, TimeoutMs: 10,
				InvocationID: fmt.Sprint("inv_sole_", i), At: clock.Now()}
			a, err := s.Admit(context.Background(), req)
			if err != nil || !a.Allowed || a.CallsBefore != want || !a.Hold.Equal(p.CallCost(want, 10)) {
				t.Fatalf("call %d: %+v, %v; want admitted at position %d holding %s", i, a, err, want, p.CallCost(want, 10))
			}
			// The second call never reaches its function: the next call
			// takes its position back.
			reached := i != 1
			if _, err := s.Settle(context.Background(), req, a, reached, p.CallCost(want, 1)); err != nil {
				t.Fatal(err)
			}
			if reached {
				want++
			}
			if i == 0 {
				fk := fcKey{ConsumerID: c.ConsumerID, FunctionID: "fn_sole", Month: monthOf(clock.Now())}
				if n, _ := rdb.Get(context.Background(), ks.position(shardOf(c.ConsumerID), fk)).Int64(); n < 2 {
					t.Fatalf("positions handed out after the first call: %d, want a block among the free calls", n)
				}
			}
		}
	})
}

// TestBusyLeaseIsRenewed: a money lease in use is renewed before it could
// expire, so only a replica that stopped renewing loses its lease.
func TestBusyLeaseIsRenewed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newHoldsEnv(t, b, 1, true)
		c := Caller{ConsumerID: "con_renew", KeyID: "key_renew", MonthlySpendCap: decPtr("10")}
		if a, _ := e.call(0, e.request(c, flatPricing("0.10"), 100), true, 1); !a.Allowed {
			t.Fatalf("call refused: %+v", a)
		}
		s := e.leasers[0]
		expiry := func() float64 {
			id := e.moneyLease(0, c.KeyID).id
			v, err := e.rdb.ZScore(context.Background(), e.ks.holdExpiry(shardOf(c.ConsumerID), c.ConsumerID), id).Result()
			if err != nil {
				t.Fatalf("lease %s has no expiry: %v", id, err)
			}
			return v
		}
		before := expiry()
		e.clock.Advance(e.lims[0].cfg.HoldGrace / 2)
		if err := s.tidy(context.Background(), false); err != nil {
			t.Fatal(err)
		}
		if after := expiry(); after <= before {
			t.Fatalf("lease expiry %v after a renewal half its grace later, want later than %v", after, before)
		}
	})
}

// TestLeaseHoldsNoCreditForOtherCurrencies: a key's calls priced in a
// currency its account's credit is not in never hold that credit; its calls
// in the credit's currency still spend it first.
func TestLeaseHoldsNoCreditForOtherCurrencies(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newHoldsEnv(t, b, 1, true)
		c := Caller{ConsumerID: "con_fx", KeyID: "key_fx", Account: usage.AccountBilling{CreditGranted: dec("1.00"), CreditCurrency: "USD"}}
		eur := flatPricing("0.10")
		eur.Currency = "EUR"
		if a, cr := e.call(0, e.request(c, eur, 100), true, 1); !a.Allowed || !cr.IsZero() || !a.CreditHold.IsZero() {
			t.Fatalf("a EUR call: %+v using %s credit, want admitted using none", a, cr)
		}
		left := func() string {
			v, err := e.rdb.Get(context.Background(), e.ks.creditLeft(shardOf(c.ConsumerID), c.ConsumerID)).Result()
			if err != nil && err != redis.Nil {
				t.Fatal(err)
			}
			return v
		}
		if got := left(); got != "" && got != "1000000000000" {
			t.Fatalf("credit left %s while only EUR calls ran, want all of it (1.00)", got)
		}
		if a, cr := e.call(0, e.request(c, flatPricing("0.10"), 100), true, 1); !a.Allowed || !cr.Equal(dec("0.1")) {
			t.Fatalf("a USD call: %+v using %s credit, want 0.10", a, cr)
		}
		e.giveBack()
		if got := left(); got != "900000000000" {
			t.Fatalf("credit left %s after one USD call of 0.10, want 0.90", got)
		}
	})
}

// laneKeys lists the keys this replica holds leases for.
func (s *Leaser) laneKeys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := make([]string, 0, len(s.lanes))
	for k := range s.lanes {
		keys = append(keys, k)
	}
	return keys
}

// TestCloseGivesLeasesBack: a gateway that stops gives its leases back
// (README: "when the gateway stops"): the spend is what its calls spent, no
// lease hold is left, and its unused positions go to the next call.
func TestCloseGivesLeasesBack(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		clock := fnmarket.NewTestClock(testStart)
		s := NewLeaser(newTestLimiter(t, rdb, prefix, clock), LeaseConfig{})
		c := Caller{ConsumerID: "con_close", KeyID: "key_close", RateLimitPerSecond: 1000, MonthlySpendCap: decPtr("100")}
		for i := range 3 {
			req := AdmissionRequest{Caller: c, FunctionID: "fn_close", Version: 1, Pricing: flatPricing("0.01"), TimeoutMs: 10,
				InvocationID: fmt.Sprint("inv_close_", i), At: clock.Now()}
			a, err := s.Admit(context.Background(), req)
			if err != nil || !a.Allowed {
				t.Fatalf("admit: %+v, %v", a, err)
			}
			if _, err := s.Settle(context.Background(), req, a, true, dec("0.01")); err != nil {
				t.Fatal(err)
			}
		}
		ks := keyspace{prefix: prefix}
		shard := shardOf(c.ConsumerID)
		if h, _ := rdb.HLen(context.Background(), ks.holds(shard, c.ConsumerID)).Result(); h != 1 {
			t.Fatalf("%d holds while the gateway runs, want its lease", h)
		}
		if err := s.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, _ := rdb.Get(context.Background(), ks.spend(shard, c.KeyID, monthOf(clock.Now()))).Result(); got != "30000000000" {
			t.Fatalf("key spend after Close = %s pico, want the three calls' 0.03", got)
		}
		if h, _ := rdb.HLen(context.Background(), ks.holds(shard, c.ConsumerID)).Result(); h != 0 {
			t.Fatalf("%d holds left after Close, want none", h)
		}
		next, err := NewPositions(rdb, prefix).CallsThisMonth(context.Background(), c.ConsumerID, "fn_close", clock.Now())
		if err != nil || next != 3 {
			t.Fatalf("next position after Close = %d, %v; want 3", next, err)
		}
	})
}

// TestLeaseTakesAQuarterOfTheRoom: a money lease holds the waiting call's
// worst case plus whole calls' worth up to a quarter of the room left under
// the cap, so another replica still finds room.
func TestLeaseTakesAQuarterOfTheRoom(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newHoldsEnv(t, b, 2, true)
		p := flatPricing("0.10")
		c := Caller{ConsumerID: "con_quarter", KeyID: "key_quarter", MonthlySpendCap: decPtr("1.00")}
		if a, _ := e.call(0, e.request(c, p, 100), false, 0); !a.Allowed {
			t.Fatalf("first call refused: %+v", a)
		}
		// Room 1.00: a quarter is 0.25, so two calls' worth (the first
		// renewal came for a position, before the call's worst case was
		// known, so it holds no floor of its own).
		ml := e.moneyLease(0, c.KeyID)
		if got := fromPico(ml.hold); !got.Equal(dec("0.2")) {
			t.Fatalf("the first lease holds %s, want 0.20 (a quarter of the room, in whole calls)", got)
		}
		if a, _ := e.call(1, e.request(c, p, 100), false, 0); !a.Allowed {
			t.Fatalf("the other replica found no room: %+v", a)
		}
	})
}

// A cap lowered while a replica holds a lease under the old one holds from
// the next call: the lease taken under the old cap (a quarter of its room)
// must not be spent past the new cap. Key caps and account caps alike, in
// both admission modes.
func TestLoweredCapHoldsAtOnce(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		for _, scope := range []string{"key", "account"} {
			t.Run(scope, func(t *testing.T) {
				e := newHoldsEnv(t, b, 1, leases)
				p := flatPricing("0.10")
				c := Caller{ConsumerID: "con_lower_" + scope, KeyID: "key_lower_" + scope}
				setCap := func(s string) {
					if scope == "key" {
						c.MonthlySpendCap = decPtr(s)
					} else {
						c.Account.MonthlySpendCap = decPtr(s)
					}
				}
				setCap("100.00")
				for i := range 40 {
					if a, _ := e.call(0, e.request(c, p, 100), true, 1); !a.Allowed {
						t.Fatalf("call %d under the high cap refused: %+v", i, a)
					}
				}
				if leases {
					ml := e.moneyLease(0, c.KeyID)
					if room := fromPico(ml.room()); room.LessThan(dec("0.30")) {
						t.Fatalf("the lease has %s of room left: too little for this test to tell", room)
					}
				}
				// 4.00 spent; the cap comes down to 4.20: two more calls fit.
				setCap("4.20")
				allowed := 0
				for range 10 {
					if a, _ := e.call(0, e.request(c, p, 100), true, 1); a.Allowed {
						allowed++
					}
				}
				if allowed != 2 {
					t.Fatalf("%d calls admitted after the cap came down to 4.20 with 4.00 spent, want 2", allowed)
				}
			})
		}
	})
}
