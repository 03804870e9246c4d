package catalogstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/internal/database"
)

// Store keeps vendors, functions and versions in the relational database.
type Store struct {
	db    *database.DB
	clock fnmarket.Clock
}

// NewStore returns a catalog store over db.
func NewStore(db *database.DB, clock fnmarket.Clock) *Store {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &Store{db: db, clock: clock}
}

type vendorRow struct {
	ID              string `gorm:"primaryKey"`
	AccountID       string
	Slug            string
	DisplayName     string
	StripeAccountID *string
	CreatedAt       time.Time
}

func (vendorRow) TableName() string { return "vendors" }

func (r vendorRow) domain() catalog.Vendor {
	v := catalog.Vendor{ID: r.ID, AccountID: r.AccountID, Slug: r.Slug, DisplayName: r.DisplayName, CreatedAt: r.CreatedAt.UTC()}
	if r.StripeAccountID != nil {
		v.StripeAccountID = *r.StripeAccountID
	}
	return v
}

type functionRow struct {
	ID               string `gorm:"primaryKey"`
	VendorID         string
	Name             string
	Description      string
	PublishedVersion *int
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

func (functionRow) TableName() string { return "functions" }

type versionRow struct {
	FunctionID         string `gorm:"primaryKey"`
	Version            int    `gorm:"primaryKey"`
	Backend            string
	Pricing            string
	TimeoutMs          int
	RateLimitPerSecond int
	EverPublished      bool
	CreatedAt          time.Time
}

func (versionRow) TableName() string { return "function_versions" }

func (r versionRow) domain() (catalog.Version, error) {
	v := catalog.Version{FunctionID: r.FunctionID, Version: r.Version, TimeoutMs: r.TimeoutMs, RateLimitPerSecond: r.RateLimitPerSecond, EverPublished: r.EverPublished, CreatedAt: r.CreatedAt.UTC()}
	if err := json.Unmarshal([]byte(r.Backend), &v.Backend); err != nil {
		return v, fmt.Errorf("decode backend of %s v%d: %w", r.FunctionID, r.Version, err)
	}
	if err := json.Unmarshal([]byte(r.Pricing), &v.Pricing); err != nil {
		return v, fmt.Errorf("decode pricing of %s v%d: %w", r.FunctionID, r.Version, err)
	}
	return v, nil
}

// Models lists the row types, so a test can check the migrated schema has
// every column the code maps.
func Models() []any { return []any{&vendorRow{}, &functionRow{}, &versionRow{}} }

// CreateVendor makes accountID a vendor.
func (s *Store) CreateVendor(ctx context.Context, accountID, slug, displayName string) (catalog.Vendor, error) {
	r := vendorRow{ID: fnmarket.NewID("ven"), AccountID: accountID, Slug: slug, DisplayName: displayName, CreatedAt: s.clock.Now()}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&vendorRow{}).Where("account_id = ?", accountID).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return fnmarket.Errorf(fnmarket.ECONFLICT, "this account is already a vendor")
		}
		if err := tx.Model(&vendorRow{}).Where("slug = ?", slug).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return &fnmarket.Error{Code: fnmarket.ECONFLICT, Message: "that vendor slug is taken", Fields: map[string]string{"slug": "is already taken"}}
		}
		return tx.Create(&r).Error
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return catalog.Vendor{}, &fnmarket.Error{Code: fnmarket.ECONFLICT, Message: "that vendor slug is taken", Fields: map[string]string{"slug": "is already taken"}}
	}
	if err != nil {
		return catalog.Vendor{}, wrap("create vendor", err)
	}
	return r.domain(), nil
}

// VendorByAccount returns the vendor of an account, ENOTFOUND if it is none.
func (s *Store) VendorByAccount(ctx context.Context, accountID string) (catalog.Vendor, error) {
	var r vendorRow
	err := s.db.WithContext(ctx).Where("account_id = ?", accountID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return catalog.Vendor{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "this account is not a vendor")
	}
	if err != nil {
		return catalog.Vendor{}, wrap("find vendor", err)
	}
	return r.domain(), nil
}

