package metering

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/usage"
)

// leaseScript takes, renews and gives back one key's leases in one round
// trip in the consumer's slot. KEYS: as admitScript (1 rate-limit state, 2
// positions handed out, 3 positions given back, 4 the key's month spend, 5
// the account's month spend, 6 credit left, 7 credit granted, 8 holds, 9
// hold expiries). ARGV:
//
//	1 now (µs)               2 GCRA emission interval (µs, 0 = no limit)
//	3 burst                  4 tokens wanted           5 tokens given back
//	6 key cap ("" = none)    7 account cap ("" = none)
//	8 credit granted ("" = credit does not apply)     9 credit consumed
//	10 lease id              11 spent under the lease since it was last renewed
//	12 credit used since then                          13 hold in flight (must stay held)
//	14 hold floor (in flight + the waiting call's worst case; "" = no money lease)
//	15 unit (one call's worst case)                    16 units wanted above the floor
//	17 lease expiry (ms)     18 counter TTL (s)         19 positions wanted
//	20 where the last step of the schedule begins (from there on every
//	   position has the same price)
//	21 "1" when credit limits the key (a free_only account): then, like a
//	   cap, a lease takes at most a quarter of the credit left
//	22 number of positions given back, then each of them
//
// Tokens are GCRA emissions taken ahead: the state advances by one interval
// per token, as if each token were a call admitted now; tokens given back
// move it back. The money lease is a hold like a call's ("hold|credit|spend
// key|account spend key|L"), counted in both spend counters: renewing it
// commits what was spent under it and holds the floor plus as many units as
// were wanted, at most a quarter of the room left under the caps (so no
// replica takes all of a scarce cap), else just the floor, else only what is
// in flight (then the waiting call does not fit: answer 0). Its credit is
// the least of the hold and the credit left. Positions come from the given
// back ones first, lowest first, then from the counter; a block only where
// every position has the same price (ARGV 20), one position otherwise, for
// the call waiting for it: were a replica to hold free or earlier-tier
// positions while another charged later ones, a consumer who stopped calling
// would pay for calls that should have been free.
//
// Answer: {money ok (1) or the floor did not fit (0), tokens granted, µs
// until the next token, hold, credit hold, first position of the block, its
// length, then each given-back position taken}.
var leaseScript = redis.NewScript(luaMoney + luaSweep + `
local now = tonumber(ARGV[1])
sweep(math.floor(now / 1000))
local ttl = ARGV[18]

local mok, H2, C2 = 1, '0', '0'
if ARGV[14] ~= '' then
  local rec = redis.call('HGET', KEYS[8], ARGV[10])
  local H, C, S, U = 0, '0', tonumber(ARGV[11]), ARGV[12]
  if rec then
    local h, c = string.match(rec, '^(%d+)|(%d+)|')
    H, C = tonumber(h), c
  else
    -- Never taken, or expired and kept as spent: what was spent under it
    -- is already counted.
    S, U = 0, '0'
  end
  local O, floor, unit, units = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
  if unit > 0 and units > 0 then
    local room = math.huge
    for i, k in ipairs({KEYS[4], KEYS[5]}) do
      local cap = ARGV[5 + i]
      if cap ~= '' then
        room = math.min(room, tonumber(cap) - tonumber(redis.call('GET', k) or '0') + H - S - floor)
      end
    end
    if ARGV[21] == '1' then
      local left = seedCredit(ARGV[8], ARGV[9])
      room = math.min(room, tonumber(left) + tonumber(C) - tonumber(U) - floor)
    end
    if room < math.huge then units = math.min(units, math.max(0, math.floor(room / 4 / unit))) end
  end
  local function fits(target)
    local d = int(S + target - H)
    for _, k in ipairs({KEYS[4], KEYS[5]}) do
      redis.call('INCRBY', k, d)
      redis.call('EXPIRE', k, ttl)
    end
    for i, k in ipairs({KEYS[4], KEYS[5]}) do
      local cap = ARGV[5 + i]
      if cap ~= '' and not le(redis.call('GET', k), cap) then
        redis.call('DECRBY', KEYS[4], d)
        redis.call('DECRBY', KEYS[5], d)
        return false
      end
    end
    return true
  end
  local target = floor + unit * units
  if not fits(target) then
    target = floor
    if units == 0 or not fits(target) then
      target = O
      mok = 0
      if not fits(target) then
        -- Only when a kept expired lease already counts what is in
        -- flight: hold it once more rather than exceed a cap.
        redis.call('INCRBY', KEYS[4], int(target))
        redis.call('INCRBY', KEYS[5], int(target))
      end
    end
  end
  H2 = int(target)
  if ARGV[8] ~= '' then
    seedCredit(ARGV[8], ARGV[9])
    if rec then
      redis.call('INCRBY', KEYS[6], C)
      redis.call('DECRBY', KEYS[6], U)
    end
    local left = redis.call('GET', KEYS[6]) or '0'
    if not le(left, '0') then
      if le(H2, left) then C2 = H2 else C2 = left end
      if C2 ~= '0' then redis.call('DECRBY', KEYS[6], C2) end
    end
  end
  if H2 == '0' and C2 == '0' then
    redis.call('HDEL', KEYS[8], ARGV[10])
    redis.call('ZREM', KEYS[9], ARGV[10])
  else
    redis.call('HSET', KEYS[8], ARGV[10], H2 .. '|' .. C2 .. '|' .. KEYS[4] .. '|' .. KEYS[5] .. '|L')
    redis.call('ZADD', KEYS[9], ARGV[17], ARGV[10])
  end
end

local granted, wait = 0, 0
local T = tonumber(ARGV[2])
if T > 0 then
  local burst = tonumber(ARGV[3])
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  local back = tonumber(ARGV[5])
  if back > 0 then tat = tat - back * T end
  if tat < now then tat = now end
  local want = tonumber(ARGV[4])
  granted = math.max(0, math.min(want, math.floor((now - tat) / T + burst + 1e-9)))
  tat = tat + granted * T
  if granted < want then wait = int(tat + T - burst * T - now) end
  if granted > 0 or back > 0 then
    redis.call('SET', KEYS[1], int(tat), 'PX', math.ceil((tat - now) / 1000) + 60000)
  end
end

local nback = tonumber(ARGV[22])
for i = 1, nback do redis.call('ZADD', KEYS[3], ARGV[22 + i], ARGV[22 + i]) end
if nback > 0 then redis.call('EXPIRE', KEYS[3], ttl) end
local out = {mok, granted, wait, H2, C2, 0, 0}
local np = tonumber(ARGV[19])
if np > 0 then
  local ret = redis.call('ZRANGE', KEYS[3], 0, np - 1)
  local lowest = ret[1] or redis.call('GET', KEYS[2]) or '0'
  if tonumber(lowest) < tonumber(ARGV[20]) then
    np = 1
    ret = {ret[1]}
  end
  if #ret > 0 then redis.call('ZREM', KEYS[3], unpack(ret)) end
  local m = np - #ret
  if m > 0 then
    local last = redis.call('INCRBY', KEYS[2], m)
    redis.call('EXPIRE', KEYS[2], ttl)
    out[6], out[7] = last - m, m
  end
  for _, p in ipairs(ret) do out[#out + 1] = tonumber(p) end
end
return out
`)

