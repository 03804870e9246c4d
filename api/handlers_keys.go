package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/catalog"
)

type createKeyRequest struct {
	Name               string   `json:"name"`
	MonthlySpendCap    *string  `json:"monthly_spend_cap"`
	ExpiresAt          *string  `json:"expires_at"`
	AllowedFunctions   []string `json:"allowed_functions"`
	RateLimitPerSecond *int     `json:"rate_limit_per_second"`
	AlertThresholds    []int    `json:"alert_thresholds"`
}

// MaxAllowedFunctions bounds a key's allowed_functions.
const MaxAllowedFunctions = 50

// validate checks the request and returns the key to make. Every function
// in allowed_functions must be in the catalog (published), so a typo is
// caught here, not by a 403 at call time.
//
// An edit validates only what it changes: without name set, the name is
// not checked (it stays as it is).
func (s *Server) validateKey(ctx context.Context, r *createKeyRequest, name bool) (accounts.NewKey, error) {
	v := fnmarket.Validation{}
	if name {
		validateText(v, "name", r.Name, 1, 100)
	}
	nk := accounts.NewKey{Name: strings.TrimSpace(r.Name), AllowedFunctions: []string{}}
	if r.MonthlySpendCap != nil {
		d := catalog.ParseAmount(v, "monthly_spend_cap", *r.MonthlySpendCap, decimal.NewFromInt(1_000_000_000))
		if _, bad := v["monthly_spend_cap"]; !bad {
			switch {
			case d.IsZero():
				v.Add("monthly_spend_cap", "must be above zero (leave it out for no cap)")
			case -d.Exponent() > 6:
				v.Add("monthly_spend_cap", "may have at most 6 decimal places")
			}
		}
		nk.MonthlySpendCap = &d
	}
	if r.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339, *r.ExpiresAt)
		switch {
		case err != nil:
			v.Add("expires_at", "must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
		case !t.After(s.Clock.Now()):
			v.Add("expires_at", "must be in the future")
		default:
			t = t.UTC()
			nk.ExpiresAt = &t
		}
	}
	if r.RateLimitPerSecond != nil {
		n, def := *r.RateLimitPerSecond, s.DefaultKeyRateLimit
		switch {
		case n < 0:
			v.Add("rate_limit_per_second", "must be 0 (the platform default) or more")
		case def > 0 && n > def:
			v.Add("rate_limit_per_second", fmt.Sprintf("must be at most the platform default of %d", def))
		case n > 1_000_000:
			v.Add("rate_limit_per_second", "must be at most 1000000")
		default:
			nk.RateLimitPerSecond = n
		}
	}
	if len(r.AllowedFunctions) > MaxAllowedFunctions {
		v.Add("allowed_functions", fmt.Sprintf("may name at most %d functions", MaxAllowedFunctions))
	} else {
		seen := map[string]bool{}
		for _, f := range r.AllowedFunctions {
			vendor, name, ok := strings.Cut(strings.TrimSpace(f), "/")
			if !ok || vendor == "" || name == "" || strings.Contains(name, "/") {
				v.Add("allowed_functions", fmt.Sprintf("%q is not vendor/name", f))
				break
			}
			l, err := s.Catalog.Listing(ctx, vendor, name)
			if fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND {
				v.Add("allowed_functions", fmt.Sprintf("no published function %s/%s", vendor, name))
				break
			} else if err != nil {
				return accounts.NewKey{}, err
			}
			// Stored as the catalog spells it, which is what the gateway
			// compares with.
			ref := l.VendorSlug + "/" + l.Name
			if !seen[ref] {
				seen[ref] = true
				nk.AllowedFunctions = append(nk.AllowedFunctions, ref)
			}
		}
	}
	checkThresholds(v, r.AlertThresholds)
	nk.AlertThresholds = r.AlertThresholds
	return nk, v.Err()
}

