package metering

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/usage"
)

// beforeHoldsAdmitScript is the admission script as it was before issue 11
// (commit 224f21b): spend cap against flushed spend, then GCRA; no position,
// no hold, no settlement. BenchmarkAdmission runs it as the yardstick.
var beforeHoldsAdmitScript = redis.NewScript(`
local spend = redis.call('GET', KEYS[2]) or '0'
local fc = redis.call('GET', KEYS[3]) or '0'
local cap = ARGV[4]
if cap ~= '' then
  if string.len(spend) > string.len(cap) or (string.len(spend) == string.len(cap) and spend >= cap) then
    return {2, spend, fc, 0, 0, 0}
  end
end
local T = tonumber(ARGV[2])
if T <= 0 then
  return {1, spend, fc, 0, 0, 0}
end
local now = tonumber(ARGV[1])
local burst = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local newtat = tat + T
local allowAt = newtat - burst * T
if now < allowAt then
  return {0, spend, fc, 0, string.format('%.0f', allowAt - now), string.format('%.0f', tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', math.ceil((newtat - now) / 1000) + 60000)
return {1, spend, fc, math.floor((now - allowAt) / T), 0, string.format('%.0f', newtat - now)}
`)

// BenchmarkAdmission measures one call's admission round trips under
// concurrency (16 goroutines per core, 1000 consumers): "before" is the
// pre-issue-11 script alone; the others are Admit then, when the call holds
// something, Settle, as the gateway now does: with no limit (nothing held,
// no settlement), with a key cap, and with an account cap and prepaid
// credit; then the same three with a Leaser (leases: admission and
// settlement in memory, a round trip per lease). It reports calls/s and the p50 and p99
// of one call's admission plus settlement.
func BenchmarkAdmission(b *testing.B) {
	p := testPricing()
	big := decimal.RequireFromString("1000000")
	unlimited := func(i int) Caller { return Caller{} }
	keyCap := func(i int) Caller { return Caller{MonthlySpendCap: &big} }
	capAndCredit := func(i int) Caller {
		return Caller{Account: usage.AccountBilling{MonthlySpendCap: &big, CreditGranted: big, CreditCurrency: "USD"}}
	}
	cases := []struct {
		name   string
		caller func(i int) Caller
		leases bool
	}{
		{"before", nil, false},
		{"holds-unlimited", unlimited, false},
		{"holds-key-cap", keyCap, false},
		{"holds-account-cap-and-credit", capAndCredit, false},
		{"leases-unlimited", unlimited, true},
		{"leases-key-cap", keyCap, true},
		{"leases-account-cap-and-credit", capAndCredit, true},
	}
	for _, be := range testenv.Backends() {
		for _, tc := range cases {
			b.Run(be.Name+"/"+tc.name, func(b *testing.B) {
				rdb, prefix := testenv.Redis(b, be)
				l, err := NewLimiter(LimiterConfig{Redis: rdb, Prefix: prefix, Timeout: 5 * time.Second, Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				var adm admitter = l
				if tc.leases {
					// As fnmarket configures them: the embedded Redis has
					// one replica (cmd/fnmarket, startGateway).
					cfg := LeaseConfig{}
					if be.Name == "embedded" {
						cfg = LeaseConfig{MaxCalls: 4096, Sole: true}
					}
					adm = NewLeaser(l, cfg)
				}
				before := newPipeliner(rdb, beforeHoldsAdmitScript, 4, 5*time.Second)
				ks := keyspace{prefix: prefix}
				var n atomic.Int64
				var mu sync.Mutex
				var lat []time.Duration
				b.SetParallelism(16)
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					var mine []time.Duration
					ctx := context.Background()
					for pb.Next() {
						i := n.Add(1)
						consumer := "con_" + strconv.FormatInt(i%1000, 10)
						t0 := time.Now()
						if tc.caller == nil {
							shard := shardOf(consumer)
							keys := []string{ks.rateLimit(shard, "key_"+consumer), ks.spend(shard, "key_"+consumer, "202603"),
								ks.position(shard, fcKey{ConsumerID: consumer, FunctionID: "fn", Month: "202603"})}
							if _, err := before.run(ctx, keys, time.Now().UnixMicro(), "0", 0, "999999999999999999"); err != nil {
								b.Error(err)
								return
							}
						} else {
							c := tc.caller(int(i))
							c.ConsumerID, c.KeyID = consumer, "key_"+consumer
							req := AdmissionRequest{Caller: c, InvocationID: fmt.Sprint("inv_", i), FunctionID: "fn", Version: 1, Pricing: p, TimeoutMs: 1000, At: testStart}
							a, err := adm.Admit(ctx, req)
							if err != nil || !a.Allowed {
								b.Errorf("admission %+v, %v", a, err)
								return
							}
							// As the gateway: a call that holds nothing and ran
							// needs no settlement.
							if a.Hold.IsPositive() {
								if _, err := adm.Settle(ctx, req, a, true, p.CallCost(a.CallsBefore, 3)); err != nil {
									b.Error(err)
									return
								}
							}
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
				elapsed := time.Since(start)
				b.StopTimer()
				if len(lat) == 0 {
					return
				}
				slices.Sort(lat)
				b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "calls/s")
				b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
			})
		}
	}
}
