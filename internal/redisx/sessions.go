package redisx

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// SessionRevocations keeps the ids of ended sessions in Redis until their
// tokens would have expired, so every replica refuses them at once.
type SessionRevocations struct {
	client redis.UniversalClient
	prefix string
}

// NewSessionRevocations stores revocations under prefix.
func NewSessionRevocations(client redis.UniversalClient, prefix string) *SessionRevocations {
	return &SessionRevocations{client: client, prefix: prefix}
}

func (r *SessionRevocations) key(id string) string { return r.prefix + "session-revoked:" + id }

// Revoke records that the session id has ended; the record lasts ttl.
func (r *SessionRevocations) Revoke(ctx context.Context, id string, ttl time.Duration) error {
	if err := r.client.Set(ctx, r.key(id), 1, ttl).Err(); err != nil {
		return fmt.Errorf("revoke session: %w", err)
	}
	return nil
}

// Revoked says whether the session id has ended.
func (r *SessionRevocations) Revoked(ctx context.Context, id string) (bool, error) {
	n, err := r.client.Exists(ctx, r.key(id)).Result()
	if err != nil {
		return false, fmt.Errorf("check session revocation: %w", err)
	}
	return n > 0, nil
}
