// Package audit keeps the audit log (API.md, "API keys, extended"): who did
// what to an account, when, and from which client address. The log is
// append-only: Record adds entries, List reads an account's own entries,
// newest first, and nothing changes or removes one (migration 00013's
// triggers refuse UPDATE and DELETE on PostgreSQL and SQLite alike).
//
// Anything that changes an account records it with Record, in the
// transaction of the change when it has one (a Stripe event that adds a
// card or credit does), or through a Recorder (the API records after the
// change succeeded). Actions are the Action constants; a package that adds
// actions (webhook endpoints: ActionWebhookCreate, ActionWebhookDelete)
// records them through the same function.
package audit

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/database"
)

// Actions recorded (Entry.Action).
const (
	ActionSignup            = "account.signup"
	ActionLogin             = "account.login"
	ActionLoginFailed       = "account.login_failed"
	ActionKeyCreate         = "key.create"
	ActionKeyRevoke         = "key.revoke"
	ActionKeyRotate         = "key.rotate"
	ActionKeyUpdate         = "key.update"
	ActionSpendCapSet       = "billing.spend_cap_set"
	ActionPaymentMethodAdd  = "billing.payment_method_added"
	ActionCreditsGranted    = "billing.credits_granted"
	ActionWebhookCreate     = "webhook.create"
	ActionWebhookDelete     = "webhook.delete"
	ActionWebhookEnable     = "webhook.enable"
	ActionFunctionCreate    = "function.create"
	ActionFunctionVersion   = "function.version"
	ActionFunctionPublish   = "function.publish"
	ActionFunctionUnpublish = "function.unpublish"
	ActionErrorAlertSet     = "function.error_rate_alert_set"
)

// Entry is one line of an account's audit log.
type Entry struct {
	ID string
	At time.Time
	// ActorID is the account the entry belongs to and that acted (empty
	// for a failed login with an email no account has: such entries are
	// kept but listed to no one).
	ActorID string
	Action  string
	// Target names what was acted on: a key id, a function id, an email.
	Target string
	// IP is the client address the API saw; empty when no client made the
	// change (a Stripe event).
	IP     string
	Detail string
}

type row struct {
	ID             string    `gorm:"column:id;primaryKey"`
	At             time.Time `gorm:"column:at"`
	ActorAccountID *string   `gorm:"column:actor_account_id"`
	Action         string    `gorm:"column:action"`
	Target         string    `gorm:"column:target"`
	IP             string    `gorm:"column:ip"`
	Detail         string    `gorm:"column:detail"`
}

func (row) TableName() string { return "audit_log" }

// Record appends e to the log in tx (a transaction or a plain handle). At
// defaults to now; the id is made here.
func Record(tx *gorm.DB, e Entry, now time.Time) error {
	if e.Action == "" {
		return errors.New("audit: an action is required")
	}
	at := e.At
	if at.IsZero() {
		at = now
	}
	r := row{ID: fnmarket.NewID("aud"), At: at.UTC().Truncate(time.Microsecond), Action: e.Action, Target: e.Target, IP: e.IP, Detail: e.Detail}
	if e.ActorID != "" {
		r.ActorAccountID = &e.ActorID
	}
	if err := tx.Create(&r).Error; err != nil {
		return fmt.Errorf("audit %s: %w", e.Action, err)
	}
	return nil
}

// Recorder records entries outside any other transaction: the API's, after
// the change it reports succeeded (api.Deps.Audit).
type Recorder interface {
	Record(ctx context.Context, e Entry) error
}

// Log is the audit log in the database: a Recorder and the reader of
// GET /api/v1/audit.
type Log struct {
	db    *database.DB
	clock fnmarket.Clock
}

// NewLog returns the log over db; a nil clock is the system clock.
func NewLog(db *database.DB, clock fnmarket.Clock) *Log {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &Log{db: db, clock: clock}
}

// Record appends e.
func (l *Log) Record(ctx context.Context, e Entry) error {
	return Record(l.db.WithContext(ctx), e, l.clock.Now())
}

// MaxPage is the most entries List returns at once.
const MaxPage = 100

// List returns the account's entries, newest first, at most limit (1 to
// MaxPage) after cursor (empty: from the newest), and the cursor of the next
// page (empty: no more).
func (l *Log) List(ctx context.Context, accountID, cursor string, limit int) ([]Entry, string, error) {
	if limit <= 0 || limit > MaxPage {
		limit = MaxPage
	}
	q := l.db.WithContext(ctx).Where("actor_account_id = ?", accountID)
	if cursor != "" {
		at, id, ok := decodeCursor(cursor)
		if !ok {
			return nil, "", &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the cursor is not one this list gave",
				Fields: map[string]string{"cursor": "is not a cursor of this list"}}
		}
		q = q.Where("at < ? OR (at = ? AND id < ?)", at, at, id)
	}
	var rows []row
	if err := q.Order("at DESC, id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, "", fnmarket.Wrap("read audit log", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[len(rows)-1]
		next = encodeCursor(last.At, last.ID)
	}
	out := make([]Entry, len(rows))
	for i, r := range rows {
		out[i] = Entry{ID: r.ID, At: r.At.UTC(), ActorID: accountID, Action: r.Action, Target: r.Target, IP: r.IP, Detail: r.Detail}
	}
	return out, next, nil
}

func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UTC().UnixMicro(), 10) + ":" + id))
}

func decodeCursor(c string) (time.Time, string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", false
	}
	us, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", false
	}
	return time.UnixMicro(n).UTC(), id, true
}

// RecordFailedLogin records a wrong password (or unknown email) at login:
// under the account that has the email when there is one, so its owner sees
// the attempt; otherwise under no account (kept, listed to no one).
func (l *Log) RecordFailedLogin(ctx context.Context, email, ip string) error {
	var ids []string
	if err := l.db.WithContext(ctx).Table("accounts").Where("email = ?", email).Limit(1).Pluck("id", &ids).Error; err != nil {
		return fnmarket.Wrap("find the account of a failed login", err)
	}
	e := Entry{Action: ActionLoginFailed, Target: email, IP: ip}
	if len(ids) == 1 {
		e.ActorID = ids[0]
	}
	return l.Record(ctx, e)
}
