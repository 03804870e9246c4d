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
)

// admitScript decides one call in one round trip: the spend cap first (a
// refused call uses no rate), then GCRA on the key. KEYS: rate-limit state,
// month spend, consumer's month calls of the function. ARGV: now (µs),
// emission interval (µs, 0 = unlimited), burst, spend threshold in pico-units
// as a decimal string ("" = no cap). Spend is compared as a digit string, so
// no amount ever passes through Lua's floating point.
var admitScript = redis.NewScript(`
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

// PendingUsage is this process's usage that Redis has not yet confirmed; the
// Meter provides it, so the spend cap also counts calls still in flight.
type PendingUsage interface {
	PendingSpend(keyID string, month time.Time) decimal.Decimal
	PendingCalls(consumerID, functionID string, month time.Time) int64
}

var _ PendingUsage = (*Meter)(nil)

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	// Redis holds the shared rate-limit state and the month counters.
	Redis redis.UniversalClient
	// Prefix is put before every Redis key; the same as the Meter's.
	Prefix string
	// Pending is this process's meter; nil when there is none.
	Pending PendingUsage
	// Timeout bounds the Redis round trip before the local limiter decides;
	// default 75ms. On a *redis.Client it bounds the socket read too; on a
	// cluster client only the context is bounded, and the cool-down keeps a
	// hung cluster from costing more than one slow call per Cooldown.
	Timeout time.Duration
	// Cooldown is how long after a Redis failure calls are decided locally
	// without trying Redis; default 1s.
	Cooldown time.Duration
	// Clock decides rate windows and months; default fnmarket.SystemClock.
	Clock fnmarket.Clock
	// Logger receives Redis failures; default slog.Default().
	Logger *slog.Logger
}

// Limiter admits calls: a GCRA rate limit per API key, exact across every
// gateway replica sharing Redis, and the key's monthly spend cap. When Redis
// cannot answer in time it decides locally and says so (Degraded).
type Limiter struct {
	pipe *pipeliner
	cfg  LimiterConfig
	ks   keyspace
	log  *slog.Logger

	mu        sync.Mutex
	buckets   map[string]*tokenBucket
	lastSpend map[keyMonth]int64
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
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = fnmarket.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var client redis.Cmdable = cfg.Redis
	inner := cfg.Redis
	if c, ok := inner.(*redisx.Conn); ok {
		inner = c.UniversalClient
	}
	if c, ok := inner.(*redis.Client); ok {
		client = c.WithTimeout(cfg.Timeout)
	}
	return &Limiter{
		pipe:      newPipeliner(client, admitScript, 4, cfg.Timeout),
		cfg:       cfg,
		ks:        keyspace{prefix: cfg.Prefix},
		log:       cfg.Logger,
		buckets:   map[string]*tokenBucket{},
		lastSpend: map[keyMonth]int64{},
		lastCalls: map[fcKey]int64{},
	}, nil
}

// Admit decides whether one call may go ahead. It never fails because Redis
// is down: the local limiter then decides and the answer is Degraded. An
// error means the request itself is unusable.
func (l *Limiter) Admit(ctx context.Context, req AdmissionRequest) (Admission, error) {
	c := req.Caller
	if c.ConsumerID == "" || c.KeyID == "" || req.FunctionID == "" {
		return Admission{}, fnmarket.Errorf(fnmarket.EINVALID, "admission needs a consumer, a key and a function")
	}
	at := req.At
	if at.IsZero() {
		at = l.cfg.Clock.Now()
	}
	at = at.UTC()
	month := monthOf(at)
	sk := keyMonth{KeyID: c.KeyID, Month: month}
	fk := fcKey{ConsumerID: c.ConsumerID, FunctionID: req.FunctionID, Month: month}
	var pendSpend, pendCalls int64
	if l.cfg.Pending != nil {
		pendSpend = toPico(l.cfg.Pending.PendingSpend(c.KeyID, at))
		pendCalls = l.cfg.Pending.PendingCalls(c.ConsumerID, req.FunctionID, at)
	}
	threshold := ""
	if c.MonthlySpendCap != nil {
		t := toPico(*c.MonthlySpendCap) - pendSpend
		if t <= 0 {
			return Admission{Allowed: false, Reason: fnmarket.ESPENDCAP, Limit: c.RateLimitPerSecond}, nil
		}
		threshold = strconv.FormatInt(t, 10)
	}

	if time.Now().Before(l.downSince()) {
		return l.admitLocally(c, at, sk, fk, pendSpend, pendCalls, threshold), nil
	}
	shard := shardOf(c.ConsumerID)
	keys := []string{
		l.ks.rateLimit(shard, c.KeyID),
		l.ks.spend(shard, spendKey{ConsumerID: c.ConsumerID, KeyID: c.KeyID, Month: month}),
		l.ks.functionCalls(shard, fk),
	}
	var interval float64
	burst := c.RateLimitPerSecond
	if burst > 0 {
		interval = 1e6 / float64(burst)
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	res, err := l.pipe.run(rctx, keys, at.UnixMicro(), strconv.FormatFloat(interval, 'f', -1, 64), burst, threshold)
	cancel()
	if err == nil {
		var a Admission
		var spend, calls int64
		a, spend, calls, err = parseAdmission(res, c.RateLimitPerSecond)
		if err == nil {
			l.mu.Lock()
			l.lastSpend[sk], l.lastCalls[fk] = spend, calls
			l.mu.Unlock()
			a.CallsBefore = calls + pendCalls
			return a, nil
		}
	}
	if ctx.Err() != nil {
		return Admission{}, fmt.Errorf("admit call: %w", ctx.Err())
	}
	l.mu.Lock()
	l.downUntil = time.Now().Add(l.cfg.Cooldown)
	l.mu.Unlock()
	l.log.Warn("metering: redis unavailable for admission; deciding locally", "err", err, "cooldown", l.cfg.Cooldown)
	return l.admitLocally(c, at, sk, fk, pendSpend, pendCalls, threshold), nil
}

func (l *Limiter) downSince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.downUntil
}

// parseAdmission reads admitScript's answer: {verdict, spend, calls,
// remaining, retry-after µs, reset µs}, verdict 0 = rate limited, 1 = allowed,
// 2 = spend cap.
func parseAdmission(res []any, limit int) (Admission, int64, int64, error) {
	if len(res) != 6 {
		return Admission{}, 0, 0, fmt.Errorf("admission script: want 6 values, got %d", len(res))
	}
	var n [6]int64
	for i, v := range res {
		var err error
		switch v := v.(type) {
		case int64:
			n[i] = v
		case string:
			n[i], err = strconv.ParseInt(v, 10, 64)
		default:
			err = fmt.Errorf("unexpected %T", v)
		}
		if err != nil {
			return Admission{}, 0, 0, fmt.Errorf("admission script value %d: %w", i, err)
		}
	}
	a := Admission{
		Allowed:    n[0] == 1,
		Limit:      limit,
		Remaining:  int(n[3]),
		RetryAfter: time.Duration(n[4]) * time.Microsecond,
		Reset:      time.Duration(n[5]) * time.Microsecond,
	}
	switch n[0] {
	case 0:
		a.Reason = fnmarket.ERATELIMITED
	case 2:
		a.Reason = fnmarket.ESPENDCAP
	}
	return a, n[1], n[2], nil
}

// admitLocally decides without Redis: a token bucket per key in this process
// at the key's rate, and the spend cap against the last spend Redis reported
// plus this process's unconfirmed spend. With N replicas the effective rate
// can reach N times the limit while Redis is down.
func (l *Limiter) admitLocally(c Caller, at time.Time, sk keyMonth, fk fcKey, pendSpend, pendCalls int64, threshold string) Admission {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := Admission{Allowed: true, Limit: c.RateLimitPerSecond, Degraded: true, CallsBefore: l.lastCalls[fk] + pendCalls}
	if threshold != "" {
		t, _ := strconv.ParseInt(threshold, 10, 64)
		if l.lastSpend[sk] >= t {
			a.Allowed, a.Reason = false, fnmarket.ESPENDCAP
			return a
		}
	}
	if c.RateLimitPerSecond <= 0 {
		return a
	}
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
	if b.tokens >= 1 {
		b.tokens--
		a.Remaining = int(b.tokens)
		a.Reset = time.Duration((rate - b.tokens) / rate * float64(time.Second))
		return a
	}
	a.Allowed, a.Reason = false, fnmarket.ERATELIMITED
	a.RetryAfter = time.Duration((1 - b.tokens) / rate * float64(time.Second))
	a.Reset = time.Duration((rate - b.tokens) / rate * float64(time.Second))
	return a
}

// tokenBucket is the local limiter's state for one key.
type tokenBucket struct {
	tokens float64
	last   time.Time
}
