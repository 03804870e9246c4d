package metering

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/usage"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func decPtr(s string) *decimal.Decimal { d := dec(s); return &d }

// flatPricing charges perCall a call and nothing for compute, with no free calls.
func flatPricing(perCall string) catalog.Pricing {
	return catalog.Pricing{Currency: "USD", PerCall: dec(perCall), PerComputeMs: decimal.Zero}
}

// admitter is what the gateway asks: a Limiter (a round trip per call) or a
// Leaser (leases).
type admitter interface {
	Admit(ctx context.Context, req AdmissionRequest) (Admission, error)
	Settle(ctx context.Context, req AdmissionRequest, adm Admission, reached bool, cost decimal.Decimal) (decimal.Decimal, error)
}

// holdsEnv is one consumer's admissions against a shared Redis, through
// several replicas: Limiters, or Leasers when leases is set.
type holdsEnv struct {
	t       *testing.T
	rdb     redis.UniversalClient
	ks      keyspace
	clock   *fnmarket.TestClock
	ls      []admitter
	lims    []*Limiter
	leasers []*Leaser
	nextID  atomic.Int64
}

func newHoldsEnv(t *testing.T, b testenv.Backend, replicas int, leases bool) *holdsEnv {
	rdb, prefix := testenv.Redis(t, b)
	e := &holdsEnv{t: t, rdb: rdb, ks: keyspace{prefix: prefix}, clock: fnmarket.NewTestClock(testStart)}
	for range replicas {
		l := newTestLimiter(t, rdb, prefix, e.clock)
		e.lims = append(e.lims, l)
		if leases {
			s := NewLeaser(l, LeaseConfig{})
			e.leasers = append(e.leasers, s)
			e.ls = append(e.ls, s)
		} else {
			e.ls = append(e.ls, l)
		}
	}
	return e
}

// eachMode runs fn on every backend, with per-call admission and with leases.
func eachMode(t *testing.T, fn func(t *testing.T, b testenv.Backend, leases bool)) {
	t.Helper()
	for _, leases := range []bool{false, true} {
		name := "per-call"
		if leases {
			name = "leases"
		}
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b testenv.Backend) { fn(t, b, leases) })
		})
	}
}

// moneyLease is replica i's money lease of key keyID for this month (the one
// for calls credit may pay is apart); nil if it holds none.
func (e *holdsEnv) moneyLease(i int, keyID string) *moneyLease {
	return e.leasers[i].lanes[keyID].money[moneyKey{month: monthOf(e.clock.Now())}]
}

// giveBack returns every replica's leases, after which the counters in Redis
// are exact: the spend is what calls spent, held positions are given back.
func (e *holdsEnv) giveBack() {
	e.t.Helper()
	for _, s := range e.leasers {
		if err := s.tidy(context.Background(), true); err != nil {
			e.t.Fatal(err)
		}
	}
}