// LeaseConfig sizes a Leaser's leases.
type LeaseConfig struct {
	// MaxCalls bounds how many calls one lease covers: rate tokens,
	// positions, and worst cases of money; default 256. A lease grows from
	// 4 by doubling while its key is busy and shrinks when it is not.
	MaxCalls int
	// Idle is how long a key's leases stay with this replica unused before
	// they are given back; default 1s.
	Idle time.Duration
	// Tick is how often idle leases are given back and held money leases
	// renewed; default 100ms.
	Tick time.Duration
	// Sole says this Leaser is the only one admitting against its Redis
	// (the embedded default): position blocks are then leased in every step
	// of a schedule, free calls and earlier tiers included, since no other
	// replica can charge a later position while this one holds an earlier.
	Sole bool
}

// Leaser admits calls as the Limiter does, with the same guarantees on
// money, but without a Redis round trip per call: each replica leases from
// Redis, per API key, a slice of the key's rate (GCRA tokens taken ahead), a
// block of positions per function and, for a key that a cap, credit or
// standing limits, a hold on the caps' headroom and the credit (one hold of
// the same kind as a call's, renewed while in use). Calls are admitted in
// memory against those slices and settled in memory; one leaseScript round
// trip renews a slice when it runs short, and slices come back to Redis when
// the key goes idle or the Leaser closes.
//
// What that keeps and what it costs:
//   - Caps and credit are never exceeded: every call's worst case is held
//     against money already held in Redis. A replica killed with a lease
//     leaves it counted as spent (the expiry keeps a lease's hold), so the
//     key can lose up to one lease of headroom for the month, never exceed.
//     A lease is at most a quarter of the room left under a cap, so other
//     replicas are not starved; near a cap a replica may refuse a call while
//     another holds headroom it is not using (at most a quarter of the room
//     left when it renewed; less than one call's worth once it is scarce)
//     until that lease goes idle, a second later.
//   - Each replica checks its own GCRA exactly (one replica is exact), and
//     takes every token from the shared GCRA before it spends it, so the
//     total never runs ahead of the limit since the key's first call; in any
//     window the replicas together may admit more than the limit allows by at
//     most the tokens they held when it began: at most
//     min(MaxCalls, max(1, burst/8)) per replica.
//   - Positions are exact: each is taken once and unused ones are given
//     back; a killed replica leaves a gap of at most one block.
type Leaser struct {
	lim       *Limiter
	cfg       LeaseConfig
	fast      *pipeliner // calls nothing limits (Limiter.Timeout)
	limited   *pipeliner // calls a cap, credit or standing limits (LimitedTimeout)
	replicaID string

	mu    sync.RWMutex
	lanes map[string]*lane // by key id

	stop    context.CancelFunc
	stopped chan struct{}
}

