// Package accounts owns the people who sign in (accounts, with bcrypt
// password hashes) and the API keys consumers call functions with (kept only
// as SHA-256 hashes behind a visible prefix).
package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/crypto/bcrypt"
	"gorm.io/gorm"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/webhooks"
)

// Account is someone who signs in to the portal.
type Account struct {
	ID        string
	Email     string
	Name      string
	CreatedAt time.Time
	// CredentialStamp changes whenever the password does (it is a digest of
	// the password hash); sessions carry it, so a password change ends every
	// session issued before it.
	CredentialStamp string
}

// APIKey is a consumer's credential for the gateway. The full key is never
// stored; Secret is set only in the answer to its creation.
type APIKey struct {
	ID              string
	AccountID       string
	Name            string
	Prefix          string
	Secret          string
	MonthlySpendCap *decimal.Decimal
	CreatedAt       time.Time
	LastUsedAt      *time.Time
	RevokedAt       *time.Time
	// AlertThresholds are the percents of MonthlySpendCap that raise
	// usage.threshold_reached (DefaultAlertThresholds unless set).
	AlertThresholds []int
}

// KeyPrefix starts every API key, so leaked keys are easy to recognise.
const KeyPrefix = "fnm_"

// BcryptCost is the work factor for password hashes.
const BcryptCost = 11

// Store keeps accounts and API keys.
type Store struct {
	db    *database.DB
	clock fnmarket.Clock
	cost  int

	policy BillingPolicy

	dummyOnce sync.Once
	dummy     []byte
}

// NewStore returns an account store. cost is the bcrypt cost (0 for BcryptCost;
// tests may pass bcrypt.MinCost).
func NewStore(db *database.DB, clock fnmarket.Clock, cost int) *Store {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	if cost == 0 {
		cost = BcryptCost
	}
	return &Store{db: db, clock: clock, cost: cost}
}

type accountRow struct {
	ID           string `gorm:"primaryKey"`
	Email        string
	Name         string
	PasswordHash string
	CreatedAt    time.Time
}

func (accountRow) TableName() string { return "accounts" }

func (r accountRow) domain() Account {
	sum := sha256.Sum256([]byte(r.PasswordHash))
	return Account{ID: r.ID, Email: r.Email, Name: r.Name, CreatedAt: r.CreatedAt.UTC(), CredentialStamp: hex.EncodeToString(sum[:])}
}

type keyRow struct {
	ID              string `gorm:"primaryKey"`
	AccountID       string
	Name            string
	Prefix          string
	KeyHash         string
	MonthlySpendCap *string
	AlertThresholds *string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	LastUsedAt      *time.Time
	RevokedAt       *time.Time
}

func (keyRow) TableName() string { return "api_keys" }

func (r keyRow) domain() APIKey {
	k := APIKey{ID: r.ID, AccountID: r.AccountID, Name: r.Name, Prefix: r.Prefix, CreatedAt: r.CreatedAt.UTC(), LastUsedAt: utcPtr(r.LastUsedAt), RevokedAt: utcPtr(r.RevokedAt),
		AlertThresholds: ParseAlertThresholds(r.AlertThresholds)}
	if r.MonthlySpendCap != nil {
		if d, err := decimal.NewFromString(*r.MonthlySpendCap); err == nil {
			k.MonthlySpendCap = &d
		}
	}
	return k
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Models lists the row types, so a test can check the migrated schema.
func Models() []any { return []any{&accountRow{}, &keyRow{}, &billingRow{}, &grantRow{}} }

// NormalizeEmail lower-cases and trims an email address.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// SignUp creates an account; the email must be new.
func (s *Store) SignUp(ctx context.Context, email, name, password string) (Account, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return Account{}, fmt.Errorf("hash password: %w", err)
	}
	r := accountRow{ID: fnmarket.NewID("acc"), Email: NormalizeEmail(email), Name: strings.TrimSpace(name), PasswordHash: string(hash), CreatedAt: s.clock.Now()}
	conflict := &fnmarket.Error{Code: fnmarket.ECONFLICT, Message: "an account with that email exists", Fields: map[string]string{"email": "is already registered"}}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&accountRow{}).Where("email = ?", r.Email).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return conflict
		}
		return tx.Create(&r).Error
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return Account{}, conflict
	}
	if err != nil {
		return Account{}, wrap("sign up", err)
	}
	return r.domain(), nil
}

// dummyHash makes a login for an unknown email cost as much as a real one, so
// response time does not tell which emails are registered: it is made once,
// at the store's own cost, the same as every password hash it writes.
func (s *Store) dummyHash() []byte {
	s.dummyOnce.Do(func() {
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("fnmarket-timing-equaliser "+fnmarket.RandomToken(8)), s.cost)
	})
	return s.dummy
}

