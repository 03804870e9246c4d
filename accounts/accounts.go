// Package accounts owns the people who sign in (accounts, with bcrypt
// password hashes) and the API keys consumers call functions with (kept only
// as SHA-256 hashes behind a visible prefix).
package accounts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	// ExpiresAt is when the key stops working (nil: never).
	ExpiresAt *time.Time
	// AllowedFunctions are the "vendor/name" functions the key may call;
	// empty: every function.
	AllowedFunctions []string
	// RateLimitPerSecond is the key's own limit; 0: the platform default.
	RateLimitPerSecond int
	// PreviousExpiresAt is when the secret replaced by the last rotation
	// stops working (nil: no grace running, or it ended).
	PreviousExpiresAt *time.Time
}

// NewKey is what a new key is made with (CreateKeyWith).
type NewKey struct {
	Name               string
	MonthlySpendCap    *decimal.Decimal
	ExpiresAt          *time.Time
	AllowedFunctions   []string
	RateLimitPerSecond int
	// AlertThresholds are percents of the cap (nil: the default).
	AlertThresholds []int
}

// MaxGrace is the longest grace a rotation may give the old secret.
const MaxGrace = 30 * 24 * time.Hour

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
	ExpiresAt       *time.Time
	// AllowedFunctions is a JSON array of "vendor/name".
	AllowedFunctions   string
	RateLimitPerSecond int
	PreviousKeyHash    *string
	PreviousExpiresAt  *time.Time
	RetiredKeyHash     *string
}

func (keyRow) TableName() string { return "api_keys" }

func (r keyRow) domain() APIKey {
	k := APIKey{ID: r.ID, AccountID: r.AccountID, Name: r.Name, Prefix: r.Prefix, CreatedAt: r.CreatedAt.UTC(), LastUsedAt: utcPtr(r.LastUsedAt), RevokedAt: utcPtr(r.RevokedAt),
		AlertThresholds: ParseAlertThresholds(r.AlertThresholds),
		ExpiresAt:       utcPtr(r.ExpiresAt), RateLimitPerSecond: r.RateLimitPerSecond, AllowedFunctions: []string{}}
	if r.PreviousKeyHash != nil {
		k.PreviousExpiresAt = utcPtr(r.PreviousExpiresAt)
	}
	if r.AllowedFunctions != "" {
		_ = json.Unmarshal([]byte(r.AllowedFunctions), &k.AllowedFunctions)
	}
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

// CreateKey issues a new API key with a name and an optional cap (see
// CreateKeyWith).
func (s *Store) CreateKey(ctx context.Context, accountID, name string, spendCap *decimal.Decimal) (APIKey, error) {
	return s.CreateKeyWith(ctx, accountID, NewKey{Name: name, MonthlySpendCap: spendCap})
}

// CreateKeyAlerting is CreateKey with the key's alert thresholds (nil: the
// default).
func (s *Store) CreateKeyAlerting(ctx context.Context, accountID, name string, spendCap *decimal.Decimal, thresholds []int) (APIKey, error) {
	return s.CreateKeyWith(ctx, accountID, NewKey{Name: name, MonthlySpendCap: spendCap, AlertThresholds: thresholds})
}

// CreateKeyWith issues a new API key: 24 random bytes (192 bits) after
// KeyPrefix. The returned key's Secret is the only time the full key exists.
// nk is stored as given, but for its alert thresholds, which must be valid
// (CheckAlertThresholds): the caller validates the rest.
func (s *Store) CreateKeyWith(ctx context.Context, accountID string, nk NewKey) (APIKey, error) {
	if err := CheckAlertThresholds(nk.AlertThresholds); err != nil {
		return APIKey{}, err
	}
	secret := newSecret()
	now := s.clock.Now()
	allowed := nk.AllowedFunctions
	if allowed == nil {
		allowed = []string{}
	}
	af, err := json.Marshal(allowed)
	if err != nil {
		return APIKey{}, wrap("create key", err)
	}
	r := keyRow{ID: fnmarket.NewID("key"), AccountID: accountID, Name: strings.TrimSpace(nk.Name), Prefix: secret[:len(KeyPrefix)+8],
		KeyHash: fnmarket.HashAPIKey(secret), CreatedAt: now, UpdatedAt: now,
		ExpiresAt: utcPtr(nk.ExpiresAt), AllowedFunctions: string(af), RateLimitPerSecond: nk.RateLimitPerSecond}
	if nk.MonthlySpendCap != nil {
		c := nk.MonthlySpendCap.String()
		r.MonthlySpendCap = &c
	}
	r.AlertThresholds = formatAlertThresholds(nk.AlertThresholds)
	if err := s.db.WithContext(ctx).Create(&r).Error; err != nil {
		return APIKey{}, wrap("create key", err)
	}
	k := r.domain()
	k.Secret = secret
	return k, nil
}

func newSecret() string { return KeyPrefix + fnmarket.RandomToken(24) }

// RotateKey gives one of the account's keys a new secret, returned once in
// Secret, and keeps its id, so its month's spend, cap, scopes, limits and
// alerts carry over. The old secret keeps working for grace (0 ends it
// now; at most MaxGrace), never past the key's own expiry. Only one previous
// secret is kept: rotating again while a grace runs ends that earlier grace
// at once (its hash becomes retired_key_hash, for the gateways to drop).
// Another account's key, or a revoked one, is reported as not found or
// conflict respectively.
func (s *Store) RotateKey(ctx context.Context, accountID, id string, grace time.Duration) (APIKey, error) {
	if grace < 0 || grace > MaxGrace {
		return APIKey{}, &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the grace is out of range", Fields: map[string]string{"grace_seconds": "must be 0 to 2592000 (30 days)"}}
	}
	secret := newSecret()
	now := s.clock.Now()
	var out keyRow
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		r, err := liveKey(tx, accountID, id)
		if err != nil {
			return err
		}
		until := now.Add(grace).UTC()
		if r.ExpiresAt != nil && r.ExpiresAt.Before(until) {
			until = r.ExpiresAt.UTC()
		}
		upd := map[string]any{
			"key_hash": fnmarket.HashAPIKey(secret), "prefix": secret[:len(KeyPrefix)+8],
			"previous_key_hash": r.KeyHash, "previous_expires_at": until,
			"retired_key_hash": r.PreviousKeyHash, "updated_at": now,
		}
		// Only the hash that was read is replaced, so two rotations at once
		// cannot both keep the same previous secret.
		return updateKeyRow(tx, tx.Model(&keyRow{}).Where("id = ? AND key_hash = ?", id, r.KeyHash), id, upd, "the key was rotated meanwhile; try again", &out)
	})
	if err != nil {
		return APIKey{}, wrap("rotate key", err)
	}
	k := out.domain()
	k.Secret = secret
	return k, nil
}

