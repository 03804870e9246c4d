// Package database opens the relational store: PostgreSQL when a URL is given,
// otherwise an embedded SQLite file (pure Go, no cgo). Both run the same
// migrations and the same code above the driver.
package database

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/fnmarket/fnmarket/migrations"
)

// DB is an open database with the dialect it speaks.
type DB struct {
	*gorm.DB
	Dialect migrations.Dialect
}

// Open connects to url (postgres://...) or, when url is empty, to the SQLite
// file fnmarket.db under dataDir, creating the directory.
func Open(ctx context.Context, url, dataDir string) (*DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard, NowFunc: func() time.Time { return time.Now().UTC() }, TranslateError: true}
	if url != "" {
		if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
			return nil, fmt.Errorf("DATABASE_URL must start with postgres://")
		}
		g, err := gorm.Open(postgres.Open(url), cfg)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		sqlDB, err := g.DB()
		if err != nil {
			return nil, err
		}
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(10)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		if err := sqlDB.PingContext(ctx); err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("reach postgres: %w", err)
		}
		return &DB{DB: g, Dialect: migrations.Postgres}, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	return OpenSQLite(ctx, filepath.Join(dataDir, "fnmarket.db"))
}

// OpenSQLite opens (creating) the SQLite database at path, in WAL mode with a
// busy timeout so concurrent writers queue instead of failing.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	cfg := &gorm.Config{Logger: logger.Discard, NowFunc: func() time.Time { return time.Now().UTC() }, TranslateError: true}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	g, err := gorm.Open(sqlite.Open(dsn), cfg)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	sqlDB, err := g.DB()
	if err != nil {
		return nil, err
	}
	// One writer at a time is SQLite's model; a single connection also keeps
	// transactions from deadlocking each other on the file lock.
	sqlDB.SetMaxOpenConns(1)
	if err := sqlDB.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("reach sqlite: %w", err)
	}
	return &DB{DB: g, Dialect: migrations.SQLite}, nil
}

// Migrate applies pending migrations.
func (db *DB) Migrate(ctx context.Context) error {
	sqlDB, err := db.DB.DB()
	if err != nil {
		return err
	}
	return migrations.Up(ctx, sqlDB, db.Dialect)
}

// Ping checks the database answers.
func (db *DB) Ping(ctx context.Context) error {
	sqlDB, err := db.DB.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close closes the connection pool.
func (db *DB) Close() error {
	sqlDB, err := db.DB.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// LogValue keeps connection strings (which may hold passwords) out of logs.
func (db *DB) LogValue() slog.Value { return slog.StringValue(string(db.Dialect)) }