// Authenticate checks an email and password.
func (s *Store) Authenticate(ctx context.Context, email, password string) (Account, error) {
	bad := fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "wrong email or password")
	var r accountRow
	err := s.db.WithContext(ctx).Where("email = ?", NormalizeEmail(email)).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash(), []byte(password))
		return Account{}, bad
	}
	if err != nil {
		return Account{}, wrap("authenticate", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(r.PasswordHash), []byte(password)) != nil {
		return Account{}, bad
	}
	return r.domain(), nil
}

// ChangePassword replaces an account's password after checking the current
// one. The account's CredentialStamp changes with it.
func (s *Store) ChangePassword(ctx context.Context, id, current, next string) (Account, error) {
	var r accountRow
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Account{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such account")
	}
	if err != nil {
		return Account{}, wrap("find account", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(r.PasswordHash), []byte(current)) != nil {
		return Account{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the current password is wrong", Fields: map[string]string{"current_password": "is not your current password"}}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(next), s.cost)
	if err != nil {
		return Account{}, fmt.Errorf("hash password: %w", err)
	}
	// Only the hash that was checked is replaced, so two changes at once
	// cannot both pass with the same old password.
	res := s.db.WithContext(ctx).Model(&accountRow{}).Where("id = ? AND password_hash = ?", id, r.PasswordHash).Update("password_hash", string(hash))
	if res.Error != nil {
		return Account{}, wrap("change password", res.Error)
	}
	if res.RowsAffected != 1 {
		return Account{}, fnmarket.Errorf(fnmarket.ECONFLICT, "the password changed meanwhile; try again")
	}
	r.PasswordHash = string(hash)
	return r.domain(), nil
}

// Account returns an account by id.
func (s *Store) Account(ctx context.Context, id string) (Account, error) {
	var r accountRow
	err := s.db.WithContext(ctx).Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Account{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no such account")
	}
	if err != nil {
		return Account{}, wrap("find account", err)
	}
	return r.domain(), nil
}

// AccountsByID returns accounts by id.
func (s *Store) AccountsByID(ctx context.Context, ids []string) (map[string]Account, error) {
	var rows []accountRow
	if len(ids) > 0 {
		if err := s.db.WithContext(ctx).Where("id IN ?", ids).Find(&rows).Error; err != nil {
			return nil, wrap("list accounts", err)
		}
	}
	out := make(map[string]Account, len(rows))
	for _, r := range rows {
		out[r.ID] = r.domain()
	}
	return out, nil
}

// CreateKey issues a new API key: 24 random bytes (192 bits) after
// KeyPrefix. The returned key's Secret is the only time the full key exists.
func (s *Store) CreateKey(ctx context.Context, accountID, name string, spendCap *decimal.Decimal) (APIKey, error) {
	return s.CreateKeyAlerting(ctx, accountID, name, spendCap, nil)
}

// CreateKeyAlerting is CreateKey with the key's alert thresholds (nil: the
// default), which must be valid (CheckAlertThresholds).
func (s *Store) CreateKeyAlerting(ctx context.Context, accountID, name string, spendCap *decimal.Decimal, thresholds []int) (APIKey, error) {
	if err := CheckAlertThresholds(thresholds); err != nil {
		return APIKey{}, err
	}
	secret := KeyPrefix + fnmarket.RandomToken(24)
	now := s.clock.Now()
	r := keyRow{ID: fnmarket.NewID("key"), AccountID: accountID, Name: strings.TrimSpace(name), Prefix: secret[:len(KeyPrefix)+8],
		KeyHash: fnmarket.HashAPIKey(secret), CreatedAt: now, UpdatedAt: now}
	if spendCap != nil {
		c := spendCap.String()
		r.MonthlySpendCap = &c
	}
	r.AlertThresholds = formatAlertThresholds(thresholds)
	if err := s.db.WithContext(ctx).Create(&r).Error; err != nil {
		return APIKey{}, wrap("create key", err)
	}
	k := r.domain()
	k.Secret = secret
	return k, nil
}

// Keys lists an account's keys, newest first.
func (s *Store) Keys(ctx context.Context, accountID string) ([]APIKey, error) {
	var rows []keyRow
	if err := s.db.WithContext(ctx).Where("account_id = ?", accountID).Order("created_at DESC, id").Find(&rows).Error; err != nil {
		return nil, wrap("list keys", err)
	}
	out := make([]APIKey, len(rows))
	for i, r := range rows {
		out[i] = r.domain()
	}
	return out, nil
}

// RevokeKey revokes one of the account's keys. Another account's key is
// reported as not found. key.revoked is enqueued with the revocation, once.
func (s *Store) RevokeKey(ctx context.Context, accountID, id string) error {
	now := s.clock.Now()
	var r keyRow
	err := s.db.WithContext(ctx).Where("id = ? AND account_id = ?", id, accountID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return fnmarket.Errorf(fnmarket.ENOTFOUND, "no key %q among yours", id)
	}
	if err != nil {
		return wrap("find key", err)
	}
	if r.RevokedAt != nil {
		return nil
	}
	return wrap("revoke key", s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Model(&keyRow{}).Where("id = ? AND revoked_at IS NULL", id).Updates(map[string]any{"revoked_at": now, "updated_at": now})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		_, _, err := webhooks.Enqueue(tx, webhooks.Event{AccountID: accountID, Type: webhooks.TypeKeyRevoked, DedupeKey: "key_revoked:" + id,
			Data: KeyRevokedData{KeyID: id, Name: r.Name, Prefix: r.Prefix, RevokedAt: now.UTC().Format(time.RFC3339)}}, now)
		return err
	}))
}

// KeyRevokedData is the data of key.revoked.
type KeyRevokedData struct {
	KeyID     string `json:"key_id"`
	Name      string `json:"name"`
	Prefix    string `json:"prefix"`
	RevokedAt string `json:"revoked_at"`
}

// GatewayKey is what the gateway needs to know of a key.
type GatewayKey struct {
	ID              string
	AccountID       string
	MonthlySpendCap *decimal.Decimal
	Revoked         bool
	// Account is the key's account's billing state (Store.Billing).
	Account Billing
}

// KeyByHash finds a key by the hash of its secret, with its account's
// billing state.
func (s *Store) KeyByHash(ctx context.Context, hash string) (GatewayKey, error) {
	var r keyRow
	db := s.db.WithContext(ctx)
	err := db.Where("key_hash = ?", hash).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return GatewayKey{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "unknown key")
	}
	if err != nil {
		return GatewayKey{}, wrap("find key", err)
	}
	k := r.domain()
	b, err := s.billing(db, k.AccountID)
	if err != nil {
		return GatewayKey{}, err
	}
	return GatewayKey{ID: k.ID, AccountID: k.AccountID, MonthlySpendCap: k.MonthlySpendCap, Revoked: k.RevokedAt != nil, Account: b}, nil
}