// UpdateKey changes the settings of one of the account's keys: edit gets
// them as they are (a NewKey) and changes what it will; the secret, its
// rotation and the month's spend stay. Every gateway sees the change within
// its poll (KeysChangedSince: updated_at moves), a lowered cap included
// (metering.Leaser gives back money leases taken under other caps). The
// edited alert thresholds must be valid (CheckAlertThresholds): the caller
// validates the rest. Another account's key is reported as not found, a
// revoked one as a conflict.
func (s *Store) UpdateKey(ctx context.Context, accountID, id string, edit func(*NewKey)) (APIKey, error) {
	now := s.clock.Now()
	var out keyRow
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		r, err := liveKey(tx, accountID, id)
		if err != nil {
			return err
		}
		k := r.domain()
		nk := NewKey{Name: k.Name, MonthlySpendCap: k.MonthlySpendCap, ExpiresAt: k.ExpiresAt,
			AllowedFunctions: k.AllowedFunctions, RateLimitPerSecond: k.RateLimitPerSecond, AlertThresholds: ParseAlertThresholds(r.AlertThresholds)}
		edit(&nk)
		if err := CheckAlertThresholds(nk.AlertThresholds); err != nil {
			return err
		}
		if nk.AllowedFunctions == nil {
			nk.AllowedFunctions = []string{}
		}
		af, err := json.Marshal(nk.AllowedFunctions)
		if err != nil {
			return err
		}
		var spendCap *string
		if nk.MonthlySpendCap != nil {
			c := nk.MonthlySpendCap.String()
			spendCap = &c
		}
		upd := map[string]any{
			"name": strings.TrimSpace(nk.Name), "monthly_spend_cap": spendCap, "expires_at": utcPtr(nk.ExpiresAt),
			"allowed_functions": string(af), "rate_limit_per_second": nk.RateLimitPerSecond,
			"alert_thresholds": formatAlertThresholds(nk.AlertThresholds), "updated_at": now,
		}
		return updateKeyRow(tx, tx.Model(&keyRow{}).Where("id = ? AND revoked_at IS NULL", id), id, upd, "the key was revoked meanwhile", &out)
	})
	if err != nil {
		return APIKey{}, wrap("update key", err)
	}
	return out.domain(), nil
}