// VendorsByID returns vendors by id.
func (s *Store) VendorsByID(ctx context.Context, ids []string) (map[string]catalog.Vendor, error) {
	var rows []vendorRow
	if err := s.db.WithContext(ctx).Where("id IN ?", ids).Find(&rows).Error; err != nil {
		return nil, wrap("list vendors", err)
	}
	out := make(map[string]catalog.Vendor, len(rows))
	for _, r := range rows {
		out[r.ID] = r.domain()
	}
	return out, nil
}

// SetVendorStripeAccount records the vendor's Stripe Connect account.
func (s *Store) SetVendorStripeAccount(ctx context.Context, vendorID, stripeAccountID string) error {
	return wrap("set stripe account", s.db.WithContext(ctx).Model(&vendorRow{}).Where("id = ?", vendorID).Update("stripe_account_id", stripeAccountID).Error)
}

// CreateFunction creates a function with version 1, unpublished.
func (s *Store) CreateFunction(ctx context.Context, v catalog.Vendor, name, description string, nv catalog.NewVersion) (catalog.Function, error) {
	now := s.clock.Now()
	fr := functionRow{ID: fnmarket.NewID("fn"), VendorID: v.ID, Name: name, Description: description, CreatedAt: now, UpdatedAt: now}
	vr := newVersionRow(fr.ID, 1, nv, now)
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&functionRow{}).Where("vendor_id = ? AND name = ?", v.ID, name).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return &fnmarket.Error{Code: fnmarket.ECONFLICT, Message: "you already have a function with that name", Fields: map[string]string{"name": "is already used by another of your functions"}}
		}
		if err := tx.Create(&fr).Error; err != nil {
			return err
		}
		return tx.Create(&vr).Error
	})
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return catalog.Function{}, &fnmarket.Error{Code: fnmarket.ECONFLICT, Message: "you already have a function with that name", Fields: map[string]string{"name": "is already used by another of your functions"}}
	}
	if err != nil {
		return catalog.Function{}, wrap("create function", err)
	}
	return s.Function(ctx, v, fr.ID)
}

func newVersionRow(functionID string, n int, nv catalog.NewVersion, now time.Time) versionRow {
	return versionRow{FunctionID: functionID, Version: n, Backend: mustJSON(nv.Backend), Pricing: mustJSON(nv.Pricing), TimeoutMs: nv.TimeoutMs, RateLimitPerSecond: nv.RateLimitPerSecond, CreatedAt: now}
}

// Functions lists a vendor's functions, with their versions, newest first.
func (s *Store) Functions(ctx context.Context, v catalog.Vendor) ([]catalog.Function, error) {
	var rows []functionRow
	if err := s.db.WithContext(ctx).Where("vendor_id = ?", v.ID).Order("created_at DESC, id").Find(&rows).Error; err != nil {
		return nil, wrap("list functions", err)
	}
	return s.withVersions(ctx, rows, map[string]catalog.Vendor{v.ID: v})
}