// lane is one API key's leases on this replica.
type lane struct {
	mu     sync.Mutex
	gone   bool // given back and dropped from the Leaser: look the key up again
	caller Caller
	shard  int
	used   time.Time // last admission, wall clock
	calls  int       // lease size in calls
	filled time.Time // last refill, wall clock
	rates  map[int]*rateLease
	pos    map[fcKey]*posLease
	money  map[moneyKey]*moneyLease
}

// moneyKey names a key's money lease: one per month, and apart for calls
// that prepaid credit can pay (a call priced in another currency must not
// keep the account's credit held).
type moneyKey struct {
	month  string
	credit bool
}

type rateLease struct {
	tat    float64 // this replica's own GCRA, µs
	tokens int     // taken from the shared GCRA, not yet spent
}

type posLease struct {
	free    []int64 // held positions, ascending
	uniform bool    // the last ones handed out were all in the schedule's last step
}

type moneyLease struct {
	id                              string
	hold, spent, inflight           int64 // pico; hold - spent - inflight is free
	credit, creditUsed, creditDebit int64 // creditDebit: credit held by calls in flight
	renewed                         time.Time
	unit                            int64 // the last call's worst case
	scarce                          bool  // the last renewal got less than it wanted
}

func (m *moneyLease) room() int64       { return m.hold - m.spent - m.inflight }
func (m *moneyLease) creditRoom() int64 { return m.credit - m.creditUsed - m.creditDebit }

// NewLeaser returns a Leaser over lim's Redis, keyspace and timeouts; Start
// runs its background renewals, Close gives every lease back.
func NewLeaser(lim *Limiter, cfg LeaseConfig) *Leaser {
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 256
	}
	if cfg.Idle <= 0 {
		cfg.Idle = time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 100 * time.Millisecond
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &Leaser{
		lim:       lim,
		cfg:       cfg,
		fast:      newPipeliner(lim.client(lim.cfg.Timeout), leaseScript, 2, lim.cfg.Timeout),
		limited:   newPipeliner(lim.client(lim.cfg.LimitedTimeout), leaseScript, 2, lim.cfg.LimitedTimeout),
		replicaID: hex.EncodeToString(id[:]),
		lanes:     map[string]*lane{},
	}
}

// Start renews held money leases and gives idle leases back every Tick
// until ctx ends or Close is called.
func (s *Leaser) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	s.stop, s.stopped = cancel, make(chan struct{})
	go func() {
		defer close(s.stopped)
		t := time.NewTicker(s.cfg.Tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := s.tidy(context.WithoutCancel(ctx), false); err != nil {
					s.lim.log.Warn("metering: renew or give back admission leases; retried next tick", "err", err)
				}
			}
		}
	}()
}

// Close stops the renewals and gives every lease back (positions, tokens,
// and money not held by calls in flight). Leases it cannot give back stay
// held until they expire (then counted as spent).
func (s *Leaser) Close(ctx context.Context) error {
	if s.stop != nil {
		s.stop()
		<-s.stopped
	}
	return s.tidy(ctx, true)
}

