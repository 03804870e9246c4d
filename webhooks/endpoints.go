package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/migrations"
)

// MaxEndpoints is how many endpoints (not deleted) an account may have.
const MaxEndpoints = 20

// Subscribable are the event types an endpoint may subscribe to ("*" is
// all of them); webhook.test is sent only by the test route, to one endpoint.
var Subscribable = []string{
	TypeThresholdReached, TypeInvoiceIssued, TypeInvoicePaid, TypeInvoiceVoided, TypePaymentFailed,
	TypeCreditsAdded, TypeKeyExpiring, TypeKeyRevoked, TypeStatementIssued, TypePayoutSent, TypeErrorRateHigh,
}

// Endpoint is one URL an account receives events at.
type Endpoint struct {
	ID        string
	AccountID string
	URL       string
	Events    []string
	// Secret is set only in the answer of CreateEndpoint.
	Secret         string
	CreatedAt      time.Time
	DisabledAt     *time.Time
	DisabledReason string
}

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	ID             string
	EventID        string
	Type           string
	Status         string // pending, delivered or failed
	Attempts       int
	LastStatusCode *int
	LastError      string
	NextAttemptAt  *time.Time
	CreatedAt      time.Time
}

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusFailed    = "failed"
)

type endpointRow struct {
	ID             string     `gorm:"column:id;primaryKey"`
	AccountID      string     `gorm:"column:account_id"`
	URL            string     `gorm:"column:url"`
	Events         string     `gorm:"column:events"`
	Secret         string     `gorm:"column:secret"`
	CreatedAt      time.Time  `gorm:"column:created_at"`
	DeletedAt      *time.Time `gorm:"column:deleted_at"`
	DisabledAt     *time.Time `gorm:"column:disabled_at"`
	DisabledReason *string    `gorm:"column:disabled_reason"`
	FailingSince   *time.Time `gorm:"column:failing_since"`
}

func (endpointRow) TableName() string { return "webhook_endpoints" }

func (r endpointRow) endpoint() Endpoint {
	e := Endpoint{ID: r.ID, AccountID: r.AccountID, URL: r.URL, CreatedAt: r.CreatedAt.UTC(), DisabledAt: utcPtr(r.DisabledAt)}
	_ = json.Unmarshal([]byte(r.Events), &e.Events)
	if r.DisabledReason != nil {
		e.DisabledReason = *r.DisabledReason
	}
	return e
}

// subscribes reports whether the endpoint takes events of type t.
func (r endpointRow) subscribes(t string) bool {
	var evs []string
	_ = json.Unmarshal([]byte(r.Events), &evs)
	return t != TypeTest && (slices.Contains(evs, "*") || slices.Contains(evs, t))
}

type deliveryRow struct {
	ID             string     `gorm:"column:id;primaryKey"`
	EndpointID     string     `gorm:"column:endpoint_id"`
	EventID        string     `gorm:"column:event_id"`
	Status         string     `gorm:"column:status"`
	Attempts       int        `gorm:"column:attempts"`
	LastStatusCode *int       `gorm:"column:last_status_code"`
	LastError      *string    `gorm:"column:last_error"`
	NextAttemptAt  *time.Time `gorm:"column:next_attempt_at"`
	Claim          *string    `gorm:"column:claim"`
	CreatedAt      time.Time  `gorm:"column:created_at"`
	DeliveredAt    *time.Time `gorm:"column:delivered_at"`
}

func (deliveryRow) TableName() string { return "webhook_deliveries" }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Store keeps accounts' endpoints and reads their delivery logs.
type Store struct {
	db           *database.DB
	clock        fnmarket.Clock
	allowPrivate bool
}

// NewStore returns the endpoint store. allowPrivate (FNMARKET_ALLOW_PRIVATE_UPSTREAMS)
// accepts http:// URLs and loopback or private addresses, as for function
// backends; otherwise URLs must be https and public.
func NewStore(db *database.DB, clock fnmarket.Clock, allowPrivate bool) *Store {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &Store{db: db, clock: clock, allowPrivate: allowPrivate}
}

// checkURL validates an endpoint URL: the function backends' check (form and
// private-address guard), and https unless private upstreams are allowed.
func (s *Store) checkURL(ctx context.Context, raw string) error {
	if len(raw) > 2000 {
		return invalid("url", "must be at most 2000 characters")
	}
	if err := gateway.CheckUpstreamURL(ctx, raw, s.allowPrivate); err != nil {
		var fe *fnmarket.Error
		if errors.As(err, &fe) {
			for _, v := range fe.Fields {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the webhook URL is not allowed", Fields: map[string]string{"url": v}}
			}
		}
		return err
	}
	if !s.allowPrivate && !strings.HasPrefix(strings.ToLower(raw), "https://") {
		return invalid("url", "must use https")
	}
	return nil
}

