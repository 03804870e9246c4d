package migrations_test

import (
	"context"
	"reflect"
	"sync"
	"testing"

	"gorm.io/gorm/schema"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
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
			if err := migrations.Reset(ctx, sqlDB, db.Dialect); err != nil {
				t.Fatalf("down: %v", err)
			}
			if db.Migrator().HasTable("accounts") {
				t.Fatal("accounts still exists after migrating down")
			}
			if err := migrations.Up(ctx, sqlDB, db.Dialect); err != nil {
				t.Fatalf("up again: %v", err)
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
