package metering

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/usage"
)

// luaMoney are the Lua helpers both money scripts share. Amounts travel as
// decimal strings of pico-units. Lua numbers are doubles, exact only below
// 2^53, so sums that can grow large (spend, credit) are only ever changed
// with INCRBY/DECRBY, which Redis does on 64-bit integers, and compared as
// digit strings; only one call's amounts, which admission keeps below
// maxCallPico, are added as numbers.
const luaMoney = `
local function le(a, b)
  if string.sub(a, 1, 1) == '-' then return true end
  if string.sub(b, 1, 1) == '-' then return false end
  if #a ~= #b then return #a < #b end
  return a <= b
end
local function int(n) return string.format('%.0f', n) end
`

// luaSweep releases the consumer's expired holds: sweep(now ms). KEYS 6
// credit left, 7 credit granted, 8 holds, 9 hold expiries, in both scripts
// that use it. A call's hold (its gateway died mid-call) is released: the
// call was never recorded. A lease's hold (record ending in "|L", see
// Leaser) is kept as spent, and its credit as used: the replica that held it
// may have spent any part of it, and a cap or a balance must never be
// exceeded. seedCredit(granted, consumed) brings the credit-left counter in
// line with the account's grants (seeding it when Redis has none) and
// returns it.
const luaSweep = `
local function sweep(nowms)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[9], '-inf', nowms, 'LIMIT', 0, 16)) do
    local rec = redis.call('HGET', KEYS[8], id)
    if rec and string.sub(rec, -2) ~= '|L' then
      local hold, ch, ks, as = string.match(rec, '^(%d+)|(%d+)|([^|]*)|([^|]*)')
      if hold and hold ~= '0' then
        redis.call('DECRBY', ks, hold)
        redis.call('DECRBY', as, hold)
      end
      if ch and ch ~= '0' then redis.call('INCRBY', KEYS[6], ch) end
    end
    redis.call('HDEL', KEYS[8], id)
    redis.call('ZREM', KEYS[9], id)
  end
end
local function seedCredit(granted, consumed)
  local g = redis.call('GET', KEYS[7])
  if not g or redis.call('EXISTS', KEYS[6]) == 0 then
    redis.call('SET', KEYS[6], granted)
    redis.call('DECRBY', KEYS[6], consumed)
    redis.call('SET', KEYS[7], granted)
  elseif g ~= granted and le(g, granted) then
    redis.call('INCRBY', KEYS[6], granted)
    redis.call('DECRBY', KEYS[6], g)
    redis.call('SET', KEYS[7], granted)
  end
  return redis.call('GET', KEYS[6]) or '0'
end
`