// keyJSON is a key as lists show it: never the secret.
type keyJSON struct {
	ID              string  `json:"id"`
	Name            string  `json:"name"`
	Prefix          string  `json:"prefix"`
	Key             string  `json:"key,omitempty"`
	MonthlySpendCap *string `json:"monthly_spend_cap"`
	CreatedAt       string  `json:"created_at"`
	LastUsedAt      *string `json:"last_used_at"`
	RevokedAt       *string `json:"revoked_at"`
	AlertThresholds []int   `json:"alert_thresholds"`
	ExpiresAt       *string `json:"expires_at"`
	// AllowedFunctions: [] means every function.
	AllowedFunctions []string `json:"allowed_functions"`
	// RateLimitPerSecond: 0 means the platform default.
	RateLimitPerSecond int `json:"rate_limit_per_second"`
	// PreviousExpiresAt is when the secret the last rotation replaced
	// stops (or stopped) working; null if never rotated, or revoked.
	PreviousExpiresAt *string `json:"previous_expires_at"`
	// SpendThisMonth is what the key spent this UTC month, per currency,
	// exact; only in lists, and only when the server can tell (KeySpends).
	// A pointer, so an empty map still shows as {}.
	SpendThisMonth *map[string]string `json:"spend_this_month,omitempty"`
}

func toKeyJSON(k accounts.APIKey) keyJSON {
	out := keyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Key: k.Secret, CreatedAt: rfc3339(k.CreatedAt),
		LastUsedAt: rfc3339Ptr(k.LastUsedAt), RevokedAt: rfc3339Ptr(k.RevokedAt), ExpiresAt: rfc3339Ptr(k.ExpiresAt),
		AllowedFunctions: k.AllowedFunctions, RateLimitPerSecond: k.RateLimitPerSecond, AlertThresholds: k.AlertThresholds}
	if out.AlertThresholds == nil {
		out.AlertThresholds = slices.Clone(accounts.DefaultAlertThresholds)
	}
	if out.AllowedFunctions == nil {
		out.AllowedFunctions = []string{}
	}
	if k.PreviousExpiresAt != nil && k.RevokedAt == nil {
		out.PreviousExpiresAt = rfc3339Ptr(k.PreviousExpiresAt)
	}
	if k.MonthlySpendCap != nil {
		s := k.MonthlySpendCap.StringFixed(max(2, -k.MonthlySpendCap.Exponent()))
		out.MonthlySpendCap = &s
	}
	return out
}

func (s *Server) handleCreateKey() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req createKeyRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		nk, err := s.validateKey(c.Request().Context(), &req, true)
		if err != nil {
			return err
		}
		k, err := s.Accounts.CreateKeyWith(c.Request().Context(), accountID(c), nk)
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionKeyCreate, k.ID, k.Name)
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusCreated, toKeyJSON(k))
	}
}

func (s *Server) handleListKeys() echo.HandlerFunc {
	return func(c echo.Context) error {
		ks, err := s.Accounts.Keys(c.Request().Context(), accountID(c))
		if err != nil {
			return err
		}
		var spends map[string]map[string]decimal.Decimal
		if src := s.keySpends(); src != nil {
			if spends, err = src.KeySpendThisMonth(c.Request().Context(), accountID(c), s.Clock.Now()); err != nil {
				return err
			}
		}
		out := list[keyJSON]{Items: []keyJSON{}}
		for _, k := range ks {
			j := toKeyJSON(k)
			if spends != nil {
				m := map[string]string{}
				for cur, d := range spends[k.ID] {
					m[cur] = d.String()
				}
				j.SpendThisMonth = &m
			}
			out.Items = append(out.Items, j)
		}
		return c.JSON(http.StatusOK, out)
	}
}

// updateKeyRequest is a merge patch of a key's settings: a member that is
// present is set, null clears it (no cap, never expires, every function,
// the platform's rate limit, the default alert thresholds); an absent one
// stays as it is.
type updateKeyRequest struct {
	Name               jsontext.Value `json:"name"`
	MonthlySpendCap    jsontext.Value `json:"monthly_spend_cap"`
	ExpiresAt          jsontext.Value `json:"expires_at"`
	AllowedFunctions   jsontext.Value `json:"allowed_functions"`
	RateLimitPerSecond jsontext.Value `json:"rate_limit_per_second"`
	AlertThresholds    jsontext.Value `json:"alert_thresholds"`
}

