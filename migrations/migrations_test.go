package migrations_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"gorm.io/gorm/schema"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/migrations"
)

// TestUpDownUp migrates an empty database up, all the way down and up again
// on every backend, and checks that every column the stores map exists.
func TestUpDownUp(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			if b.DatabaseURL == "" && b.Name != "embedded" {
				t.Skip("no database configured for this backend")
			}
			db := testenv.DB(t, b) // already migrated up
			ctx := context.Background()
			sqlDB, err := db.DB.DB()
			if err != nil {
				t.Fatal(err)
			}
			readSchema := sqliteSchema
			if db.Dialect == migrations.Postgres {
				readSchema = postgresSchema
			}
			first, err := readSchema(ctx, sqlDB)
			if err != nil {
				t.Fatal(err)
			}
			if err := migrations.Reset(ctx, sqlDB, db.Dialect); err != nil {
				t.Fatalf("down: %v", err)
			}
			if db.Migrator().HasTable("accounts") {
				t.Fatal("accounts still exists after migrating down")
			}
			if left, err := readSchema(ctx, sqlDB); err != nil {
				t.Fatal(err)
			} else if msg := diffFacts(map[string]bool{}, left, "nothing", "the schema", nil); msg != "" {
				t.Errorf("migrating down to 0 left schema behind:\n%s", msg)
			}
			if err := migrations.Up(ctx, sqlDB, db.Dialect); err != nil {
				t.Fatalf("up again: %v", err)
			}
			if again, err := readSchema(ctx, sqlDB); err != nil {
				t.Fatal(err)
			} else if msg := diffFacts(first, again, "the first up", "the second up", nil); msg != "" {
				t.Errorf("the schema differs after down and up again:\n%s", msg)
			}
			models := append(accounts.Models(), catalogstore.Models()...)
			for _, m := range models {
				s, err := schema.Parse(m, &sync.Map{}, db.NamingStrategy)
				if err != nil {
					t.Fatal(err)
				}
				if !db.Migrator().HasTable(m) {
					t.Errorf("table %s missing", s.Table)
					continue
				}
				for _, f := range s.Fields {
					if f.DBName == "" {
						continue
					}
					if !db.Migrator().HasColumn(m, f.DBName) {
						t.Errorf("%s.%s (%s) is mapped by the code but missing from the schema", s.Table, f.DBName, reflect.TypeOf(m).Elem().Name())
					}
				}
			}
		})
	}
}

// TestSQLiteCarriedToForeignKey checks SQLite's 00008, which recreates
// invoices.carried_to with a foreign key: existing values survive it both
// ways, and afterwards a dangling reference is refused as on PostgreSQL.
func TestSQLiteCarriedToForeignKey(t *testing.T) {
	ctx := context.Background()
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	sqlDB, err := db.DB.DB()
	if err != nil {
		t.Fatal(err)
	}
	p, err := migrations.Provider(sqlDB, migrations.SQLite)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	insert := func(id string, carriedTo any) error {
		_, err := sqlDB.ExecContext(ctx, `INSERT INTO invoices (id, consumer_id, period_start, period_end, currency, status,
			subtotal, total, total_cents, usage_through, created_at, updated_at, carried_to)
			VALUES (?, 'acc', 0, 1, ?, 'open', '0.1', '0.1', 10, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', ?)`, id, id, carriedTo)
		return err
	}
	if err := insert("inv_next", nil); err != nil {
		t.Fatal(err)
	}
	if err := insert("inv_small", "inv_next"); err != nil {
		t.Fatal(err)
	}
	carriedTo := func() string {
		t.Helper()
		var s sql.NullString
		if err := sqlDB.QueryRowContext(ctx, `SELECT carried_to FROM invoices WHERE id = 'inv_small'`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s.String
	}
	if _, err := p.UpTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if got := carriedTo(); got != "inv_next" {
		t.Fatalf("carried_to after 00008 = %q, want inv_next", got)
	}
	if err := insert("inv_bad", "inv_missing"); err == nil {
		t.Fatal("a carried_to naming no invoice was accepted after 00008")
	}
	if _, err := p.DownTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if got := carriedTo(); got != "inv_next" {
		t.Fatalf("carried_to after 00008 down = %q, want inv_next", got)
	}
}