// Function returns one of the vendor's functions; another vendor's function is
// reported as not found, never as forbidden, so ids leak nothing.
func (s *Store) Function(ctx context.Context, v catalog.Vendor, id string) (catalog.Function, error) {
	var r functionRow
	err := s.db.WithContext(ctx).Where("id = ? AND vendor_id = ?", id, v.ID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return catalog.Function{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no function %q among yours", id)
	}
	if err != nil {
		return catalog.Function{}, wrap("find function", err)
	}
	fs, err := s.withVersions(ctx, []functionRow{r}, map[string]catalog.Vendor{v.ID: v})
	if err != nil {
		return catalog.Function{}, err
	}
	return fs[0], nil
}

// FunctionsByID returns functions (with versions and vendor slugs) by id, of
// any vendor; billing and usage reports use it to name what was used.
func (s *Store) FunctionsByID(ctx context.Context, ids []string) (map[string]catalog.Function, error) {
	var rows []functionRow
	if len(ids) > 0 {
		if err := s.db.WithContext(ctx).Where("id IN ?", ids).Find(&rows).Error; err != nil {
			return nil, wrap("list functions", err)
		}
	}
	vids := make([]string, 0, len(rows))
	for _, r := range rows {
		vids = append(vids, r.VendorID)
	}
	vendors, err := s.VendorsByID(ctx, vids)
	if err != nil {
		return nil, err
	}
	fs, err := s.withVersions(ctx, rows, vendors)
	if err != nil {
		return nil, err
	}
	out := make(map[string]catalog.Function, len(fs))
	for _, f := range fs {
		out[f.ID] = f
	}
	return out, nil
}

func (s *Store) withVersions(ctx context.Context, rows []functionRow, vendors map[string]catalog.Vendor) ([]catalog.Function, error) {
	if len(rows) == 0 {
		return []catalog.Function{}, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var vrows []versionRow
	if err := s.db.WithContext(ctx).Where("function_id IN ?", ids).Order("function_id, version").Find(&vrows).Error; err != nil {
		return nil, wrap("list versions", err)
	}
	byFn := map[string][]catalog.Version{}
	for _, vr := range vrows {
		v, err := vr.domain()
		if err != nil {
			return nil, err
		}
		byFn[vr.FunctionID] = append(byFn[vr.FunctionID], v)
	}
	out := make([]catalog.Function, len(rows))
	for i, r := range rows {
		out[i] = catalog.Function{ID: r.ID, VendorID: r.VendorID, VendorSlug: vendors[r.VendorID].Slug, Name: r.Name, Description: r.Description,
			PublishedVersion: r.PublishedVersion, Versions: byFn[r.ID], CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
	}
	return out, nil
}

// UpdateDescription changes a function's description.
func (s *Store) UpdateDescription(ctx context.Context, v catalog.Vendor, id, description string) (catalog.Function, error) {
	res := s.db.WithContext(ctx).Model(&functionRow{}).Where("id = ? AND vendor_id = ?", id, v.ID).
		Updates(map[string]any{"description": description, "updated_at": s.clock.Now()})
	if res.Error != nil {
		return catalog.Function{}, wrap("update function", res.Error)
	}
	if res.RowsAffected == 0 {
		return catalog.Function{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no function %q among yours", id)
	}
	return s.Function(ctx, v, id)
}

// AddVersion appends an immutable version numbered one past the latest.
func (s *Store) AddVersion(ctx context.Context, v catalog.Vendor, id string, nv catalog.NewVersion) (catalog.Version, error) {
	var out versionRow
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var fr functionRow
		// Lock the function row so concurrent version creations number in turn.
		q := tx.Where("id = ? AND vendor_id = ?", id, v.ID)
		if s.db.Dialect == "postgres" {
			q = q.Clauses(clause.Locking{Strength: "UPDATE"})
		}
		if err := q.Take(&fr).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return fnmarket.Errorf(fnmarket.ENOTFOUND, "no function %q among yours", id)
			}
			return err
		}
		var maxV int
		if err := tx.Model(&versionRow{}).Where("function_id = ?", id).Select("COALESCE(MAX(version), 0)").Scan(&maxV).Error; err != nil {
			return err
		}
		now := s.clock.Now()
		out = newVersionRow(id, maxV+1, nv, now)
		if err := tx.Create(&out).Error; err != nil {
			return err
		}
		return tx.Model(&functionRow{}).Where("id = ?", id).Update("updated_at", now).Error
	})
	if err != nil {
		return catalog.Version{}, wrap("add version", err)
	}
	return out.domain()
}