// lane returns c's key's lane, locked.
func (s *Leaser) lane(c Caller) *lane {
	for {
		s.mu.RLock()
		ln := s.lanes[c.KeyID]
		s.mu.RUnlock()
		if ln == nil {
			s.mu.Lock()
			if ln = s.lanes[c.KeyID]; ln == nil {
				ln = &lane{shard: shardOf(c.ConsumerID), calls: 4, rates: map[int]*rateLease{}, pos: map[fcKey]*posLease{}, money: map[moneyKey]*moneyLease{}}
				s.lanes[c.KeyID] = ln
			}
			s.mu.Unlock()
		}
		ln.mu.Lock()
		if !ln.gone {
			return ln
		}
		ln.mu.Unlock()
	}
}

// need is what a call is short of on this replica.
type need struct {
	token, position bool
	money           int64 // the call's worst case, when the money lease cannot hold it
	credit          bool  // free_only: the credit lease cannot cover it
}

func (n need) any() bool { return n.token || n.position || n.money > 0 || n.credit }

// Admit decides one call, in memory when this replica's leases cover it.
func (s *Leaser) Admit(ctx context.Context, req AdmissionRequest) (Admission, error) {
	c := req.Caller
	at, fk, worstPico, refused, err := s.lim.precheck(req)
	if err != nil || refused != nil {
		return deref(refused), err
	}
	ln := s.lane(c)
	defer ln.mu.Unlock()
	if len(ln.money) > 0 && !sameCaps(ln.caller, c) {
		// The money leases were taken under other caps: a lowered cap must
		// hold from this call on, so they go back and are taken again
		// under the caps the call brings. What calls in flight hold stays
		// held: they were admitted under the caps of their time.
		if err := s.giveBackMoney(ctx, ln, s.lim.cfg.Clock.Now().UTC()); err != nil {
			if ctx.Err() != nil {
				return Admission{}, fmt.Errorf("admit call: %w", ctx.Err())
			}
			// ln.caller keeps the old caps, so the next call tries again.
			s.lim.markDown(err)
			return s.lim.admitLocally(c, at, fk, req), nil
		}
	}
	ln.caller, ln.used = c, time.Now()
	var wait time.Duration
	for attempt := 0; ; attempt++ {
		a, short := ln.take(req, at, fk, worstPico)
		if !short.any() {
			return a, nil
		}
		if attempt == 2 {
			// A position priced apart from the next ones is not kept for
			// later: another replica's next call must be able to take it.
			if pl := ln.pos[fk]; pl != nil && len(pl.free) > 0 && pl.free[0] < s.uniformFrom(req) {
				cut := 0
				for cut < len(pl.free) && pl.free[cut] < s.uniformFrom(req) {
					cut++
				}
				if err := s.returnPositions(ctx, ln, fk, pl.free[:cut]); err == nil {
					pl.free = pl.free[cut:]
				}
			}
			return ln.refuse(c, short, wait), nil
		}
		if time.Now().Before(s.lim.downSince()) {
			return s.lim.admitLocally(c, at, fk, req), nil
		}
		wait, err = s.refill(ctx, ln, req, at, fk, worstPico, short)
		if err != nil {
			if ctx.Err() != nil {
				return Admission{}, fmt.Errorf("admit call: %w", ctx.Err())
			}
			s.lim.markDown(err)
			return s.lim.admitLocally(c, at, fk, req), nil
		}
	}
}