// positionsDense checks that the positions handed out for the consumer's
// function, with those given back, are each of 0..n-1 exactly once.
func (e *holdsEnv) positionsDense(consumer string, used []int64) {
	e.t.Helper()
	e.giveBack()
	fk := fcKey{ConsumerID: consumer, FunctionID: "fn_h", Month: monthOf(e.clock.Now())}
	n, err := e.rdb.Get(context.Background(), e.ks.position(shardOf(consumer), fk)).Int64()
	if err != nil {
		e.t.Fatal(err)
	}
	back, err := e.rdb.ZRange(context.Background(), e.ks.returned(shardOf(consumer), fk), 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	seen := map[int64]int{}
	for _, p := range used {
		seen[p]++
	}
	for _, b := range back {
		p, _ := strconv.ParseInt(b, 10, 64)
		seen[p]++
	}
	for p := range n {
		if seen[p] != 1 {
			e.t.Fatalf("position %d handed out or given back %d times (used %v, given back %v, counter %d)", p, seen[p], used, back, n)
		}
	}
	if len(seen) != int(n) {
		e.t.Fatalf("positions %v and given back %v beyond the counter %d", used, back, n)
	}
}

func (e *holdsEnv) request(c Caller, p catalog.Pricing, timeoutMs int64) AdmissionRequest {
	return AdmissionRequest{
		Caller: c, FunctionID: "fn_h", Version: 1, Pricing: p, TimeoutMs: timeoutMs,
		InvocationID: fmt.Sprintf("inv_%d", e.nextID.Add(1)), At: e.clock.Now(),
	}
}

// call admits one call on replica i and, when admitted and run, settles it
// at computeMs.
func (e *holdsEnv) call(i int, req AdmissionRequest, run bool, computeMs int64) (Admission, decimal.Decimal) {
	e.t.Helper()
	l := e.ls[i%len(e.ls)]
	a, err := l.Admit(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	if !a.Allowed || !run {
		return a, decimal.Zero
	}
	credit, err := l.Settle(context.Background(), req, a, true, req.Pricing.CallCost(a.CallsBefore, computeMs))
	if err != nil {
		e.t.Fatal(err)
	}
	return a, credit
}

func (e *holdsEnv) counter(key string) decimal.Decimal {
	e.t.Helper()
	e.giveBack()
	v, err := e.rdb.Get(context.Background(), key).Int64()
	if err != nil && err != redis.Nil {
		e.t.Fatal(err)
	}
	return fromPico(v)
}

func (e *holdsEnv) keySpend(consumer, key string) decimal.Decimal {
	return e.counter(e.ks.spend(shardOf(consumer), key, monthOf(e.clock.Now())))
}

func (e *holdsEnv) accountSpend(consumer string) decimal.Decimal {
	return e.counter(e.ks.accountSpend(shardOf(consumer), consumer, monthOf(e.clock.Now())))
}

// concurrently admits n calls at once over the replicas, each settled at
// computeMs once all have been decided, and returns the admitted ones.
func (e *holdsEnv) concurrently(n int, req func() AdmissionRequest, computeMs int64) (admitted []Admission, credit decimal.Decimal) {
	e.t.Helper()
	type result struct {
		req AdmissionRequest
		adm Admission
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		r := req()
		wg.Go(func() {
			a, err := e.ls[i%len(e.ls)].Admit(context.Background(), r)
			if err != nil {
				e.t.Error(err)
			}
			results[i] = result{r, a}
		})
	}
	wg.Wait()
	credit = decimal.Zero
	for i, r := range results {
		if !r.adm.Allowed {
			continue
		}
		admitted = append(admitted, r.adm)
		c, err := e.ls[i%len(e.ls)].Settle(context.Background(), r.req, r.adm, true, r.req.Pricing.CallCost(r.adm.CallsBefore, computeMs))
		if err != nil {
			e.t.Fatal(err)
		}
		credit = credit.Add(c)
	}
	return admitted, credit
}

// TestAdmissionPricesByTheOneRule checks that the position admission gives a
// call and the worst case it holds follow catalog.Pricing.CallCost exactly,
// for random pricings with free calls and graduated tiers: the Lua script
// and the catalog agree on every position.
func TestAdmissionPricesByTheOneRule(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 2, leases)
		rng := rand.New(rand.NewPCG(11, 29))
		for round := range 6 {
			p := catalog.Pricing{
				Currency:          "USD",
				PerCall:           decimal.New(rng.Int64N(1_000_000), -int32(rng.IntN(9)+3)),
				PerComputeMs:      decimal.New(rng.Int64N(1000), -int32(rng.IntN(6)+6)),
				FreeCallsPerMonth: rng.Int64N(4),
			}
			if round%2 == 1 {
				p.Tiers = []catalog.Tier{{UpTo: 2, PerCall: dec("0.5")}, {UpTo: 5, PerCall: dec("0.000000000123")}, {UpTo: 0, PerCall: dec("0.01")}}
			}
			timeout := rng.Int64N(3000) + 1
			// A cap far away, so the worst case is held (and reported).
			c := Caller{ConsumerID: fmt.Sprintf("con_rule_%d", round), KeyID: "key_rule", MonthlySpendCap: decPtr("1000000")}
			var used []int64
			for i := range int64(12) {
				req := e.request(c, p, timeout)
				ms := rng.Int64N(timeout) + 1
				a, _ := e.call(int(i), req, true, ms)
				// Leases on two replicas hand out positions of the
				// schedule's last step out of order (they all cost the
				// same); earlier ones are handed out in order.
				inOrder := !leases || i < e.leasers[0].uniformFrom(req)
				if !a.Allowed || (inOrder && a.CallsBefore != i) {
					t.Fatalf("round %d call %d: admission %+v, want allowed at position %d", round, i, a, i)
				}
				used = append(used, a.CallsBefore)
				if want := p.CallCost(a.CallsBefore, timeout); !a.Hold.Equal(want) {
					t.Fatalf("round %d call %d (%+v): held %s, want the worst case %s", round, i, p, a.Hold, want)
				}
			}
			e.positionsDense(c.ConsumerID, used)
		}
	})
}

