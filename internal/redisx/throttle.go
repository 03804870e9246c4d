package redisx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LoginThrottle counts login attempts in Redis, shared by every replica, on
// two scales:
//
//   - per (account, client address) pair: after PairMax failures in Window
//     the pair is locked until the window ends. This is what stops one
//     guesser, and it never locks the account's owner out from another
//     address.
//   - per account, from every address: the count is reported to the caller,
//     which slows attempts down once it passes a threshold, so many addresses
//     together guess slowly too.
//
// An attempt reserves its slot before the password is checked (one Lua
// script checks and counts), so concurrent attempts cannot all pass the
// check before any failure is recorded; a right password gives its slot back.
type LoginThrottle struct {
	client  redis.UniversalClient
	prefix  string
	pairMax int64
	window  time.Duration
}

// NewLoginThrottle allows pairMax failed logins per (account, client
// address) per window.
func NewLoginThrottle(client redis.UniversalClient, prefix string, pairMax int64, window time.Duration) *LoginThrottle {
	return &LoginThrottle{client: client, prefix: prefix, pairMax: pairMax, window: window}
}

// keys returns the pair's and the account's counter. Both share the
// account's hash tag, so one script may touch them on a Redis Cluster; the
// account (an email) is hashed to keep it out of Redis.
func (t *LoginThrottle) keys(account, client string) (pair, acct string) {
	sum := sha256.Sum256([]byte(account))
	tag := "{" + hex.EncodeToString(sum[:16]) + "}"
	return t.prefix + "login:" + tag + ":client:" + client, t.prefix + "login:" + tag + ":account"
}

// beginScript: KEYS pair, account; ARGV pairMax, window ms. Answers
// {allowed, retry-after ms, attempts on the account in the window}.
var beginScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {0, ttl, 0}
end
redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local a = redis.call('INCR', KEYS[2])
if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return {1, 0, a}
`)

// Begin reserves one login attempt for account from client. When the pair
// is locked it answers allowed false and how long the lock lasts; otherwise
// it answers how many attempts the account has seen in the window, from
// every address, this one included.
func (t *LoginThrottle) Begin(ctx context.Context, account, client string) (allowed bool, retryAfter time.Duration, accountAttempts int64, err error) {
	pair, acct := t.keys(account, client)
	res, err := beginScript.Run(ctx, t.client, []string{pair, acct}, t.pairMax, t.window.Milliseconds()).Int64Slice()
	if err != nil || len(res) != 3 {
		return false, 0, 0, fmt.Errorf("reserve login attempt: %w", err)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, res[2], nil
}

// releaseScript: KEYS pair, account. Both counters get this attempt
// back. Earlier failures stay counted until the window ends, so a right
// password among concurrent wrong ones does not open the way for more.
var releaseScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 and redis.call('DECR', k) <= 0 then
    redis.call('DEL', k)
  end
end
return 1
`)

// Release gives back the attempt Begin reserved: the password was right, or
// it was never checked.
func (t *LoginThrottle) Release(ctx context.Context, account, client string) error {
	pair, acct := t.keys(account, client)
	if err := releaseScript.Run(ctx, t.client, []string{pair, acct}).Err(); err != nil {
		return fmt.Errorf("release login attempt: %w", err)
	}
	return nil
}

// ClientRate limits requests per client address per minute (sign-ups and
// login attempts), in fixed one-minute windows shared by every replica.
type ClientRate struct {
	client    redis.UniversalClient
	prefix    string
	perMinute int64
}

// NewClientRate allows perMinute requests per client address per minute.
func NewClientRate(client redis.UniversalClient, prefix string, perMinute int) *ClientRate {
	return &ClientRate{client: client, prefix: prefix, perMinute: int64(perMinute)}
}

// takeScript: KEYS counter; ARGV limit, window ms. Answers {allowed,
// retry-after ms}. A refused request is not counted.
var takeScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2])
  end
  return {0, ttl}
end
redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, 0}
`)

// Take counts one request from client; allowed is false, with the time to
// wait, when the client has used up its minute.
func (r *ClientRate) Take(ctx context.Context, client string) (allowed bool, retryAfter time.Duration, err error) {
	res, err := takeScript.Run(ctx, r.client, []string{r.prefix + "auth-rate:{" + client + "}"}, r.perMinute, time.Minute.Milliseconds()).Int64Slice()
	if err != nil || len(res) != 2 {
		return false, 0, fmt.Errorf("count auth request: %w", err)
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}
