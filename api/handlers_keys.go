package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/catalog"
)

type createKeyRequest struct {
	Name            string  `json:"name"`
	MonthlySpendCap *string `json:"monthly_spend_cap"`
	AlertThresholds []int   `json:"alert_thresholds"`
}

func (r *createKeyRequest) validate() (*decimal.Decimal, error) {
	v := fnmarket.Validation{}
	validateText(v, "name", r.Name, 1, 100)
	var capd *decimal.Decimal
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
		capd = &d
	}
	checkThresholds(v, r.AlertThresholds)
	return capd, v.Err()
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
	// SpendThisMonth is what the key spent this UTC month, per currency,
	// exact; only in lists, and only when the server can tell (KeySpends).
	// A pointer, so an empty map still shows as {}.
	SpendThisMonth *map[string]string `json:"spend_this_month,omitempty"`
}

func toKeyJSON(k accounts.APIKey) keyJSON {
	out := keyJSON{ID: k.ID, Name: k.Name, Prefix: k.Prefix, Key: k.Secret, CreatedAt: rfc3339(k.CreatedAt),
		LastUsedAt: rfc3339Ptr(k.LastUsedAt), RevokedAt: rfc3339Ptr(k.RevokedAt), AlertThresholds: k.AlertThresholds}
	if out.AlertThresholds == nil {
		out.AlertThresholds = slices.Clone(accounts.DefaultAlertThresholds)
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
		capd, err := req.validate()
		if err != nil {
			return err
		}
		k, err := s.Accounts.CreateKeyAlerting(c.Request().Context(), accountID(c), strings.TrimSpace(req.Name), capd, req.AlertThresholds)
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

func (s *Server) handleRevokeKey() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.Accounts.RevokeKey(c.Request().Context(), accountID(c), c.Param("id")); err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionKeyRevoke, c.Param("id"), "")
		return c.NoContent(http.StatusNoContent)
	}
}
