package wasm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/internal/database"
)

// ModuleStore keeps module bytes by SHA-256 where every replica can read
// them, so any gateway can compile a module another replica accepted.
type ModuleStore interface {
	// PutModule stores code under sha (its lower-case hex SHA-256). Storing
	// the same module again is not an error.
	PutModule(ctx context.Context, sha string, code []byte) error
	// Module returns the code stored under sha, or an *fnmarket.Error with
	// code ENOTFOUND.
	Module(ctx context.Context, sha string) ([]byte, error)
}

// Store is the ModuleStore over the relational database (table
// wasm_modules, migration 00004).
type Store struct {
	db    *database.DB
	clock fnmarket.Clock
}

var _ ModuleStore = (*Store)(nil)

// NewStore returns a module store over db; a nil clock means the system clock.
func NewStore(db *database.DB, clock fnmarket.Clock) *Store {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &Store{db: db, clock: clock}
}

type moduleRow struct {
	SHA256    string `gorm:"column:sha256;primaryKey"`
	Code      []byte `gorm:"column:code"`
	Size      int64  `gorm:"column:size"`
	CreatedAt time.Time
}

func (moduleRow) TableName() string { return "wasm_modules" }

// Models returns the gorm models this package maps, for schema checks.
func Models() []any { return []any{&moduleRow{}} }

// PutModule implements ModuleStore. It refuses code whose hash is not sha,
// so a caller's mistake cannot poison the content-addressed table.
func (s *Store) PutModule(ctx context.Context, sha string, code []byte) error {
	if got := sumHex(code); got != sha {
		return fmt.Errorf("put wasm module %s: the code hashes to %s", sha, got)
	}
	row := moduleRow{SHA256: sha, Code: code, Size: int64(len(code)), CreatedAt: s.clock.Now()}
	// Modules are immutable and content-addressed: a second upload of the
	// same bytes (by any vendor, on any replica, at the same moment) is a
	// no-op rather than a conflict.
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "sha256"}}, DoNothing: true}).Create(&row).Error
	if err != nil {
		return fmt.Errorf("put wasm module %s: %w", sha, err)
	}
	return nil
}

// Module implements ModuleStore.
func (s *Store) Module(ctx context.Context, sha string) ([]byte, error) {
	var row moduleRow
	err := s.db.WithContext(ctx).Where("sha256 = ?", sha).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, &fnmarket.Error{Code: fnmarket.ENOTFOUND, Message: "no such wasm module", Err: fmt.Errorf("wasm module %s", sha)}
	}
	if err != nil {
		return nil, fmt.Errorf("read wasm module %s: %w", sha, err)
	}
	return row.Code, nil
}

// sumHex returns the lower-case hex SHA-256 of b.
func sumHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MemoryStore is a ModuleStore in process memory, for tests and for a single
// process that need not share modules; its modules do not survive a restart.
type MemoryStore struct {
	mu      sync.Mutex
	modules map[string][]byte
}

var _ ModuleStore = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{modules: map[string][]byte{}} }

// PutModule implements ModuleStore.
func (s *MemoryStore) PutModule(_ context.Context, sha string, code []byte) error {
	if got := sumHex(code); got != sha {
		return fmt.Errorf("put wasm module %s: the code hashes to %s", sha, got)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.modules[sha]; !ok {
		s.modules[sha] = bytes.Clone(code)
	}
	return nil
}

// Module implements ModuleStore.
func (s *MemoryStore) Module(_ context.Context, sha string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	code, ok := s.modules[sha]
	if !ok {
		return nil, &fnmarket.Error{Code: fnmarket.ENOTFOUND, Message: "no such wasm module", Err: fmt.Errorf("wasm module %s", sha)}
	}
	return code, nil
}