// admitScript decides one call in one round trip and, when it is admitted,
// gives it its position and holds its worst case. KEYS: 1 rate-limit state,
// 2 positions handed out, 3 positions given back, 4 the key's month spend,
// 5 the account's month spend, 6 credit left, 7 credit granted, 8 holds,
// 9 hold expiries (all in the consumer's slot). ARGV: 1 now (µs), 2 GCRA
// emission interval (µs, 0 = unlimited), 3 burst, 4 the key's cap ("" =
// none), 5 the account's cap ("" = none), 6 standing (a, f or s), 7 credit
// granted ("" = credit does not apply), 8 credit consumed (seeds credit left
// when Redis has none), 9 worst-case compute (timeout x per-ms price), 10
// the invocation id, 11 when the hold expires (ms), 12 counter TTL (s), 13
// "1" to hold the worst case (the caller is limited: see limited), 14 the
// number of steps of the version's catalog.Pricing.Schedule, then each
// step's first position and per-call price. The script looks the call's
// position up in that table; it knows nothing of free calls or tiers.
//
// Verdicts: 0 rate limited, 1 admitted, 2 spend cap, 3 payment required.
// A call nothing limits holds nothing (it answers a hold of 0): its cost
// reaches the spend counters when the meter flushes it, so a cap set later in
// the month still counts it, and it needs no settlement unless it never
// reached the function (to give its position back).
// Expired holds of the consumer (calls whose gateway died) are released
// first. A refused call changes nothing else: it takes no position and
// holds nothing.
var admitScript = redis.NewScript(luaMoney + luaSweep + `
sweep(math.floor(tonumber(ARGV[1]) / 1000))
if ARGV[6] == 's' then return {3, 0, '0', '0', 0, 0, 0} end

local pos
local ret = redis.call('ZRANGE', KEYS[3], 0, 0)
if ret[1] then pos = tonumber(ret[1]) else pos = tonumber(redis.call('GET', KEYS[2]) or '0') end
local price = 0
for t = 0, tonumber(ARGV[14]) - 1 do
  if pos < tonumber(ARGV[15 + 2 * t]) then break end
  price = tonumber(ARGV[16 + 2 * t])
end
local W = int(price + tonumber(ARGV[9]))

local ch = '0'
if ARGV[7] ~= '' then
  local left = seedCredit(ARGV[7], ARGV[8])
  if not le(left, '0') then
    if le(W, left) then ch = W else ch = left end
  end
end

local held = {}
local function undo()
  for _, k in ipairs(held) do redis.call('DECRBY', k, W) end
end
local hold = ARGV[13] == '1' and W ~= '0'
if hold then
  for i, k in ipairs({KEYS[4], KEYS[5]}) do
    redis.call('INCRBY', k, W)
    redis.call('EXPIRE', k, ARGV[12])
    held[#held + 1] = k
    local cap = ARGV[3 + i]
    if cap ~= '' and not le(redis.call('GET', k), cap) then
      undo()
      return {2, pos, W, '0', 0, 0, 0}
    end
  end
end
if ARGV[6] == 'f' and W ~= ch then
  undo()
  return {3, pos, W, ch, 0, 0, 0}
end

local remaining, reset = 0, 0
local T = tonumber(ARGV[2])
if T > 0 then
  local now = tonumber(ARGV[1])
  local burst = tonumber(ARGV[3])
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  local newtat = tat + T
  local allowAt = newtat - burst * T
  if now < allowAt then
    undo()
    return {0, pos, W, '0', 0, int(allowAt - now), int(tat - now)}
  end
  redis.call('SET', KEYS[1], int(newtat), 'PX', math.ceil((newtat - now) / 1000) + 60000)
  remaining = math.floor((now - allowAt) / T)
  reset = int(newtat - now)
end

if ret[1] then
  redis.call('ZREM', KEYS[3], ret[1])
else
  if redis.call('INCR', KEYS[2]) == 1 then redis.call('EXPIRE', KEYS[2], ARGV[12]) end
end
if hold then
  if ch ~= '0' then redis.call('DECRBY', KEYS[6], ch) end
  redis.call('HSET', KEYS[8], ARGV[10], W .. '|' .. ch .. '|' .. KEYS[4] .. '|' .. KEYS[5])
  redis.call('ZADD', KEYS[9], ARGV[11], ARGV[10])
end
if not hold then W = '0' end
return {1, pos, W, ch, remaining, 0, reset}
`)

// settleScript replaces a call's hold by its real cost. KEYS: 1 holds, 2
// hold expiries, 3 the key's month spend, 4 the account's month spend, 5
// credit left, 6 positions given back. ARGV: 1 invocation id, 2 real cost,
// 3 "1" if the call reached the function, 4 its position, 5 counter TTL (s).
// A call that never reached the function costs nothing and gives its
// position back. It answers {1, credit used} when it found the hold, {0, "0"}
// when the hold was already released (it expired): the real cost is then
// added to the spend counters and no credit is used.
var settleScript = redis.NewScript(luaMoney + `
local actual = tonumber(ARGV[2])
if ARGV[3] ~= '1' then
  actual = 0
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[4])
  redis.call('EXPIRE', KEYS[6], ARGV[5])
end
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then
  if actual > 0 then
    redis.call('INCRBY', KEYS[3], ARGV[2])
    redis.call('INCRBY', KEYS[4], ARGV[2])
  end
  return {0, '0'}
end
local hold, ch = string.match(rec, '^(%d+)|(%d+)|')
hold, ch = tonumber(hold), tonumber(ch)
local use = math.min(actual, ch)
local d = actual - hold
if d ~= 0 then
  redis.call('INCRBY', KEYS[3], int(d))
  redis.call('INCRBY', KEYS[4], int(d))
end
if ch > use then redis.call('INCRBY', KEYS[5], int(ch - use)) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {1, int(use)}
`)

