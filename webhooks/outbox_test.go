package webhooks_test

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/internal/testenv"
	"github.com/fnmarket/fnmarket/webhooks"
)

// TestEnqueueOncePerDedupeKey: an event with a dedupe key is written once
// per account whatever the concurrency; without one, every event is written;
// an event enqueued in a transaction that rolls back never exists.
func TestEnqueueOncePerDedupeKey(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := testenv.DB(t, b)
			store := accounts.NewStore(db, nil, bcrypt.MinCost)
			acc, err := store.SignUp(t.Context(), "a@example.com", "A", "correct horse battery")
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
			var written atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					err := db.Transaction(func(tx *gorm.DB) error {
						_, ok, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: acc.ID, Type: webhooks.TypeThresholdReached,
							Data: map[string]any{"threshold_percent": 80}, DedupeKey: "threshold:account:202611:80"}, now)
						if ok {
							written.Add(1)
						}
						return err
					})
					if err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if written.Load() != 1 {
				t.Fatalf("a deduplicated event was written %d times, want once", written.Load())
			}
			rollback := db.Transaction(func(tx *gorm.DB) error {
				if _, _, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: acc.ID, Type: webhooks.TypeKeyRevoked}, now); err != nil {
					return err
				}
				return gorm.ErrInvalidTransaction
			})
			if rollback == nil {
				t.Fatal("the rolled-back transaction reported success")
			}
			for range 2 {
				if _, ok, err := webhooks.Enqueue(db.DB, webhooks.Event{AccountID: acc.ID, Type: webhooks.TypeTest}, now); err != nil || !ok {
					t.Fatalf("enqueue without a dedupe key: %v, %v", ok, err)
				}
			}
			var rows []struct{ Type, Payload string }
			if err := db.Table("webhook_events").Order("type").Find(&rows).Error; err != nil {
				t.Fatal(err)
			}
			if len(rows) != 3 || rows[0].Type != webhooks.TypeThresholdReached || rows[1].Type != webhooks.TypeTest {
				t.Fatalf("outbox = %+v, want the threshold once and two test events (nothing from the rollback)", rows)
			}
			var body struct {
				Type, Timestamp string
				Data            map[string]any
			}
			if err := json.Unmarshal([]byte(rows[0].Payload), &body); err != nil || body.Type != webhooks.TypeThresholdReached ||
				body.Timestamp != "2026-11-29T06:00:00Z" || body.Data["threshold_percent"] != float64(80) {
				t.Fatalf("payload %s (%v)", rows[0].Payload, err)
			}
		})
	}
}