// take admits the call from the lane's leases, or reports what it is short
// of and changes nothing. A call refused by this replica's own GCRA is
// refused here.
func (ln *lane) take(req AdmissionRequest, at time.Time, fk fcKey, worstPico int64) (Admission, need) {
	c := req.Caller
	now := float64(at.UnixMicro())
	var short need
	var rl *rateLease
	var T, burst, tat0 float64
	if c.RateLimitPerSecond > 0 {
		T, burst = 1e6/float64(c.RateLimitPerSecond), float64(c.RateLimitPerSecond)
		if rl = ln.rates[c.RateLimitPerSecond]; rl == nil {
			rl = &rateLease{}
			ln.rates[c.RateLimitPerSecond] = rl
		}
		tat0 = max(rl.tat, now)
		if allowAt := tat0 + T - burst*T; now < allowAt {
			return Admission{Reason: fnmarket.ERATELIMITED, Limit: c.RateLimitPerSecond,
				RetryAfter: time.Duration(allowAt-now) * time.Microsecond, Reset: time.Duration(tat0-now) * time.Microsecond}, need{}
		}
		short.token = rl.tokens == 0
	}
	pl := ln.pos[fk]
	if pl == nil {
		pl = &posLease{}
		ln.pos[fk] = pl
	}
	if len(pl.free) == 0 {
		short.position = true
		return Admission{}, short
	}
	pos := pl.free[0]
	var w, ch int64
	var ml *moneyLease
	if limited(c) {
		w = min(toPico(req.Pricing.SlotAt(pos).PerCall)+worstPico, maxCallPico)
		mk := moneyKey{month: fk.Month, credit: creditApplies(req)}
		if ml = ln.money[mk]; ml == nil {
			ml = &moneyLease{}
			ln.money[mk] = ml
		}
		if w > ml.room() {
			short.money = w
		}
		if creditApplies(req) {
			ch = min(w, max(ml.creditRoom(), 0))
		}
		if c.Account.Standing == usage.StandingFreeOnly && ch < w {
			short.credit = true
		}
	}
	if short.any() {
		if short.money == 0 && short.credit {
			short.money = w
		}
		return Admission{}, short
	}
	a := Admission{Allowed: true, Limit: c.RateLimitPerSecond, CallsBefore: pos}
	if rl != nil {
		rl.tat = tat0 + T
		rl.tokens--
		a.Remaining = int(math.Floor((now-rl.tat)/T + burst))
		a.Reset = time.Duration(rl.tat-now) * time.Microsecond
	}
	pl.free = pl.free[1:]
	if ml != nil {
		ml.unit = w
		ml.inflight += w
		ml.creditDebit += ch
		a.Hold, a.CreditHold = fromPico(w), fromPico(ch)
	}
	return a, need{}
}

// refuse answers a call the lane is still short for after a refill.
func (ln *lane) refuse(c Caller, short need, wait time.Duration) Admission {
	a := Admission{Limit: c.RateLimitPerSecond}
	switch {
	case short.token:
		a.Reason, a.RetryAfter = fnmarket.ERATELIMITED, wait
	case short.credit:
		a.Reason = fnmarket.EPAYMENTREQUIRED
	case short.money > 0:
		a.Reason = fnmarket.ESPENDCAP
	default:
		a.Reason = fnmarket.EUNAVAILABLE
	}
	return a
}

func creditApplies(req AdmissionRequest) bool {
	a := req.Caller.Account
	return a.CreditGranted.IsPositive() && (a.CreditCurrency == "" || a.CreditCurrency == req.Pricing.CurrencyCode())
}

// tokensMax is the most rate tokens one replica leases for a limit: an
// eighth of the burst (at least one), so replicas share a key's rate and the
// overshoot any window can see stays small next to the limit.
func (s *Leaser) tokensMax(limit int) int { return min(s.cfg.MaxCalls, max(1, limit/8)) }

// refill renews the lane's leases for the call's key, function and month in
// one round trip, topping up whatever is below half a lease. It returns how
// long until the shared GCRA has another token.
func (s *Leaser) refill(ctx context.Context, ln *lane, req AdmissionRequest, at time.Time, fk fcKey, worstPico int64, short need) (time.Duration, error) {
	now := time.Now()
	switch since := now.Sub(ln.filled); {
	case since < s.cfg.Tick:
		ln.calls = min(ln.calls*2, s.cfg.MaxCalls)
	case since > s.cfg.Idle:
		ln.calls = max(4, ln.calls/2)
	}
	ln.filled = now
	c := req.Caller
	ask := leaseAsk{at: at, fk: fk, limit: c.RateLimitPerSecond, money: limited(c)}
	if rl := ln.rates[c.RateLimitPerSecond]; rl != nil && c.RateLimitPerSecond > 0 {
		if n := min(ln.calls, s.tokensMax(c.RateLimitPerSecond)); rl.tokens < (n+1)/2 || short.token {
			ask.tokens = n - rl.tokens
		}
	}
	if pl := ln.pos[fk]; short.position || (pl.uniform && len(pl.free) < (ln.calls+1)/2) {
		ask.positions = ln.calls - len(pl.free)
		ask.uniformFrom = s.uniformFrom(req)
	}
	if ask.money {
		ask.credit = creditApplies(req)
		mk := moneyKey{month: fk.Month, credit: ask.credit}
		ml := ln.money[mk]
		if ml == nil {
			ml = &moneyLease{}
			ln.money[mk] = ml
		}
		unit := short.money
		if unit == 0 {
			pos := int64(0)
			if pl := ln.pos[fk]; len(pl.free) > 0 {
				pos = pl.free[0]
			}
			unit = min(toPico(req.Pricing.SlotAt(pos).PerCall)+worstPico, maxCallPico)
		}
		ask.unit, ask.units, ask.need = unit, int64(ln.calls), short.money
	}
	return s.exec(ctx, ln, ask)
}

