// Package migrations holds fnmarket's versioned schema, as hand-written SQL per
// dialect (numbered goose files with Up and Down sections), and applies it.
// The schema is never derived from Go structs at run time.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed postgres/*.sql sqlite/*.sql
var files embed.FS

// Dialect names a supported database.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// Provider returns a goose provider for db's dialect, with no global state.
func Provider(db *sql.DB, d Dialect) (*goose.Provider, error) {
	var gd goose.Dialect
	var opts []goose.ProviderOption
	switch d {
	case Postgres:
		gd = goose.DialectPostgres
		// Replicas starting together take turns: an advisory lock serialises
		// their migrations.
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	case SQLite:
		gd = goose.DialectSQLite3
	default:
		return nil, fmt.Errorf("unknown dialect %q", d)
	}
	sub, err := fs.Sub(files, string(d))
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(gd, db, sub, opts...)
}

// Up applies every pending migration.
func Up(ctx context.Context, db *sql.DB, d Dialect) error {
	p, err := Provider(db, d)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrations: up: %w", err)
	}
	return nil
}

// Reset rolls every migration back (used by tests that go down and up again).
func Reset(ctx context.Context, db *sql.DB, d Dialect) error {
	p, err := Provider(db, d)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		return fmt.Errorf("migrations: down: %w", err)
	}
	return nil
}