func invalid(field, msg string) error {
	return &fnmarket.Error{Code: fnmarket.EINVALID, Message: field + " " + msg, Fields: map[string]string{field: msg}}
}

// checkEvents validates and normalises an endpoint's event list.
func checkEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, invalid("events", "must name at least one event type, or \"*\"")
	}
	var out []string
	for _, e := range events {
		if e != "*" && !slices.Contains(Subscribable, e) {
			return nil, invalid("events", fmt.Sprintf("%q is not an event type (one of %s, or \"*\")", e, strings.Join(Subscribable, ", ")))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// CreateEndpoint adds an endpoint to the account and returns it with its
// secret, which no other answer carries.
func (s *Store) CreateEndpoint(ctx context.Context, accountID, url string, events []string) (Endpoint, error) {
	url = strings.TrimSpace(url)
	if err := s.checkURL(ctx, url); err != nil {
		return Endpoint{}, err
	}
	events, err := checkEvents(events)
	if err != nil {
		return Endpoint{}, err
	}
	evs, _ := json.Marshal(events)
	row := endpointRow{ID: fnmarket.NewID("whe"), AccountID: accountID, URL: url, Events: string(evs), Secret: NewSecret(), CreatedAt: s.clock.Now().UTC()}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.db.Dialect == migrations.Postgres {
			// Concurrent creates of one account count one after the other.
			if err := tx.Exec("SELECT id FROM accounts WHERE id = ? FOR UPDATE", accountID).Error; err != nil {
				return err
			}
		}
		var n int64
		if err := tx.Model(&endpointRow{}).Where("account_id = ? AND deleted_at IS NULL", accountID).Count(&n).Error; err != nil {
			return err
		}
		if n >= MaxEndpoints {
			return fnmarket.Errorf(fnmarket.ECONFLICT, "an account may have at most %d webhook endpoints; delete one first", MaxEndpoints)
		}
		return tx.Create(&row).Error
	})
	if err != nil {
		return Endpoint{}, err
	}
	e := row.endpoint()
	e.Secret = row.Secret
	return e, nil
}

// Endpoints lists the account's endpoints, oldest first.
func (s *Store) Endpoints(ctx context.Context, accountID string) ([]Endpoint, error) {
	var rows []endpointRow
	if err := s.db.WithContext(ctx).Where("account_id = ? AND deleted_at IS NULL", accountID).Order("created_at, id").Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]Endpoint, len(rows))
	for i, r := range rows {
		out[i] = r.endpoint()
	}
	return out, nil
}

// endpoint finds one of the account's endpoints (not deleted), or not_found.
func (s *Store) endpoint(tx *gorm.DB, accountID, id string) (endpointRow, error) {
	var row endpointRow
	err := tx.Where("id = ? AND account_id = ? AND deleted_at IS NULL", id, accountID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return row, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such webhook endpoint")
	}
	return row, err
}

// DeleteEndpoint deletes one of the account's endpoints: nothing more is sent
// to it, and its pending deliveries fail.
func (s *Store) DeleteEndpoint(ctx context.Context, accountID, id string) error {
	now := s.clock.Now().UTC()
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if _, err := s.endpoint(tx, accountID, id); err != nil {
			return err
		}
		if err := tx.Model(&endpointRow{}).Where("id = ?", id).Update("deleted_at", now).Error; err != nil {
			return err
		}
		return failPending(tx, id, "the endpoint was deleted")
	})
}

// failPending ends an endpoint's pending deliveries as failed.
func failPending(tx *gorm.DB, endpointID, why string) error {
	return tx.Model(&deliveryRow{}).Where("endpoint_id = ? AND status = ?", endpointID, StatusPending).
		Updates(map[string]any{"status": StatusFailed, "last_error": why, "next_attempt_at": nil, "claim": nil}).Error
}