// leaseAsk is one leaseScript round trip for a lane.
type leaseAsk struct {
	at          time.Time
	fk          fcKey
	limit       int
	tokens      int // wanted
	positions   int // wanted
	uniformFrom int64
	money       bool
	credit      bool  // the money lease of calls prepaid credit can pay
	need, unit  int64 // pico: the waiting call's worst case; one call's worst case
	units       int64 // wanted above the floor
	giveBack    bool  // give back tokens, positions and money beyond what is in flight
}

// exec runs one leaseScript for ln and applies its answer to the lane. It
// returns how long until the shared GCRA has another token.
func (s *Leaser) exec(ctx context.Context, ln *lane, ask leaseAsk) (time.Duration, error) {
	l, c := s.lim, ln.caller
	shard := ln.shard
	keys := l.ks.admission(shard, c, ask.fk)
	rl := ln.rates[ask.limit]
	back := 0
	if rl != nil && ask.giveBack {
		back = rl.tokens
	}
	pl := ln.pos[ask.fk]
	var backPos []int64
	if pl != nil && ask.giveBack {
		backPos = pl.free
	}
	m := moneyArgsOf(c, ask.money && ask.credit)
	var ml *moneyLease
	floor := ""
	var spent, used, inflight int64
	var units int64
	if ask.money {
		ml = ln.money[moneyKey{month: ask.fk.Month, credit: ask.credit}]
		if ml.id == "" {
			ml.id = "L:" + s.replicaID + ":" + c.KeyID + ":" + ask.fk.Month
			if ask.credit {
				ml.id += ":c"
			}
		}
		spent, used, inflight = ml.spent, ml.creditUsed, ml.inflight
		floor = strconv.FormatInt(inflight+ask.need, 10)
		if !ask.giveBack {
			units = ask.units
		}
	}
	expires := ask.at.Add(l.cfg.HoldGrace + s.cfg.Idle).UnixMilli()
	args := make([]any, 0, 22+len(backPos))
	args = append(args, ask.at.UnixMicro(), emissionInterval(ask.limit), ask.limit, ask.tokens, back,
		m.keyCap, m.accountCap, m.granted, m.consumed, leaseID(ml), spent, used, inflight, floor, ask.unit, units,
		expires, int64(l.cfg.CounterTTL/time.Second), ask.positions, ask.uniformFrom,
		boolArg(m.granted != "" && c.Account.Standing == usage.StandingFreeOnly), len(backPos))
	for _, p := range backPos {
		args = append(args, p)
	}
	pipe, timeout := s.fast, l.cfg.Timeout
	if limited(c) {
		pipe, timeout = s.limited, l.cfg.LimitedTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	res, err := pipe.run(rctx, keys, args...)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("lease: %w", err)
	}
	if len(res) < 7 {
		return 0, fmt.Errorf("lease script: want at least 7 values, got %d", len(res))
	}
	n := make([]int64, len(res))
	for i, v := range res {
		if n[i], err = scriptInt(v); err != nil {
			return 0, fmt.Errorf("lease script value %d: %w", i, err)
		}
	}
	// Applied in Redis: take it in here.
	if rl != nil {
		if ask.giveBack {
			rl.tokens = 0
		}
		rl.tokens += int(n[1])
	}
	if pl != nil && ask.giveBack {
		pl.free = nil
	}
	if ask.positions > 0 {
		if pl == nil {
			pl = &posLease{}
			ln.pos[ask.fk] = pl
		}
		got := len(pl.free)
		for p := n[5]; p < n[5]+n[6]; p++ {
			pl.free = append(pl.free, p)
		}
		pl.free = append(pl.free, n[7:]...)
		pl.uniform = true
		for _, p := range pl.free[got:] {
			pl.uniform = pl.uniform && p >= ask.uniformFrom
		}
		slices.Sort(pl.free)
		l.notePosition(ask.fk, pl.free[len(pl.free)-1]+1)
	}
	if ml != nil {
		ml.hold, ml.spent, ml.credit, ml.creditUsed = n[3], 0, n[4], 0
		ml.renewed = ask.at
		ml.scarce = n[0] == 0 || ml.hold < inflight+ask.need+ask.unit*units
	}
	return time.Duration(n[2]) * time.Microsecond, nil
}

