// Package testenv gives tests their stores: the embedded default always, and
// PostgreSQL and Redis too when TEST_DATABASE_URL/DATABASE_URL and
// TEST_REDIS_URL/REDIS_URL are set. Each test gets its own PostgreSQL schema
// and its own Redis key prefix. When a URL is set but its service cannot be
// reached, the test fails: it never skips silently.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/redisx"
)

// Backend names one set of stores a suite runs against.
type Backend struct {
	Name        string
	DatabaseURL string // "" means embedded SQLite
	RedisURL    string // "" means embedded Redis
}

// PostgresURL returns the PostgreSQL URL tests should use, or "".
func PostgresURL() string { return firstEnv("TEST_DATABASE_URL", "DATABASE_URL") }

// RedisURL returns the Redis URL tests should use, or "".
func RedisURL() string { return firstEnv("TEST_REDIS_URL", "REDIS_URL") }

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// Backends lists the embedded default and, when configured, the real services.
func Backends() []Backend {
	bs := []Backend{{Name: "embedded"}}
	if pg, rd := PostgresURL(), RedisURL(); pg != "" || rd != "" {
		bs = append(bs, Backend{Name: "real", DatabaseURL: pg, RedisURL: rd})
	}
	return bs
}

// RandomSuffix returns a short random lower-case hex string.
func RandomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// DB opens a migrated, empty database for this test on backend b.
func DB(t testing.TB, b Backend) *database.DB {
	t.Helper()
	ctx := context.Background()
	if b.DatabaseURL == "" {
		db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "test.db"))
		if err != nil {
			t.Fatalf("open sqlite: %v", err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if err := db.Migrate(ctx); err != nil {
			t.Fatalf("migrate sqlite: %v", err)
		}
		return db
	}
	dsn, cleanup := PostgresSchema(t, b.DatabaseURL)
	db, err := database.Open(ctx, dsn, "")
	if err != nil {
		t.Fatalf("open postgres (DATABASE_URL is set, so it must be reachable): %v", err)
	}
	t.Cleanup(func() { _ = db.Close(); cleanup() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate postgres: %v", err)
	}
	return db
}

// PostgresSchema creates a fresh schema and returns a URL whose search_path
// points at it, plus a cleanup that drops it.
func PostgresSchema(t testing.TB, base string) (string, func()) {
	t.Helper()
	schema := "t_" + RandomSuffix()
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{})
	if err != nil {
		t.Fatalf("open postgres (DATABASE_URL is set, so it must be reachable): %v", err)
	}
	if err := admin.Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("create schema (DATABASE_URL is set, so it must be reachable): %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		if sqlDB, err := admin.DB(); err == nil {
			_ = sqlDB.Close()
		}
	}
}

// Redis connects to backend b's Redis and returns a fresh key prefix for this
// test; the prefix's keys are deleted at cleanup.
func Redis(t testing.TB, b Backend) (*redisx.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := redisx.Open(ctx, b.RedisURL)
	if err != nil {
		t.Fatalf("open redis (REDIS_URL is set, so it must be reachable): %v", err)
	}
	prefix := fmt.Sprintf("t%s:", RandomSuffix())
	t.Cleanup(func() {
		if b.RedisURL != "" {
			ctx := context.Background()
			iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
			var keys []string
			for iter.Next(ctx) {
				keys = append(keys, iter.Val())
			}
			for _, k := range keys {
				c.Del(ctx, k)
			}
		}
		_ = c.Close()
	})
	return c, strings.TrimSpace(prefix)
}