// liveKey reads one of the account's keys that is not revoked, in tx:
// another account's key is not found, a revoked one a conflict.
func liveKey(tx *gorm.DB, accountID, id string) (keyRow, error) {
	var r keyRow
	err := tx.Where("id = ? AND account_id = ?", id, accountID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return r, fnmarket.Errorf(fnmarket.ENOTFOUND, "no key %q among yours", id)
	}
	if err != nil {
		return r, err
	}
	if r.RevokedAt != nil {
		return r, fnmarket.Errorf(fnmarket.ECONFLICT, "the key is revoked; create a new one")
	}
	return r, nil
}

// updateKeyRow applies upd through q, which must match key id's row alone
// (else conflict: another change came first), and reads the row back.
func updateKeyRow(tx, q *gorm.DB, id string, upd map[string]any, conflict string, out *keyRow) error {
	res := q.Updates(upd)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected != 1 {
		return fnmarket.Errorf(fnmarket.ECONFLICT, "%s", conflict)
	}
	return tx.Where("id = ?", id).Take(out).Error
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
	// ExpiresAt is when the presented secret stops working: the key's
	// expiry or, for the secret a rotation replaced, the end of its grace
	// (whichever is sooner); nil: never.
	ExpiresAt *time.Time
	// Rotated means the presented secret is the one a rotation replaced.
	Rotated bool
	// AllowedFunctions are the "vendor/name" the key may call; empty: all.
	AllowedFunctions []string
	// RateLimitPerSecond is the key's own limit; 0: none of its own.
	RateLimitPerSecond int
	// Account is the key's account's billing state (Store.Billing).
	Account Billing
}

// KeyByHash finds a key by the hash of its secret, or of the secret its
// last rotation replaced, with its account's billing state.
func (s *Store) KeyByHash(ctx context.Context, hash string) (GatewayKey, error) {
	var r keyRow
	db := s.db.WithContext(ctx)
	err := db.Where("key_hash = ? OR previous_key_hash = ?", hash, hash).Take(&r).Error
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
	gk := GatewayKey{ID: k.ID, AccountID: k.AccountID, MonthlySpendCap: k.MonthlySpendCap, Revoked: k.RevokedAt != nil, Account: b,
		ExpiresAt: k.ExpiresAt, AllowedFunctions: k.AllowedFunctions, RateLimitPerSecond: k.RateLimitPerSecond}
	if r.KeyHash != hash {
		gk.Rotated = true
		if p := utcPtr(r.PreviousExpiresAt); p != nil && (gk.ExpiresAt == nil || p.Before(*gk.ExpiresAt)) {
			gk.ExpiresAt = p
		}
	}
	return gk, nil
}

// KeysChangedSince returns the hashes of keys changed (created, rotated,
// revoked) at or after since, with the hashes their rotations replaced,
// and of every key of an account whose billing state changed then:
// its cap, card or credit, an invoice paid, voided or failing
// (account_billing.billing_updated_at), or, with payments enabled, an
// invoice that became past due (its issue time plus the policy's
// SuspendAfter fell in [since, now]) or that was updated since while past
// due (it reached Stripe late).
func (s *Store) KeysChangedSince(ctx context.Context, since time.Time) ([]string, error) {
	since = since.UTC()
	q := `SELECT key_hash FROM api_keys WHERE updated_at >= ?
		UNION SELECT previous_key_hash FROM api_keys WHERE updated_at >= ? AND previous_key_hash IS NOT NULL
		UNION SELECT retired_key_hash FROM api_keys WHERE updated_at >= ? AND retired_key_hash IS NOT NULL
		UNION SELECT k.key_hash FROM api_keys k JOIN account_billing b ON b.account_id = k.account_id WHERE b.billing_updated_at >= ?
		UNION SELECT k.previous_key_hash FROM api_keys k JOIN account_billing b ON b.account_id = k.account_id WHERE b.billing_updated_at >= ? AND k.previous_key_hash IS NOT NULL`
	args := []any{since, since, since, since, since}
	if s.policy.PaymentsEnabled {
		dueBy := s.clock.Now().Add(-s.policy.SuspendAfter).UTC()
		q += ` UNION SELECT k.key_hash FROM api_keys k WHERE k.account_id IN (` + pastDueInvoices + ` AND e.at <= ? AND (e.at >= ? OR i.updated_at >= ?))`
		q += ` UNION SELECT k.previous_key_hash FROM api_keys k WHERE k.previous_key_hash IS NOT NULL AND k.account_id IN (` + pastDueInvoices + ` AND e.at <= ? AND (e.at >= ? OR i.updated_at >= ?))`
		args = append(args, dueBy, since.Add(-s.policy.SuspendAfter), since, dueBy, since.Add(-s.policy.SuspendAfter), since)
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