// handleUpdateKey changes a key's settings, validated as at creation; a
// bad request changes nothing. The secret and the month's spend stay.
func (s *Server) handleUpdateKey() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req updateKeyRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		var cr createKeyRequest
		var changed []string
		member := func(name string, raw jsontext.Value, dst any) {
			if len(raw) == 0 {
				return
			}
			changed = append(changed, name)
			if raw.Kind() == 'n' {
				return // null: cleared
			}
			if err := jsonv2.Unmarshal(raw, dst); err != nil {
				v.Add(name, "has the wrong type")
			}
		}
		member("name", req.Name, &cr.Name)
		member("monthly_spend_cap", req.MonthlySpendCap, &cr.MonthlySpendCap)
		member("expires_at", req.ExpiresAt, &cr.ExpiresAt)
		member("allowed_functions", req.AllowedFunctions, &cr.AllowedFunctions)
		member("rate_limit_per_second", req.RateLimitPerSecond, &cr.RateLimitPerSecond)
		member("alert_thresholds", req.AlertThresholds, &cr.AlertThresholds)
		switch {
		case len(changed) == 0:
			v.Add("body", "names nothing to change")
		case len(req.Name) > 0 && req.Name.Kind() == 'n':
			v.Add("name", "cannot be null")
		}
		if err := v.Err(); err != nil {
			return err
		}
		nk, err := s.validateKey(c.Request().Context(), &cr, len(req.Name) > 0)
		if err != nil {
			return err
		}
		k, err := s.Accounts.UpdateKey(c.Request().Context(), accountID(c), c.Param("id"), func(cur *accounts.NewKey) {
			for _, name := range changed {
				switch name {
				case "name":
					cur.Name = nk.Name
				case "monthly_spend_cap":
					cur.MonthlySpendCap = nk.MonthlySpendCap
				case "expires_at":
					cur.ExpiresAt = nk.ExpiresAt
				case "allowed_functions":
					cur.AllowedFunctions = nk.AllowedFunctions
				case "rate_limit_per_second":
					cur.RateLimitPerSecond = nk.RateLimitPerSecond
				case "alert_thresholds":
					cur.AlertThresholds = nk.AlertThresholds
				}
			}
		})
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionKeyUpdate, k.ID, strings.Join(changed, ","))
		return c.JSON(http.StatusOK, toKeyJSON(k))
	}
}

func (s *Server) handleRevokeKey() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.Accounts.RevokeKey(c.Request().Context(), accountID(c), c.Param("id")); err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionKeyRevoke, c.Param("id"), "")
		return c.NoContent(http.StatusNoContent)
	}
}

type rotateKeyRequest struct {
	// GraceSeconds is how long the old secret keeps working: 0 (ends it
	// now) to 30 days; required.
	GraceSeconds *int64 `json:"grace_seconds"`
}

func (s *Server) handleRotateKey() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req rotateKeyRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		maxGrace := int64(accounts.MaxGrace / time.Second)
		switch {
		case req.GraceSeconds == nil:
			return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "say how long the old key keeps working",
				Fields: map[string]string{"grace_seconds": "is required (0 ends the old key now)"}}
		case *req.GraceSeconds < 0 || *req.GraceSeconds > maxGrace:
			return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the grace is out of range",
				Fields: map[string]string{"grace_seconds": fmt.Sprintf("must be 0 to %d (30 days)", maxGrace)}}
		}
		k, err := s.Accounts.RotateKey(c.Request().Context(), accountID(c), c.Param("id"), time.Duration(*req.GraceSeconds)*time.Second)
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionKeyRotate, k.ID, k.Name)
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusCreated, toKeyJSON(k))
	}
}