// TestCapNeverOvershoots is issue 11's case: a key capped at 1.00, calls of
// 0.10 that take long, 200 at once over two replicas. Exactly the 10 that
// fit go through, and what is spent is the cap, never more.
func TestCapNeverOvershoots(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 2, leases)
		p := flatPricing("0.10")
		c := Caller{ConsumerID: "con_cap", KeyID: "key_cap", MonthlySpendCap: decPtr("1.00")}
		admitted, _ := e.concurrently(200, func() AdmissionRequest { return e.request(c, p, 500) }, 500)
		if len(admitted) != 10 {
			t.Fatalf("admitted %d of 200 concurrent calls, want exactly the 10 the cap allows", len(admitted))
		}
		seen := map[int64]bool{}
		var used []int64
		for _, a := range admitted {
			// Leases hand out a flat price's positions in blocks: each
			// once, the unused ones given back for the next calls.
			if seen[a.CallsBefore] || (!leases && a.CallsBefore >= 10) {
				t.Fatalf("positions %v: want 0..9, each once", admitted)
			}
			seen[a.CallsBefore] = true
			used = append(used, a.CallsBefore)
		}
		e.positionsDense(c.ConsumerID, used)
		if got := e.keySpend(c.ConsumerID, c.KeyID); !got.Equal(dec("1")) {
			t.Fatalf("key spend = %s, want 1.00", got)
		}
		if a, _ := e.call(0, e.request(c, p, 500), true, 1); a.Allowed || a.Reason != fnmarket.ESPENDCAP {
			t.Fatalf("a call past the cap: %+v, want spend_cap_reached", a)
		}
	})
}

// TestSequentialCallsStopAtTheCap: one call after another, each settled
// before the next, stop exactly when the next worst case no longer fits.
func TestSequentialCallsStopAtTheCap(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 2, leases)
		// 0.07 a call plus 0.001 a ms, 10 ms timeout: worst 0.08, real 0.071.
		p := catalog.Pricing{Currency: "USD", PerCall: dec("0.07"), PerComputeMs: dec("0.001")}
		c := Caller{ConsumerID: "con_seq", KeyID: "key_seq", MonthlySpendCap: decPtr("1.00")}
		spent := decimal.Zero
		var n int
		for i := range 40 {
			a, _ := e.call(i, e.request(c, p, 10), true, 1)
			if !a.Allowed {
				if a.Reason != fnmarket.ESPENDCAP {
					t.Fatalf("refusal %+v, want spend_cap_reached", a)
				}
				break
			}
			n++
			spent = spent.Add(p.CallCost(a.CallsBefore, 1))
		}
		// 13 calls spend 0.923; a 14th could cost 0.08 > 0.077 left.
		if n != 13 || !spent.Equal(dec("0.923")) {
			t.Fatalf("sequential calls admitted %d spending %s, want 13 spending 0.923", n, spent)
		}
		if got := e.keySpend(c.ConsumerID, c.KeyID); !got.Equal(spent) {
			t.Fatalf("key spend after settling = %s, want %s", got, spent)
		}
	})
}

// TestAccountCapOverKeys: two keys of one account share the account's cap.
func TestAccountCapOverKeys(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 2, leases)
		p := flatPricing("0.25")
		acct := usage.AccountBilling{MonthlySpendCap: decPtr("2.00")}
		var i atomic.Int64
		admitted, _ := e.concurrently(100, func() AdmissionRequest {
			key := fmt.Sprintf("key_acct_%d", i.Add(1)%2)
			return e.request(Caller{ConsumerID: "con_acct", KeyID: key, Account: acct}, p, 100)
		}, 5)
		if len(admitted) != 8 {
			t.Fatalf("admitted %d calls over two keys, want the 8 the account cap allows", len(admitted))
		}
		if got := e.accountSpend("con_acct"); !got.Equal(dec("2")) {
			t.Fatalf("account spend = %s, want 2.00", got)
		}
		if got := e.keySpend("con_acct", "key_acct_0").Add(e.keySpend("con_acct", "key_acct_1")); !got.Equal(dec("2")) {
			t.Fatalf("the keys' spend adds up to %s, want 2.00", got)
		}
	})
}