func leaseID(m *moneyLease) string {
	if m == nil {
		return ""
	}
	return m.id
}

// Settle ends a call admitted by Admit, in memory: its real cost replaces
// its worst case in the money lease, and a call that never reached the
// function gives its position back (to this replica's next call). It returns
// the part of the cost paid from prepaid credit.
func (s *Leaser) Settle(ctx context.Context, req AdmissionRequest, adm Admission, reached bool, cost decimal.Decimal) (decimal.Decimal, error) {
	if adm.Degraded {
		return decimal.Zero, nil
	}
	c := req.Caller
	fk := fcKey{ConsumerID: c.ConsumerID, FunctionID: req.FunctionID, Month: monthOf(req.At.UTC())}
	ln := s.lane(c)
	defer ln.mu.Unlock()
	var err error
	if !reached {
		cost = decimal.Zero
		if adm.CallsBefore < s.uniformFrom(req) {
			// Priced apart from the next ones: back to Redis at once,
			// for the consumer's next call on any replica.
			err = s.returnPositions(ctx, ln, fk, []int64{adm.CallsBefore})
		} else {
			pl := ln.pos[fk]
			if pl == nil {
				pl = &posLease{}
				ln.pos[fk] = pl
			}
			i, _ := slices.BinarySearch(pl.free, adm.CallsBefore)
			pl.free = slices.Insert(pl.free, i, adm.CallsBefore)
		}
	}
	w, ch := toPico(adm.Hold), toPico(adm.CreditHold)
	ml := ln.money[moneyKey{month: fk.Month, credit: creditApplies(req)}]
	if ml == nil || (w == 0 && ch == 0) {
		return decimal.Zero, err
	}
	actual := toPico(cost)
	use := min(actual, ch)
	ml.inflight -= w
	ml.spent += actual
	ml.creditDebit -= ch
	ml.creditUsed += use
	freeOnly := c.Account.Standing == usage.StandingFreeOnly
	if ml.scarce && ml.inflight == 0 && (ml.room() < ml.unit || (freeOnly && ml.creditRoom() < ml.unit)) && (ml.hold > 0 || ml.credit > 0) {
		// Near a cap (or the end of a free_only account's credit), what is
		// left here cannot pay for this key's next call; given back, it may
		// let another replica's call fit.
		if _, rerr := s.exec(ctx, ln, leaseAsk{at: s.lim.cfg.Clock.Now().UTC(), fk: fcKey{ConsumerID: c.ConsumerID, Month: fk.Month},
			money: true, credit: creditApplies(req), giveBack: true}); rerr != nil && err == nil {
			err = rerr
		}
	}
	return fromPico(use), err
}

// uniformFrom is the first position of the last step of the call's
// schedule: from there on every call has the same per-call price. With
// LeaseConfig.Sole it is 0: one replica uses its positions lowest first,
// so blocks anywhere keep every call at its price.
func (s *Leaser) uniformFrom(req AdmissionRequest) int64 {
	if s.cfg.Sole {
		return 0
	}
	sched := req.Pricing.Schedule()
	if len(sched) == 0 {
		return 0
	}
	return sched[len(sched)-1].From
}

// returnPositions gives positions back to Redis for the next call of the
// consumer's function on any replica.
func (s *Leaser) returnPositions(ctx context.Context, ln *lane, fk fcKey, ps []int64) error {
	key := s.lim.ks.returned(ln.shard, fk)
	ctx, cancel := context.WithTimeout(ctx, s.lim.cfg.LimitedTimeout)
	defer cancel()
	members := make([]redis.Z, len(ps))
	for i, p := range ps {
		members[i] = redis.Z{Score: float64(p), Member: p}
	}
	_, err := s.lim.cfg.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, members...)
		p.Expire(ctx, key, s.lim.cfg.CounterTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("give positions back: %w", err)
	}
	return nil
}

