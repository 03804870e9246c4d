package wasm

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm/schema"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			db := testenv.DB(t, b)
			for _, m := range Models() {
				s, err := schema.Parse(m, &sync.Map{}, db.NamingStrategy)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range s.Fields {
					if f.DBName != "" && !db.Migrator().HasColumn(m, f.DBName) {
						t.Errorf("%s.%s is mapped but missing from migration 00004", s.Table, f.DBName)
					}
				}
			}
			store := NewStore(db, nil)
			ctx := context.Background()
			code := minimalModule(minimalSpec{Msg: "stored"})
			sha := sumHex(code)
			if _, err := store.Module(ctx, sha); fnmarket.ErrorCode(err) != fnmarket.ENOTFOUND {
				t.Fatalf("missing module: %v, want ENOTFOUND", err)
			}
			for range 2 { // the second put of the same bytes is a no-op
				if err := store.PutModule(ctx, sha, code); err != nil {
					t.Fatal(err)
				}
			}
			got, err := store.Module(ctx, sha)
			if err != nil || !bytes.Equal(got, code) {
				t.Fatalf("Module = %d bytes, %v; want the %d stored", len(got), err, len(code))
			}
			if err := store.PutModule(ctx, strings.Repeat("0", 64), code); err == nil {
				t.Fatal("a module stored under a hash that is not its own")
			}

			// A runtime on this store runs what another runtime prepared.
			rt1 := newRuntime(t, Config{}, store)
			info, err := rt1.Prepare(ctx, minimalModule(minimalSpec{Msg: "replica"}))
			if err != nil {
				t.Fatal(err)
			}
			rt2 := newRuntime(t, Config{}, store)
			resp, err := rt2.Run(ctx, info.SHA256, Request{Method: "GET"}, Limits{})
			if err != nil || string(resp.Body) != "replica" {
				t.Fatalf("run on the other runtime = %q, %v", resp.Body, err)
			}
		})
	}
}
