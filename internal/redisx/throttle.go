package redisx

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// FailureThrottle counts failures per key in fixed windows in Redis, shared
// by every replica, so repeated failures (wrong passwords) can be refused
// for a while.
type FailureThrottle struct {
	client redis.UniversalClient
	prefix string
	max    int64
	window time.Duration
}

// NewFailureThrottle allows max failures per key per window.
func NewFailureThrottle(client redis.UniversalClient, prefix string, max int64, window time.Duration) *FailureThrottle {
	return &FailureThrottle{client: client, prefix: prefix, max: max, window: window}
}

func (f *FailureThrottle) key(k string) string { return f.prefix + "throttle:{" + k + "}" }

// Blocked says whether key has used up its failures, and for how long.
func (f *FailureThrottle) Blocked(ctx context.Context, key string) (bool, time.Duration, error) {
	k := f.key(key)
	pipe := f.client.Pipeline()
	n := pipe.Get(ctx, k)
	ttl := pipe.PTTL(ctx, k)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return false, 0, fmt.Errorf("read throttle: %w", err)
	}
	count, _ := n.Int64()
	return count >= f.max, ttl.Val(), nil
}

// Fail records one failure for key.
func (f *FailureThrottle) Fail(ctx context.Context, key string) error {
	k := f.key(key)
	pipe := f.client.TxPipeline()
	pipe.Incr(ctx, k)
	pipe.ExpireNX(ctx, k, f.window)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record failure: %w", err)
	}
	return nil
}

// Reset forgets key's failures (after a success).
func (f *FailureThrottle) Reset(ctx context.Context, key string) error {
	return f.client.Del(ctx, f.key(key)).Err()
}