// TestCreditIsHeldAndNeverNegative: prepaid credit pays first, is held at
// admission, and never goes below zero however many calls race for it; an
// account with no way to pay gets only the calls credit covers.
func TestCreditIsHeldAndNeverNegative(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 2, leases)
		p := flatPricing("0.10")
		acct := usage.AccountBilling{Standing: usage.StandingFreeOnly, CreditGranted: dec("0.50"), CreditCurrency: "USD"}
		c := Caller{ConsumerID: "con_credit", KeyID: "key_credit", Account: acct}
		admitted, credit := e.concurrently(100, func() AdmissionRequest { return e.request(c, p, 100) }, 3)
		if len(admitted) != 5 || !credit.Equal(dec("0.5")) {
			t.Fatalf("free_only with 0.50 credit: admitted %d using %s credit, want 5 using 0.50", len(admitted), credit)
		}
		left := e.counter(e.ks.creditLeft(shardOf(c.ConsumerID), c.ConsumerID))
		if !left.IsZero() {
			t.Fatalf("credit left = %s, want 0", left)
		}
		if a, _ := e.call(0, e.request(c, p, 100), true, 1); a.Allowed || a.Reason != fnmarket.EPAYMENTREQUIRED {
			t.Fatalf("free_only without credit: %+v, want payment_required", a)
		}
		// A top-up reaches admission through the key cache: 0.20 more.
		c.Account.CreditGranted = dec("0.70")
		admitted, credit = e.concurrently(20, func() AdmissionRequest { return e.request(c, p, 100) }, 3)
		if len(admitted) != 2 || !credit.Equal(dec("0.2")) {
			t.Fatalf("after a top-up of 0.20: admitted %d using %s, want 2 using 0.20", len(admitted), credit)
		}

		// An active account spends its credit first, then pays by invoice.
		active := Caller{ConsumerID: "con_credit2", KeyID: "key_c2", Account: usage.AccountBilling{CreditGranted: dec("0.25"), CreditCurrency: "USD"}}
		var used []string
		for i := range 5 {
			// Leases: one replica, which spends its credit lease first
			// (on two, the calls of the one holding none pay by invoice
			// while the other's lease lasts; the total is the same).
			if leases {
				i = 0
			}
			a, cr := e.call(i, e.request(active, p, 100), true, 1)
			if !a.Allowed {
				t.Fatalf("active account refused: %+v", a)
			}
			used = append(used, cr.String())
		}
		if fmt.Sprint(used) != "[0.1 0.1 0.05 0 0]" {
			t.Fatalf("credit used per call = %v, want [0.1 0.1 0.05 0 0]", used)
		}
		// Credit in another currency does not pay for a call priced in euros.
		eur := p
		eur.Currency = "EUR"
		if a, cr := e.call(0, e.request(Caller{ConsumerID: "con_credit3", KeyID: "k3", Account: acct}, eur, 100), true, 1); a.Allowed || !cr.IsZero() {
			t.Fatalf("free_only with USD credit calling a EUR function: %+v, want payment_required", a)
		}
	})
}

// TestUnreachedCallGivesItsPositionBack: a call that never reached the
// function costs nothing, and the next call takes its position (and its
// free call).
func TestUnreachedCallGivesItsPositionBack(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 1, leases)
		p := flatPricing("0.10")
		p.FreeCallsPerMonth = 1
		c := Caller{ConsumerID: "con_back", KeyID: "key_back", MonthlySpendCap: decPtr("5")}
		req := e.request(c, p, 100)
		a, err := e.ls[0].Admit(context.Background(), req)
		if err != nil || !a.Allowed || a.CallsBefore != 0 {
			t.Fatalf("first call: %+v, %v", a, err)
		}
		if _, err := e.ls[0].Settle(context.Background(), req, a, false, decimal.Zero); err != nil {
			t.Fatal(err)
		}
		a2, _ := e.call(0, e.request(c, p, 100), true, 1)
		a3, _ := e.call(0, e.request(c, p, 100), true, 1)
		if a2.CallsBefore != 0 || a3.CallsBefore != 1 {
			t.Fatalf("positions after an unreached call: %d, %d; want 0 (its position again), 1", a2.CallsBefore, a3.CallsBefore)
		}
		if got := e.keySpend(c.ConsumerID, c.KeyID); !got.Equal(dec("0.1")) {
			t.Fatalf("spend = %s, want 0.10 (one free call, one paid, one that never ran)", got)
		}
	})
}

// TestHoldsOfADeadGatewayExpire: a gateway killed mid-call never settles;
// its hold is released once the call's timeout and the grace have passed.
func TestHoldsOfADeadGatewayExpire(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newHoldsEnv(t, b, 2, false)
		p := flatPricing("0.10")
		c := Caller{ConsumerID: "con_dead", KeyID: "key_dead", MonthlySpendCap: decPtr("0.10")}
		if a, _ := e.call(0, e.request(c, p, 1000), false, 0); !a.Allowed {
			t.Fatalf("first call refused: %+v", a)
		}
		if a, _ := e.call(1, e.request(c, p, 1000), true, 1); a.Allowed {
			t.Fatal("a second call fit under the cap while the first still holds it")
		}
		e.clock.Advance(time.Second + e.lims[0].cfg.HoldGrace - time.Millisecond)
		if a, _ := e.call(1, e.request(c, p, 1000), true, 1); a.Allowed {
			t.Fatal("the hold was released before its call's timeout and grace")
		}
		e.clock.Advance(2 * time.Millisecond)
		if a, _ := e.call(1, e.request(c, p, 1000), true, 1); !a.Allowed {
			t.Fatalf("after the hold expired: %+v, want admitted", a)
		}
		if got := e.keySpend(c.ConsumerID, c.KeyID); !got.Equal(dec("0.1")) {
			t.Fatalf("spend = %s, want 0.10: the dead call's hold released, the new one settled", got)
		}
	})
}