// maxCallPico bounds one call's worst case (1000 in the currency): the
// admission script adds a call's amounts as Lua numbers, exact below 2^53.
const maxCallPico = int64(1000) * 1e12

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// Redis holds the shared rate-limit state, positions, holds and spend.
	Redis redis.UniversalClient
	// Prefix is put before every Redis key; the same as the Meter's.
	Prefix string
	// Timeout bounds the Redis round trip before the local limiter decides;
	// default 75ms. On a *redis.Client it bounds the socket read too; on a
	// cluster client only the context is bounded, and the cool-down keeps a
	// hung cluster from costing more than one slow call per Cooldown.
	Timeout time.Duration
	// LimitedTimeout bounds the Redis round trip of a call that a cap,
	// credit or standing limits; default 2s. Such a call cannot be decided
	// locally, and an admission that timed out may still have run and hold
	// its worst case until the hold expires, so it waits longer than Timeout
	// before it is refused as unavailable.
	LimitedTimeout time.Duration
	// Cooldown is how long after a Redis failure calls are decided locally
	// without trying Redis; default 1s.
	Cooldown time.Duration
	// HoldGrace is how long past a call's timeout its hold is kept when it
	// is never settled (its gateway died); the next admission of the same
	// consumer then releases it. Default 2 minutes.
	HoldGrace time.Duration
	// CounterTTL is how long month counters live after their last change;
	// default 62 days.
	CounterTTL time.Duration
	// Clock decides rate windows and months; default fnmarket.SystemClock.
	Clock fnmarket.Clock
	// Logger receives Redis failures; default slog.Default().
	Logger *slog.Logger
}

// Limiter admits calls and settles them. Admission is one Redis script in
// the consumer's slot: it gives the call its position in the consumer's
// month of the function (which decides its price: catalog.Pricing.CallCost),
// checks the key's GCRA rate limit, and holds the call's worst case (price
// at its position + timeout x per-ms price) against the key's and the
// account's monthly caps and the account's prepaid credit, so that caps and
// credit hold exactly on any number of replicas and under any concurrency.
// Settle replaces the hold by the call's real cost when it ends.
//
// When Redis cannot answer in time, a call that a cap, credit or standing
// limits is refused (503, retry): a cap is a promise and no replica can keep
// it alone. Other calls are decided by a local token bucket, priced at the
// position last seen plus this replica's calls since (Degraded).
type Limiter struct {
	admitPipe   *pipeliner // calls no cap, credit or standing limits
	limitedPipe *pipeliner // calls that one does (LimitedTimeout)
	settlePipe  *pipeliner
	cfg         LimiterConfig
	ks          keyspace
	log         *slog.Logger

	mu        sync.Mutex
	buckets   map[string]*tokenBucket
	lastCalls map[fcKey]int64
	downUntil time.Time // monotonic wall time, not the injected clock: an operational cool-down
}