// Publish makes version the one that answers unpinned calls.
func (s *Store) Publish(ctx context.Context, v catalog.Vendor, id string, version int) (catalog.Function, error) {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&functionRow{}).Where("id = ? AND vendor_id = ?", id, v.ID).Count(&n).Error; err != nil {
			return err
		}
		if n == 0 {
			return fnmarket.Errorf(fnmarket.ENOTFOUND, "no function %q among yours", id)
		}
		res := tx.Model(&versionRow{}).Where("function_id = ? AND version = ?", id, version).Update("ever_published", true)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return &fnmarket.Error{Code: fnmarket.EINVALID, Message: fmt.Sprintf("function has no version %d", version), Fields: map[string]string{"version": "no such version"}}
		}
		return tx.Model(&functionRow{}).Where("id = ?", id).Updates(map[string]any{"published_version": version, "updated_at": s.clock.Now()}).Error
	})
	if err != nil {
		return catalog.Function{}, wrap("publish", err)
	}
	return s.Function(ctx, v, id)
}

// Unpublish takes the function off the catalog; calls then get 404.
func (s *Store) Unpublish(ctx context.Context, v catalog.Vendor, id string) (catalog.Function, error) {
	res := s.db.WithContext(ctx).Model(&functionRow{}).Where("id = ? AND vendor_id = ?", id, v.ID).
		Updates(map[string]any{"published_version": nil, "updated_at": s.clock.Now()})
	if res.Error != nil {
		return catalog.Function{}, wrap("unpublish", res.Error)
	}
	if res.RowsAffected == 0 {
		return catalog.Function{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no function %q among yours", id)
	}
	return s.Function(ctx, v, id)
}

// Search lists published functions whose vendor, name or description contains
// q (case-insensitive), ordered by vendor and name, after the cursor
// ("vendor/name") and at most limit of them.
func (s *Store) Search(ctx context.Context, q, after string, limit int) ([]catalog.Listing, error) {
	type row struct {
		ID, VendorID, Name, Description string
		PublishedVersion                *int
		CreatedAt, UpdatedAt            time.Time
		Slug, DisplayName               string
	}
	var rows []row
	tx := s.db.WithContext(ctx).Table("functions").
		Select("functions.id AS id, functions.vendor_id AS vendor_id, functions.name AS name, functions.description AS description, " +
			"functions.published_version AS published_version, functions.created_at AS created_at, functions.updated_at AS updated_at, " +
			"vendors.slug AS slug, vendors.display_name AS display_name").
		Joins("JOIN vendors ON vendors.id = functions.vendor_id").
		Where("functions.published_version IS NOT NULL")
	if q != "" {
		like := "%" + escapeLike(q) + "%"
		tx = tx.Where("(LOWER(functions.name) LIKE LOWER(?) ESCAPE '\\' OR LOWER(functions.description) LIKE LOWER(?) ESCAPE '\\' OR LOWER(vendors.slug) LIKE LOWER(?) ESCAPE '\\' OR LOWER(vendors.display_name) LIKE LOWER(?) ESCAPE '\\')", like, like, like, like)
	}
	if after != "" {
		tx = tx.Where("(vendors.slug || '/' || functions.name) > ?", after)
	}
	if err := tx.Order("vendors.slug, functions.name").Limit(limit).Scan(&rows).Error; err != nil {
		return nil, wrap("search catalog", err)
	}
	frs := make([]functionRow, len(rows))
	vendors := map[string]catalog.Vendor{}
	for i, r := range rows {
		frs[i] = functionRow{ID: r.ID, VendorID: r.VendorID, Name: r.Name, Description: r.Description, PublishedVersion: r.PublishedVersion, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
		vendors[r.VendorID] = catalog.Vendor{ID: r.VendorID, Slug: r.Slug, DisplayName: r.DisplayName}
	}
	fs, err := s.withVersions(ctx, frs, vendors)
	if err != nil {
		return nil, err
	}
	out := make([]catalog.Listing, 0, len(fs))
	for _, f := range fs {
		l := catalog.Listing{Function: f, VendorName: vendors[f.VendorID].DisplayName}
		for _, ver := range f.Versions {
			if f.PublishedVersion != nil && ver.Version == *f.PublishedVersion {
				l.Published = ver
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// Listing returns one published function by vendor slug and name.
func (s *Store) Listing(ctx context.Context, vendorSlug, name string) (catalog.Listing, error) {
	var vr vendorRow
	if err := s.db.WithContext(ctx).Where("slug = ?", vendorSlug).Take(&vr).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return catalog.Listing{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no published function %s/%s", vendorSlug, name)
		}
		return catalog.Listing{}, wrap("find vendor", err)
	}
	var fr functionRow
	err := s.db.WithContext(ctx).Where("vendor_id = ? AND name = ? AND published_version IS NOT NULL", vr.ID, name).Take(&fr).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return catalog.Listing{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "no published function %s/%s", vendorSlug, name)
	}
	if err != nil {
		return catalog.Listing{}, wrap("find function", err)
	}
	v := vr.domain()
	fs, err := s.withVersions(ctx, []functionRow{fr}, map[string]catalog.Vendor{v.ID: v})
	if err != nil {
		return catalog.Listing{}, err
	}
	l := catalog.Listing{Function: fs[0], VendorName: v.DisplayName}
	for _, ver := range l.Versions {
		if ver.Version == *fr.PublishedVersion {
			l.Published = ver
		}
	}
	return l, nil
}

// Route finds what answers a call to vendor/name, at version or (0) the
// published one. A pinned version must have been published at some point.
func (s *Store) Route(ctx context.Context, vendorSlug, name string, version int) (catalog.Route, error) {
	notFound := fnmarket.Errorf(fnmarket.ENOTFOUND, "no published function %s/%s", vendorSlug, name)
	type row struct {
		FunctionID       string
		VendorID         string
		PublishedVersion *int
	}
	var r row
	err := s.db.WithContext(ctx).Table("functions").
		Select("functions.id AS function_id, functions.vendor_id AS vendor_id, functions.published_version AS published_version").
		Joins("JOIN vendors ON vendors.id = functions.vendor_id").
		Where("vendors.slug = ? AND functions.name = ?", vendorSlug, name).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return catalog.Route{}, notFound
	}
	if err != nil {
		return catalog.Route{}, wrap("route", err)
	}
	// An unpublished function answers nothing, pinned or not.
	if r.PublishedVersion == nil {
		return catalog.Route{}, notFound
	}
	if version == 0 {
		version = *r.PublishedVersion
	}
	var vr versionRow
	err = s.db.WithContext(ctx).Where("function_id = ? AND version = ? AND ever_published = ?", r.FunctionID, version, true).Take(&vr).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return catalog.Route{}, fnmarket.Errorf(fnmarket.ENOTFOUND, "function %s/%s has no published version %d", vendorSlug, name, version)
	}
	if err != nil {
		return catalog.Route{}, wrap("route version", err)
	}
	v, err := vr.domain()
	if err != nil {
		return catalog.Route{}, err
	}
	return catalog.Route{VendorSlug: vendorSlug, VendorID: r.VendorID, Function: name, FunctionID: r.FunctionID, Version: v}, nil
}

// FunctionsChangedSince lists functions changed at or after since (published,
// unpublished, new versions), so gateways can drop cached routes.
func (s *Store) FunctionsChangedSince(ctx context.Context, since time.Time) ([]catalog.FunctionRef, error) {
	var out []catalog.FunctionRef
	err := s.db.WithContext(ctx).Table("functions").
		Select("vendors.slug AS vendor_slug, functions.name AS name").
		Joins("JOIN vendors ON vendors.id = functions.vendor_id").
		Where("functions.updated_at >= ?", since.UTC()).Scan(&out).Error
	return out, wrap("functions changed", err)
}

func escapeLike(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '%' || r == '_' || r == '\\' {
			out = append(out, '\\')
		}
		out = append(out, r)
	}
	return string(out)
}

// wrap adds what was being done to err (see fnmarket.Wrap).
func wrap(what string, err error) error { return fnmarket.Wrap(what, err) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