// tidy gives back the leases of keys idle for LeaseConfig.Idle (all of
// them when all is set) and renews money leases a quarter of HoldGrace old,
// so that only a replica that stopped renewing loses its leases.
func (s *Leaser) tidy(ctx context.Context, all bool) error {
	s.mu.RLock()
	keys := make([]string, 0, len(s.lanes))
	lanes := make([]*lane, 0, len(s.lanes))
	for k, ln := range s.lanes {
		keys, lanes = append(keys, k), append(lanes, ln)
	}
	s.mu.RUnlock()
	var first error
	for i, ln := range lanes {
		ln.mu.Lock()
		now := s.lim.cfg.Clock.Now().UTC()
		var err error
		if all || time.Since(ln.used) > s.cfg.Idle {
			err = s.giveBack(ctx, ln, now)
			if err == nil && len(ln.rates) == 0 && len(ln.pos) == 0 && len(ln.money) == 0 {
				ln.gone = true
				s.mu.Lock()
				if s.lanes[keys[i]] == ln {
					delete(s.lanes, keys[i])
				}
				s.mu.Unlock()
			}
		} else {
			err = s.giveBackPast(ctx, ln, now)
			for mk, ml := range ln.money {
				if ml.hold > 0 && now.Sub(ml.renewed) > s.lim.cfg.HoldGrace/4 && err == nil {
					_, err = s.exec(ctx, ln, leaseAsk{at: now, fk: fcKey{ConsumerID: ln.caller.ConsumerID, Month: mk.month},
						money: true, credit: mk.credit, unit: max(ml.room(), 0), units: 1})
				}
			}
		}
		ln.mu.Unlock()
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}

// giveBackPast returns a busy lane's position blocks and money leases of
// months that have ended (what calls in flight hold stays held).
func (s *Leaser) giveBackPast(ctx context.Context, ln *lane, now time.Time) error {
	month := monthOf(now)
	for fk, pl := range ln.pos {
		if fk.Month == month {
			continue
		}
		if len(pl.free) > 0 {
			if _, err := s.exec(ctx, ln, leaseAsk{at: now, fk: fk, giveBack: true}); err != nil {
				return err
			}
		}
		delete(ln.pos, fk)
	}
	for mk, ml := range ln.money {
		if mk.month == month || ml.inflight > 0 {
			continue
		}
		if ml.hold > 0 || ml.credit > 0 || ml.spent > 0 {
			if _, err := s.exec(ctx, ln, leaseAsk{at: now, fk: fcKey{ConsumerID: ln.caller.ConsumerID, Month: mk.month}, money: true, credit: mk.credit, giveBack: true}); err != nil {
				return err
			}
		}
		delete(ln.money, mk)
	}
	return nil
}

// giveBack returns a lane's unused tokens, positions and money (what calls
// in flight hold stays held) and forgets what is left empty.
func (s *Leaser) giveBack(ctx context.Context, ln *lane, now time.Time) error {
	c := ln.caller
	for limit, rl := range ln.rates {
		if rl.tokens > 0 {
			if _, err := s.exec(ctx, ln, leaseAsk{at: now, fk: fcKey{ConsumerID: c.ConsumerID, Month: monthOf(now)}, limit: limit, giveBack: true}); err != nil {
				return err
			}
		}
		delete(ln.rates, limit)
	}
	for fk, pl := range ln.pos {
		if len(pl.free) > 0 {
			if _, err := s.exec(ctx, ln, leaseAsk{at: now, fk: fk, giveBack: true}); err != nil {
				return err
			}
		}
		delete(ln.pos, fk)
	}
	return s.giveBackMoney(ctx, ln, now)
}

// giveBackMoney returns a lane's unused money leases (what calls in flight
// hold stays held) and forgets those left empty.
func (s *Leaser) giveBackMoney(ctx context.Context, ln *lane, now time.Time) error {
	for mk, ml := range ln.money {
		if ml.hold > ml.inflight || ml.credit > ml.creditDebit || ml.spent > 0 {
			if _, err := s.exec(ctx, ln, leaseAsk{at: now, fk: fcKey{ConsumerID: ln.caller.ConsumerID, Month: mk.month}, money: true, credit: mk.credit, giveBack: true}); err != nil {
				return err
			}
		}
		if ml.inflight == 0 && ml.hold == 0 && ml.credit == 0 {
			delete(ln.money, mk)
		}
	}
	return nil
}

// sameCaps reports whether two callers of one key come under the same key
// and account caps.
func sameCaps(a, b Caller) bool {
	return sameCap(a.MonthlySpendCap, b.MonthlySpendCap) && sameCap(a.Account.MonthlySpendCap, b.Account.MonthlySpendCap)
}

func sameCap(a, b *decimal.Decimal) bool {
	return a == b || (a != nil && b != nil && a.Equal(*b))
}