// NewLimiter returns a Limiter.
func NewLimiter(cfg LimiterConfig) (*Limiter, error) {
	if cfg.Redis == nil {
		return nil, errors.New("new limiter: no redis client")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 75 * time.Millisecond
	}
	if cfg.LimitedTimeout <= 0 {
		cfg.LimitedTimeout = 2 * time.Second
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = time.Second
	}
	if cfg.HoldGrace <= 0 {
		cfg.HoldGrace = 2 * time.Minute
	}
	if cfg.CounterTTL <= 0 {
		cfg.CounterTTL = 62 * 24 * time.Hour
	}
	if cfg.Clock == nil {
		cfg.Clock = fnmarket.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Limiter{
		cfg:       cfg,
		ks:        keyspace{prefix: cfg.Prefix},
		log:       cfg.Logger,
		buckets:   map[string]*tokenBucket{},
		lastCalls: map[fcKey]int64{},
	}
	l.admitPipe = newPipeliner(l.client(cfg.Timeout), admitScript, 4, cfg.Timeout)
	l.limitedPipe = newPipeliner(l.client(cfg.LimitedTimeout), admitScript, 4, cfg.LimitedTimeout)
	l.settlePipe = newPipeliner(l.client(cfg.LimitedTimeout), settleScript, 2, cfg.LimitedTimeout)
	return l, nil
}

// client is the Redis client with its socket reads bounded by timeout where
// the client type allows it (see LimiterConfig.Timeout).
func (l *Limiter) client(timeout time.Duration) redis.Cmdable {
	inner := l.cfg.Redis
	if c, ok := inner.(*redisx.Conn); ok {
		inner = c.UniversalClient
	}
	if c, ok := inner.(*redis.Client); ok {
		return c.WithTimeout(timeout)
	}
	return l.cfg.Redis
}

// markDown starts a cool-down after a Redis failure: calls are decided
// locally until it ends.
func (l *Limiter) markDown(err error) {
	l.mu.Lock()
	l.downUntil = time.Now().Add(l.cfg.Cooldown)
	l.mu.Unlock()
	l.log.Warn("metering: redis unavailable for admission; deciding locally", "err", err, "cooldown", l.cfg.Cooldown)
}

// notePosition records next as the position Redis last gave for fk, for
// the local limiter to price calls from while Redis is down.
func (l *Limiter) notePosition(fk fcKey, next int64) {
	l.mu.Lock()
	l.lastCalls[fk] = next
	l.mu.Unlock()
}

// limited reports whether admission of c needs Redis to be exact: a cap,
// prepaid credit or a standing short of active.
func limited(c Caller) bool {
	a := c.Account
	return c.MonthlySpendCap != nil || a.MonthlySpendCap != nil || a.CreditGranted.IsPositive() ||
		(a.Standing != "" && a.Standing != usage.StandingActive)
}

// Admit decides whether one call may go ahead and, if so, gives it its
// position and holds its worst case. It never fails because Redis is down
// (see Limiter); an error means the request itself is unusable.
func (l *Limiter) Admit(ctx context.Context, req AdmissionRequest) (Admission, error) {
	c := req.Caller
	at, fk, worstPico, refused, err := l.precheck(req)
	if err != nil || refused != nil {
		return deref(refused), err
	}
	if time.Now().Before(l.downSince()) {
		return l.admitLocally(c, at, fk, req), nil
	}
	args := l.admitArgs(req, at, min(worstPico, maxCallPico))
	keys := l.ks.admission(shardOf(c.ConsumerID), c, fk)
	pipe, timeout := l.admitPipe, l.cfg.Timeout
	if limited(c) {
		pipe, timeout = l.limitedPipe, l.cfg.LimitedTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	res, err := pipe.run(rctx, keys, args...)
	cancel()
	if err == nil {
		var a Admission
		a, err = parseAdmission(res, c.RateLimitPerSecond)
		if err == nil {
			if a.Allowed {
				l.notePosition(fk, a.CallsBefore+1)
			}
			return a, nil
		}
	}
	if ctx.Err() != nil {
		return Admission{}, fmt.Errorf("admit call: %w", ctx.Err())
	}
	l.markDown(err)
	return l.admitLocally(c, at, fk, req), nil
}

// precheck is what both admitters decide before any shared state: the
// request's validity, the call's time (UTC) and month, its compute worst case
// (pico-units), and a refusal that needs no state (a suspended account, or a
// worst case beyond what one admission can hold exactly: no cap is meant for
// a single call this large).
func (l *Limiter) precheck(req AdmissionRequest) (at time.Time, fk fcKey, worstPico int64, refused *Admission, err error) {
	c := req.Caller
	if c.ConsumerID == "" || c.KeyID == "" || req.FunctionID == "" || req.InvocationID == "" {
		return at, fk, 0, nil, fnmarket.Errorf(fnmarket.EINVALID, "admission needs a consumer, a key, a function and an invocation id")
	}
	at = req.At
	if at.IsZero() {
		at = l.cfg.Clock.Now()
	}
	at = at.UTC()
	fk = fcKey{ConsumerID: c.ConsumerID, FunctionID: req.FunctionID, Month: monthOf(at)}
	if c.Account.Standing == usage.StandingSuspended {
		return at, fk, 0, &Admission{Reason: fnmarket.EPAYMENTREQUIRED, Limit: c.RateLimitPerSecond}, nil
	}
	worstPico = toPico(req.Pricing.ComputeCost(max(req.TimeoutMs, 0)))
	if worstPico > maxCallPico && limited(c) {
		return at, fk, 0, &Admission{Reason: fnmarket.ESPENDCAP, Limit: c.RateLimitPerSecond}, nil
	}
	return at, fk, worstPico, nil, nil
}

func deref(a *Admission) Admission {
	if a == nil {
		return Admission{}
	}
	return *a
}

// admitArgs lays out admitScript's ARGV.
func (l *Limiter) admitArgs(req AdmissionRequest, at time.Time, computeWorst int64) []any {
	c, p := req.Caller, req.Pricing
	standing := "a"
	if c.Account.Standing == usage.StandingFreeOnly {
		standing = "f"
	}
	m := moneyArgsOf(c, creditApplies(req))
	timeout := time.Duration(max(req.TimeoutMs, 0)) * time.Millisecond
	expires := at.Add(timeout + l.cfg.HoldGrace).UnixMilli()
	sched := p.Schedule()
	args := make([]any, 0, 14+2*len(sched))
	args = append(args, at.UnixMicro(), emissionInterval(c.RateLimitPerSecond), c.RateLimitPerSecond,
		m.keyCap, m.accountCap, standing, m.granted, m.consumed,
		strconv.FormatInt(computeWorst, 10), req.InvocationID, expires, int64(l.cfg.CounterTTL/time.Second),
		boolArg(limited(c)), len(sched))
	for _, st := range sched {
		args = append(args, st.From, priceArg(st.PerCall))
	}
	return args
}

// moneyArgs are a caller's caps and credit as the scripts take them:
// pico-unit strings, "" for a cap that is not set or credit that does not
// apply.
type moneyArgs struct{ keyCap, accountCap, granted, consumed string }

func moneyArgsOf(c Caller, credit bool) moneyArgs {
	capArg := func(d *decimal.Decimal) string {
		if d == nil {
			return ""
		}
		return strconv.FormatInt(toPico(*d), 10)
	}
	m := moneyArgs{keyCap: capArg(c.MonthlySpendCap), accountCap: capArg(c.Account.MonthlySpendCap), consumed: "0"}
	if a := c.Account; credit && a.CreditGranted.IsPositive() {
		m.granted = strconv.FormatInt(toPico(a.CreditGranted), 10)
		m.consumed = strconv.FormatInt(toPico(a.CreditConsumed), 10)
	}
	return m
}

// emissionInterval is the GCRA emission interval of a limit per second, in
// µs as the scripts take it ("0": no limit).
func emissionInterval(limit int) string {
	if limit <= 0 {
		return "0"
	}
	return strconv.FormatFloat(1e6/float64(limit), 'f', -1, 64)
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// priceArg is a per-call price in pico-units for admitScript (catalog keeps
// prices at most 1000 with 12 decimals, so they are exact there).
func priceArg(d decimal.Decimal) string { return strconv.FormatInt(min(toPico(d), maxCallPico), 10) }

// Settle replaces a call's hold by its real cost (zero, and its position
// given back, when it never reached the function) and reports how much of
// the cost prepaid credit paid. An error means Redis could not be told; the
// caller records the call as unsettled, and the meter settles its spend when
// it flushes it (the hold itself is released when it expires).
func (l *Limiter) Settle(ctx context.Context, req AdmissionRequest, adm Admission, reached bool, cost decimal.Decimal) (decimal.Decimal, error) {
	c := req.Caller
	if adm.Degraded {
		// Decided without Redis: nothing is held there.
		return decimal.Zero, nil
	}
	at := req.At.UTC()
	month := monthOf(at)
	shard := shardOf(c.ConsumerID)
	fk := fcKey{ConsumerID: c.ConsumerID, FunctionID: req.FunctionID, Month: month}
	keys := []string{
		l.ks.holds(shard, c.ConsumerID),
		l.ks.holdExpiry(shard, c.ConsumerID),
		l.ks.spend(shard, c.KeyID, month),
		l.ks.accountSpend(shard, c.ConsumerID, month),
		l.ks.creditLeft(shard, c.ConsumerID),
		l.ks.returned(shard, fk),
	}
	r := "0"
	if reached {
		r = "1"
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.LimitedTimeout)
	defer cancel()
	res, err := l.settlePipe.run(rctx, keys, req.InvocationID, strconv.FormatInt(toPico(cost), 10), r, adm.CallsBefore,
		int64(l.cfg.CounterTTL/time.Second))
	if err != nil {
		return decimal.Zero, fmt.Errorf("settle call %s: %w", req.InvocationID, err)
	}
	if len(res) != 2 {
		return decimal.Zero, fmt.Errorf("settle call %s: want 2 values, got %d", req.InvocationID, len(res))
	}
	used, err := scriptInt(res[1])
	if err != nil {
		return decimal.Zero, fmt.Errorf("settle call %s: %w", req.InvocationID, err)
	}
	return fromPico(used), nil
}

func (l *Limiter) downSince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.downUntil
}

func scriptInt(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case string:
		return strconv.ParseInt(v, 10, 64)
	default:
		return 0, fmt.Errorf("unexpected %T", v)
	}
}

// parseAdmission reads admitScript's answer: {verdict, position, hold,
// credit hold, remaining, retry-after µs, reset µs}.
func parseAdmission(res []any, limit int) (Admission, error) {
	if len(res) != 7 {
		return Admission{}, fmt.Errorf("admission script: want 7 values, got %d", len(res))
	}
	var n [7]int64
	for i, v := range res {
		var err error
		if n[i], err = scriptInt(v); err != nil {
			return Admission{}, fmt.Errorf("admission script value %d: %w", i, err)
		}
	}
	a := Admission{
		Allowed:     n[0] == 1,
		Limit:       limit,
		Remaining:   int(n[4]),
		RetryAfter:  time.Duration(n[5]) * time.Microsecond,
		Reset:       time.Duration(n[6]) * time.Microsecond,
		CallsBefore: n[1],
	}
	switch n[0] {
	case 0:
		a.Reason = fnmarket.ERATELIMITED
	case 2:
		a.Reason = fnmarket.ESPENDCAP
	case 3:
		a.Reason = fnmarket.EPAYMENTREQUIRED
	}
	if a.Allowed {
		a.Hold, a.CreditHold = fromPico(n[2]), fromPico(n[3])
	}
	return a, nil
}

// admitLocally decides without Redis. A call that a cap, credit or standing
// limits is refused as unavailable: no replica alone can keep those exact.
// Others pass a token bucket per key in this process at the key's rate (with
// N replicas the effective rate can reach N times the limit while Redis is
// down) and are priced at the position Redis last gave plus this replica's
// calls since.
func (l *Limiter) admitLocally(c Caller, at time.Time, fk fcKey, req AdmissionRequest) Admission {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := Admission{Allowed: true, Limit: c.RateLimitPerSecond, Degraded: true}
	if limited(c) {
		a.Allowed, a.Reason = false, fnmarket.EUNAVAILABLE
		return a
	}
	if c.RateLimitPerSecond > 0 {
		if len(l.buckets) > 100_000 {
			for k, b := range l.buckets {
				if at.Sub(b.last) > time.Minute {
					delete(l.buckets, k)
				}
			}
		}
		b := l.buckets[c.KeyID]
		if b == nil {
			b = &tokenBucket{tokens: float64(c.RateLimitPerSecond), last: at}
			l.buckets[c.KeyID] = b
		}
		rate := float64(c.RateLimitPerSecond)
		if dt := at.Sub(b.last).Seconds(); dt > 0 {
			b.tokens = math.Min(rate, b.tokens+dt*rate)
			b.last = at
		}
		if b.tokens < 1 {
			a.Allowed, a.Reason = false, fnmarket.ERATELIMITED
			a.RetryAfter = time.Duration((1 - b.tokens) / rate * float64(time.Second))
			a.Reset = time.Duration((rate - b.tokens) / rate * float64(time.Second))
			return a
		}
		b.tokens--
		a.Remaining = int(b.tokens)
		a.Reset = time.Duration((rate - b.tokens) / rate * float64(time.Second))
	}
	a.CallsBefore = l.lastCalls[fk]
	l.lastCalls[fk]++
	if len(l.lastCalls) > 100_000 {
		clear(l.lastCalls)
	}
	return a
}

// tokenBucket is the local limiter's state for one key.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// Positions reads, without changing anything, the position the next call of
// a consumer's function will take this month (what admission would give it
// now): the portal's "your next call costs" figure.
type Positions struct {
	rdb redis.UniversalClient
	ks  keyspace
}

// NewPositions returns a Positions over the Meter's Redis and prefix.
func NewPositions(rdb redis.UniversalClient, prefix string) *Positions {
	return &Positions{rdb: rdb, ks: keyspace{prefix: prefix}}
}

// CallsThisMonth is the position consumerID's next call of functionID in the
// UTC month of at would take: the lowest position given back by a call that
// never reached the function, else the count of positions handed out.
func (p *Positions) CallsThisMonth(ctx context.Context, consumerID, functionID string, at time.Time) (int64, error) {
	fk := fcKey{ConsumerID: consumerID, FunctionID: functionID, Month: monthOf(at)}
	shard := shardOf(consumerID)
	ret, err := p.rdb.ZRange(ctx, p.ks.returned(shard, fk), 0, 0).Result()
	if err != nil {
		return 0, fmt.Errorf("read returned positions: %w", err)
	}
	if len(ret) == 1 {
		return strconv.ParseInt(ret[0], 10, 64)
	}
	n, err := p.rdb.Get(ctx, p.ks.position(shard, fk)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read positions: %w", err)
	}
	return n, nil
}