// Deliveries lists an endpoint's deliveries, newest first, limit at most,
// after the delivery with id after (the previous page's cursor) when set.
func (s *Store) Deliveries(ctx context.Context, accountID, endpointID, after string, limit int) ([]Delivery, error) {
	db := s.db.WithContext(ctx)
	if _, err := s.endpoint(db, accountID, endpointID); err != nil {
		return nil, err
	}
	q := db.Table("webhook_deliveries d").Select("d.id, d.event_id, e.type, d.status, d.attempts, d.last_status_code, d.last_error, d.next_attempt_at, d.created_at").
		Joins("JOIN webhook_events e ON e.id = d.event_id").Where("d.endpoint_id = ?", endpointID)
	if after != "" {
		var cur deliveryRow
		if err := db.Where("id = ? AND endpoint_id = ?", after, endpointID).Take(&cur).Error; err != nil {
			return nil, invalid("cursor", "is not a cursor of this list")
		}
		q = q.Where("d.created_at < ? OR (d.created_at = ? AND d.id < ?)", cur.CreatedAt, cur.CreatedAt, cur.ID)
	}
	var rows []struct {
		ID, EventID, Type, Status string
		Attempts                  int
		LastStatusCode            *int
		LastError                 *string
		NextAttemptAt             *time.Time
		CreatedAt                 time.Time
	}
	if err := q.Order("d.created_at DESC, d.id DESC").Limit(limit).Scan(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]Delivery, len(rows))
	for i, r := range rows {
		out[i] = Delivery{ID: r.ID, EventID: r.EventID, Type: r.Type, Status: r.Status, Attempts: r.Attempts,
			LastStatusCode: r.LastStatusCode, NextAttemptAt: utcPtr(r.NextAttemptAt), CreatedAt: r.CreatedAt.UTC()}
		if r.LastError != nil {
			out[i].LastError = *r.LastError
		}
	}
	return out, nil
}

// EnableEndpoint enables again one of the account's endpoints that failing
// deliveries disabled: it gets events from now on, its failing clock starts
// over, and its failed deliveries can be retried (RetryDelivery). Events
// raised while it was disabled were not queued for it. Enabling an enabled
// endpoint changes nothing.
func (s *Store) EnableEndpoint(ctx context.Context, accountID, id string) (Endpoint, error) {
	var out endpointRow
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ep, err := s.endpoint(tx, accountID, id)
		if err != nil {
			return err
		}
		if ep.DisabledAt != nil {
			if err := tx.Model(&endpointRow{}).Where("id = ?", id).
				Updates(map[string]any{"disabled_at": nil, "disabled_reason": nil, "failing_since": nil}).Error; err != nil {
				return err
			}
		}
		out, err = s.endpoint(tx, accountID, id)
		return err
	})
	if err != nil {
		return Endpoint{}, err
	}
	return out.endpoint(), nil
}

// RetryDelivery re-arms a pending or failed delivery of one of the account's
// endpoints to be sent now, with the same event (and webhook-id). A
// delivered one, or one of a disabled endpoint, answers conflict.
func (s *Store) RetryDelivery(ctx context.Context, accountID, endpointID, deliveryID string) error {
	now := s.clock.Now().UTC()
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ep, err := s.endpoint(tx, accountID, endpointID)
		if err != nil {
			return err
		}
		var d deliveryRow
		if err := tx.Where("id = ? AND endpoint_id = ?", deliveryID, endpointID).Take(&d).Error; errors.Is(err, gorm.ErrRecordNotFound) {
			return fnmarket.Errorf(fnmarket.ENOTFOUND, "no such delivery")
		} else if err != nil {
			return err
		}
		switch {
		case ep.DisabledAt != nil:
			return fnmarket.Errorf(fnmarket.ECONFLICT, "the endpoint is disabled (%s); enable it again (POST /api/v1/webhooks/{id}/enable) or create a new one", deref(ep.DisabledReason))
		case d.Status == StatusDelivered:
			return fnmarket.Errorf(fnmarket.ECONFLICT, "the delivery was delivered already")
		}
		return tx.Model(&deliveryRow{}).Where("id = ?", d.ID).
			Updates(map[string]any{"status": StatusPending, "next_attempt_at": now, "claim": nil}).Error
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// SendTest enqueues a webhook.test event for one of the account's endpoints,
// delivered to that endpoint only, and returns the event's id.
func (s *Store) SendTest(ctx context.Context, accountID, endpointID string) (string, error) {
	now := s.clock.Now().UTC()
	var id string
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		ep, err := s.endpoint(tx, accountID, endpointID)
		if err != nil {
			return err
		}
		if ep.DisabledAt != nil {
			return fnmarket.Errorf(fnmarket.ECONFLICT, "the endpoint is disabled (%s); enable it again (POST /api/v1/webhooks/{id}/enable) or create a new one", deref(ep.DisabledReason))
		}
		payload, _ := json.Marshal(body{Type: TypeTest, Timestamp: now.Format(time.RFC3339), Data: map[string]any{"endpoint_id": endpointID}})
		ev := eventRow{ID: fnmarket.NewID("msg"), AccountID: accountID, Type: TypeTest, Payload: string(payload), CreatedAt: now, FannedOutAt: &now}
		if err := tx.Create(&ev).Error; err != nil {
			return err
		}
		id = ev.ID
		return tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&deliveryRow{ID: fnmarket.NewID("whd"), EndpointID: endpointID, EventID: ev.ID,
			Status: StatusPending, NextAttemptAt: &now, CreatedAt: now}).Error
	})
	return id, err
}
