package redisx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Idempotency is the gateway's IdempotencyStore on Redis: one string per API
// key id and Idempotency-Key, under prefix+"idem:{"+scope+"}:"+key. The
// braces make the key id the hash tag, so everything of one API key lives in
// one Redis Cluster slot. Each operation is one atomic command or script
// (a claim that finds the key taken reads it with a second command).
type Idempotency struct {
	client redis.UniversalClient
	prefix string
}

// NewIdempotency stores idempotency records under prefix.
func NewIdempotency(client redis.UniversalClient, prefix string) *Idempotency {
	return &Idempotency{client: client, prefix: prefix}
}

func (s *Idempotency) key(scope, key string) string {
	return s.prefix + "idem:{" + scope + "}:" + key
}

// idemReplaceScript sets KEYS[1] to ARGV[2] for ARGV[3] ms if it holds ARGV[1].
var idemReplaceScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
`)

// idemReleaseScript deletes KEYS[1] if it holds ARGV[1].
var idemReleaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// Claim sets scope/key to value for ttl unless it holds something (SET NX
// PX, one round trip for a first call); then it returns what it holds.
func (s *Idempotency) Claim(ctx context.Context, scope, key string, value []byte, ttl time.Duration) ([]byte, bool, error) {
	k := s.key(scope, key)
	for {
		ok, err := s.client.SetNX(ctx, k, value, ttl).Result()
		if err != nil {
			return nil, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		if ok {
			return nil, true, nil
		}
		held, err := s.client.Get(ctx, k).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // expired or released in between: claim again
		}
		if err != nil {
			return nil, false, fmt.Errorf("read idempotency key: %w", err)
		}
		return held, false, nil
	}
}

// Replace sets scope/key to value for ttl if it still holds old.
func (s *Idempotency) Replace(ctx context.Context, scope, key string, old, value []byte, ttl time.Duration) (bool, error) {
	n, err := idemReplaceScript.Run(ctx, s.client, []string{s.key(scope, key)}, old, value, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("keep idempotent answer: %w", err)
	}
	return n == 1, nil
}

// Release deletes scope/key if it still holds old.
func (s *Idempotency) Release(ctx context.Context, scope, key string, old []byte) error {
	if err := idemReleaseScript.Run(ctx, s.client, []string{s.key(scope, key)}, old).Err(); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}
