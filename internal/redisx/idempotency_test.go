package redisx_test

import (
	"context"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

func TestIdempotencyStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			c, prefix := testenv.Redis(t, b)
			s := redisx.NewIdempotency(c, prefix)
			ctx := context.Background()
			lock, answer := []byte("Lfp-token"), []byte("Afp\n{}\nbody\x00\xff")

			if _, claimed, err := s.Claim(ctx, "key1", "k", lock, time.Minute); err != nil || !claimed {
				t.Fatalf("first claim = %v, %v; want claimed", claimed, err)
			}
			held, claimed, err := s.Claim(ctx, "key1", "k", []byte("Lother"), time.Minute)
			if err != nil || claimed || string(held) != string(lock) {
				t.Fatalf("second claim = %q, %v, %v; want the first lock held", held, claimed, err)
			}
			// Another API key's scope is separate.
			if _, claimed, err := s.Claim(ctx, "key2", "k", lock, time.Minute); err != nil || !claimed {
				t.Fatalf("claim in another scope = %v, %v; want claimed", claimed, err)
			}
			if ok, err := s.Replace(ctx, "key1", "k", []byte("Lother"), answer, time.Hour); err != nil || ok {
				t.Fatalf("replace with a lock not held = %v, %v; want false", ok, err)
			}
			if ok, err := s.Replace(ctx, "key1", "k", lock, answer, time.Hour); err != nil || !ok {
				t.Fatalf("replace with the lock held = %v, %v; want true", ok, err)
			}
			held, _, _ = s.Claim(ctx, "key1", "k", lock, time.Minute)
			if string(held) != string(answer) {
				t.Fatalf("after replace, claim returns %q; want the answer", held)
			}
			if ttl := c.PTTL(ctx, prefix+"idem:{key1}:k").Val(); ttl <= time.Minute || ttl > time.Hour {
				t.Fatalf("answer TTL = %v; want the hour it was kept for", ttl)
			}
			// Release removes only what the caller holds.
			if err := s.Release(ctx, "key1", "k", lock); err != nil {
				t.Fatal(err)
			}
			if held, _, _ := s.Claim(ctx, "key1", "k", lock, time.Minute); string(held) != string(answer) {
				t.Fatalf("release with a stale lock removed the answer: held %q", held)
			}
			if err := s.Release(ctx, "key2", "k", lock); err != nil {
				t.Fatal(err)
			}
			if _, claimed, err := s.Claim(ctx, "key2", "k", lock, time.Minute); err != nil || !claimed {
				t.Fatalf("claim after release = %v, %v; want claimed", claimed, err)
			}
		})
	}
}

// TestIdempotencyLockExpires: a gateway killed mid-call leaves a lock that
// expires with its TTL, after which the key can be claimed again.
func TestIdempotencyLockExpires(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			c, prefix := testenv.Redis(t, b)
			s := redisx.NewIdempotency(c, prefix)
			ctx := context.Background()
			ttl := time.Minute
			if c.Embedded == nil {
				ttl = 200 * time.Millisecond
			}
			if _, claimed, err := s.Claim(ctx, "key1", "k", []byte("Ldead"), ttl); err != nil || !claimed {
				t.Fatalf("claim = %v, %v", claimed, err)
			}
			if _, claimed, _ := s.Claim(ctx, "key1", "k", []byte("Lnew"), ttl); claimed {
				t.Fatal("a live lock was claimed again")
			}
			if c.Embedded != nil {
				c.Embedded.FastForward(ttl + time.Millisecond)
				if _, claimed, err := s.Claim(ctx, "key1", "k", []byte("Lnew"), ttl); err != nil || !claimed {
					t.Fatalf("claim after the lock's TTL = %v, %v; want claimed", claimed, err)
				}
				return
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				_, claimed, err := s.Claim(ctx, "key1", "k", []byte("Lnew"), time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if claimed {
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("the lock never expired")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