// KeysChangedSince returns the hashes of keys changed (revoked) at or after
// since, and of every key of an account whose billing state changed then:
// its cap, card or credit, an invoice paid, voided or failing
// (account_billing.billing_updated_at), or, with payments enabled, an
// invoice that became past due (its issue time plus the policy's
// SuspendAfter fell in [since, now]) or that was updated since while past
// due (it reached Stripe late).
func (s *Store) KeysChangedSince(ctx context.Context, since time.Time) ([]string, error) {
	since = since.UTC()
	q := `SELECT key_hash FROM api_keys WHERE updated_at >= ?
		UNION SELECT k.key_hash FROM api_keys k JOIN account_billing b ON b.account_id = k.account_id WHERE b.billing_updated_at >= ?`
	args := []any{since, since}
	if s.policy.PaymentsEnabled {
		dueBy := s.clock.Now().Add(-s.policy.SuspendAfter).UTC()
		q += ` UNION SELECT k.key_hash FROM api_keys k WHERE k.account_id IN (` + pastDueInvoices + ` AND e.at <= ? AND (e.at >= ? OR i.updated_at >= ?))`
		args = append(args, dueBy, since.Add(-s.policy.SuspendAfter), since)
	}
	var hashes []string
	err := s.db.WithContext(ctx).Raw(q, args...).Scan(&hashes).Error
	return hashes, wrap("keys changed", err)
}

// TouchKeys records when keys were last used (from rolled-up usage); it only
// moves last_used_at forward. tx is the caller's transaction.
func TouchKeys(tx *gorm.DB, lastUsed map[string]time.Time) error {
	for id, t := range lastUsed {
		err := tx.Model(&keyRow{}).Where("id = ? AND (last_used_at IS NULL OR last_used_at < ?)", id, t.UTC()).
			Update("last_used_at", t.UTC()).Error
		if err != nil {
			return fmt.Errorf("touch key %s: %w", id, err)
		}
	}
	return nil
}

// wrap adds what was being done to err (see fnmarket.Wrap).
func wrap(what string, err error) error { return fnmarket.Wrap(what, err) }
