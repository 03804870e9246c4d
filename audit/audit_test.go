package audit_test

import (
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/internal/testenv"
)

// TestLogAppendOnlyAndPaged: the store itself refuses to change or remove
// an entry (the triggers), List pages an account's entries newest first and
// shows no other account's.
func TestLogAppendOnlyAndPaged(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := testenv.DB(t, b)
			ctx := t.Context()
			clock := fnmarket.NewTestClock(time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC))
			store := accounts.NewStore(db, clock, bcrypt.MinCost)
			a, err := store.SignUp(ctx, "a@example.com", "A", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			other, err := store.SignUp(ctx, "b@example.com", "B", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			log := audit.NewLog(db, clock)
			for i := range 5 {
				if err := log.Record(ctx, audit.Entry{ActorID: a.ID, Action: audit.ActionKeyCreate, Target: "key_" + string(rune('a'+i)), IP: "192.0.2.1"}); err != nil {
					t.Fatal(err)
				}
				if i%2 == 0 {
					clock.Advance(time.Second)
				}
			}
			if err := log.Record(ctx, audit.Entry{ActorID: other.ID, Action: audit.ActionLogin, IP: "192.0.2.9"}); err != nil {
				t.Fatal(err)
			}
			if err := log.Record(ctx, audit.Entry{Action: audit.ActionLoginFailed, Target: "nobody@example.com"}); err != nil {
				t.Fatal(err)
			}

			var got []string
			cursor := ""
			for pages := 0; ; pages++ {
				items, next, err := log.List(ctx, a.ID, cursor, 2)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range items {
					if e.ActorID != a.ID || e.Action != audit.ActionKeyCreate || e.IP != "192.0.2.1" {
						t.Fatalf("entry %+v is not one of a's", e)
					}
					got = append(got, e.Target)
				}
				if next == "" {
					break
				}
				if pages > 5 {
					t.Fatal("the cursor does not end")
				}
				cursor = next
			}
			if len(got) != 5 {
				t.Fatalf("pages gave %v, want 5 entries", got)
			}
			// Entries of one instant come in id order, so only the order of
			// instants is fixed: {key_e, key_d}, then {key_c, key_b}, then key_a.
			pair := func(x, y, a, b string) bool { return (x == a && y == b) || (x == b && y == a) }
			if !pair(got[0], got[1], "key_e", "key_d") || !pair(got[2], got[3], "key_c", "key_b") || got[4] != "key_a" {
				t.Fatalf("pages gave %v, want newest first", got)
			}
			if _, _, err := log.List(ctx, a.ID, "not-a-cursor", 2); fnmarket.ErrorCode(err) != fnmarket.EINVALID {
				t.Fatalf("a bad cursor gave %v", err)
			}

			if err := db.Exec("UPDATE audit_log SET action = 'x'").Error; err == nil {
				t.Fatal("the store let an audit entry be updated")
			}
			if err := db.Exec("DELETE FROM audit_log").Error; err == nil {
				t.Fatal("the store let an audit entry be deleted")
			}
			var n int64
			if err := db.Table("audit_log").Where("action = ?", audit.ActionKeyCreate).Count(&n).Error; err != nil || n != 5 {
				t.Fatalf("after the refused changes %d entries are as written (%v), want 5", n, err)
			}
		})
	}
}