// TestUnlimitedCallsHoldNothing: a call no cap, credit or standing limits
// holds nothing and needs no settlement once it ran; its spend reaches the
// counters with the meter's flush, so a cap set later counts it.
func TestUnlimitedCallsHoldNothing(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 1, leases)
		c := Caller{ConsumerID: "con_free", KeyID: "key_free"}
		a, _ := e.call(0, e.request(c, flatPricing("0.10"), 100), false, 0)
		if !a.Allowed || !a.Hold.IsZero() {
			t.Fatalf("unlimited admission %+v, want admitted holding nothing", a)
		}
		if got := e.keySpend(c.ConsumerID, c.KeyID); !got.IsZero() {
			t.Fatalf("key spend %s after an unlimited admission, want 0", got)
		}
		h, err := e.rdb.HLen(context.Background(), e.ks.holds(shardOf(c.ConsumerID), c.ConsumerID)).Result()
		if err != nil || h != 0 {
			t.Fatalf("holds recorded for an unlimited call: %d, %v", h, err)
		}
	})
}

// TestSuspendedAccountIsRefused: an invoice past due stops every call.
func TestSuspendedAccountIsRefused(t *testing.T) {
	eachMode(t, func(t *testing.T, b testenv.Backend, leases bool) {
		e := newHoldsEnv(t, b, 1, leases)
		c := Caller{ConsumerID: "con_susp", KeyID: "key_susp", Account: usage.AccountBilling{Standing: usage.StandingSuspended}}
		p := flatPricing("0")
		p.FreeCallsPerMonth = 100
		if a, _ := e.call(0, e.request(c, p, 100), true, 1); a.Allowed || a.Reason != fnmarket.EPAYMENTREQUIRED {
			t.Fatalf("suspended: %+v, want payment_required", a)
		}
		// free_only admits free calls that cost nothing.
		c.Account.Standing = usage.StandingFreeOnly
		if a, _ := e.call(0, e.request(c, p, 100), true, 1); !a.Allowed {
			t.Fatalf("free_only, a free call: %+v, want admitted", a)
		}
	})
}

// TestUnsettledCallsSettleWhenFlushed: a call whose settlement could not
// reach Redis carries its cost and credit use in the spool; the flush puts
// them on the spend and credit counters (its hold expires on its own).
func TestUnsettledCallsSettleWhenFlushed(t *testing.T) {
	eachBackend(t, func(t *testing.T, b testenv.Backend) {
		rdb, prefix := testenv.Redis(t, b)
		ks := keyspace{prefix: prefix}
		m := newTestMeter(t, rdb, prefix, t.TempDir(), time.Hour)
		shard := shardOf("con_u")
		if err := rdb.Set(context.Background(), ks.creditLeft(shard, "con_u"), "1000000000000", 0).Err(); err != nil {
			t.Fatal(err)
		}
		for i, settled := range []bool{false, true, false} {
			m.Record(Call{InvocationID: fmt.Sprint(i), ConsumerID: "con_u", KeyID: "key_u", FunctionID: "f", Version: 1, At: testStart,
				ComputeMs: 1, Billable: true, Cost: dec("0.3"), Credit: dec("0.2"), Settled: settled})
		}
		if err := m.flushOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		closeMeter(t, m)
		get := func(k string) string {
			v, err := rdb.Get(context.Background(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		// Two unsettled calls of 0.30, 0.20 of each from credit.
		if got := get(ks.spend(shard, "key_u", "202603")); got != "600000000000" {
			t.Fatalf("key spend = %s pico, want 0.60", got)
		}
		if got := get(ks.accountSpend(shard, "con_u", "202603")); got != "600000000000" {
			t.Fatalf("account spend = %s pico, want 0.60", got)
		}
		if got := get(ks.creditLeft(shard, "con_u")); got != "600000000000" {
			t.Fatalf("credit left = %s pico, want 1.00 - 0.40", got)
		}
	})
}
