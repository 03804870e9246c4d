package webhooks

import (
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
)

// Event types (API.md, "Webhooks (outbound)").
const (
	TypeThresholdReached = "usage.threshold_reached"
	TypeInvoiceIssued    = "invoice.issued"
	TypeInvoicePaid      = "invoice.paid"
	TypeInvoiceVoided    = "invoice.voided"
	TypePaymentFailed    = "payment.failed"
	TypeCreditsAdded     = "credits.added"
	TypeKeyExpiring      = "key.expiring"
	TypeKeyRevoked       = "key.revoked"
	TypeStatementIssued  = "statement.issued"
	TypePayoutSent       = "payout.sent"
	TypeErrorRateHigh    = "function.error_rate_high"
	TypeTest             = "webhook.test"
)

// Event is one thing that happened to an account, for its endpoints.
type Event struct {
	AccountID string
	Type      string
	// Data is the event's data object, marshalled to JSON.
	Data any
	// DedupeKey, when set, makes the event happen at most once per account
	// and key, e.g. "threshold:key:<key id>:202611:80".
	DedupeKey string
}

// eventRow is a row of webhook_events.
type eventRow struct {
	ID        string    `gorm:"column:id;primaryKey"`
	AccountID string    `gorm:"column:account_id"`
	Type      string    `gorm:"column:type"`
	Payload   string    `gorm:"column:payload"`
	DedupeKey *string   `gorm:"column:dedupe_key"`
	CreatedAt time.Time `gorm:"column:created_at"`
	// FannedOutAt is set once the event has its deliveries (Deliverer).
	FannedOutAt *time.Time `gorm:"column:fanned_out_at"`
}

func (eventRow) TableName() string { return "webhook_events" }

// body is an event as it is sent.
type body struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// Enqueue writes e to the outbox in tx, the transaction of what caused it,
// so the event exists if and only if its cause was committed. It reports
// whether it wrote the event: false when an event with the same DedupeKey
// for the account is already there (then nothing changes). The id it gives
// the event is the webhook-id of every delivery attempt.
func Enqueue(tx *gorm.DB, e Event, now time.Time) (id string, written bool, err error) {
	if e.AccountID == "" || e.Type == "" {
		return "", false, fmt.Errorf("enqueue webhook event: an account and a type are required")
	}
	data := e.Data
	if data == nil {
		data = struct{}{}
	}
	now = now.UTC()
	payload, err := json.Marshal(body{Type: e.Type, Timestamp: now.Format(time.RFC3339), Data: data})
	if err != nil {
		return "", false, fmt.Errorf("enqueue webhook event %s: %w", e.Type, err)
	}
	row := eventRow{ID: fnmarket.NewID("msg"), AccountID: e.AccountID, Type: e.Type, Payload: string(payload), CreatedAt: now}
	if e.DedupeKey != "" {
		row.DedupeKey = &e.DedupeKey
	}
	res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&row)
	if res.Error != nil {
		return "", false, fmt.Errorf("enqueue webhook event %s: %w", e.Type, res.Error)
	}
	if res.RowsAffected == 0 {
		return "", false, nil
	}
	return row.ID, true, nil
}
