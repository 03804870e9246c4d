package api

import (
	"context"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/catalog"
)

func (s *Server) handleHealth() echo.HandlerFunc {
	return func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	}
}

// accountJSON is an account as the API shows it.
type accountJSON struct {
	ID        string      `json:"id"`
	Email     string      `json:"email"`
	Name      string      `json:"name"`
	Vendor    *vendorJSON `json:"vendor"`
	CreatedAt string      `json:"created_at"`
}

type vendorJSON struct {
	Slug        string `json:"slug"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
	// Payouts is "unavailable" (Stripe not configured on this server),
	// "not_connected" or "connected" (a Stripe Connect account exists).
	Payouts string `json:"payouts"`
}

func (s *Server) toVendorJSON(v catalog.Vendor) *vendorJSON {
	p := "unavailable"
	if s.StripeEnabled {
		p = "not_connected"
		if v.StripeAccountID != "" {
			p = "connected"
		}
	}
	return &vendorJSON{Slug: v.Slug, DisplayName: v.DisplayName, CreatedAt: rfc3339(v.CreatedAt), Payouts: p}
}

func (s *Server) accountView(ctx context.Context, a accounts.Account) (accountJSON, error) {
	out := accountJSON{ID: a.ID, Email: a.Email, Name: a.Name, CreatedAt: rfc3339(a.CreatedAt)}
	v, err := s.Catalog.VendorByAccount(ctx, a.ID)
	switch fnmarket.ErrorCode(err) {
	case "":
		out.Vendor = s.toVendorJSON(v)
	case fnmarket.ENOTFOUND:
	default:
		return out, err
	}
	return out, nil
}

type signupRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

var commonPasswords = map[string]bool{"password": true, "password1": true, "password123": true, "1234567890": true, "12345678910": true,
	"qwertyuiop": true, "iloveyou12": true, "letmein123": true, "0123456789": true, "passw0rd123": true, "administrator": true}

func (r *signupRequest) validate() error {
	v := fnmarket.Validation{}
	validateEmail(v, r.Email)
	switch {
	case utf8.RuneCountInString(r.Password) < 10:
		v.Add("password", "must be at least 10 characters")
	case len(r.Password) > 72:
		v.Add("password", "must be at most 72 bytes")
	case commonPasswords[strings.ToLower(r.Password)] || allSame(r.Password):
		v.Add("password", "is too easy to guess")
	case strings.EqualFold(r.Password, r.Email):
		v.Add("password", "must not be your email")
	}
	validateText(v, "name", r.Name, 1, 100)
	return v.Err()
}

func allSame(s string) bool {
	for i := 1; i < len(s); i++ {
		if s[i] != s[0] {
			return false
		}
	}
	return true
}

func validateEmail(v fnmarket.Validation, email string) {
	e := strings.TrimSpace(email)
	if e == "" {
		v.Add("email", "is required")
		return
	}
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || len(e) > 254 || !strings.Contains(e[strings.LastIndex(e, "@"):], ".") {
		v.Add("email", "must be an email address such as ada@example.com")
	}
}

// validateText checks a one-line text field: min to max characters, no
// control or bidirectional formatting characters.
func validateText(v fnmarket.Validation, field, s string, min, max int) {
	validateChars(v, field, s, false)
	validateLength(v, field, s, min, max)
}

func validateLength(v fnmarket.Validation, field, s string, min, max int) {
	n := utf8.RuneCountInString(strings.TrimSpace(s))
	switch {
	case n < min && min == 1:
		v.Add(field, "is required")
	case n < min:
		v.Add(field, "is too short")
	case n > max:
		v.Add(field, "must be at most "+itoa(max)+" characters")
	}
}

// validateDescription checks a function's Markdown description: up to 10000
// characters, lines allowed, no other control or bidirectional characters.
func validateDescription(v fnmarket.Validation, s string) {
	validateChars(v, "description", s, true)
	validateLength(v, "description", s, 0, 10_000)
}

// validateChars refuses text that would hide or disguise what it shows:
// invalid UTF-8, NUL and other control characters (line breaks and tabs only
// when multiline), and bidirectional overrides, embeddings, isolates and marks.
func validateChars(v fnmarket.Validation, field, s string, multiline bool) {
	if !utf8.ValidString(s) {
		v.Add(field, "must be valid UTF-8")
		return
	}
	for _, r := range s {
		switch {
		case multiline && (r == '\n' || r == '\r' || r == '\t'):
		case unicode.IsControl(r):
			v.Add(field, "must not contain control characters")
			return
		case isBidiControl(r):
			v.Add(field, "must not contain bidirectional control characters")
			return
		}
	}
}

func isBidiControl(r rune) bool {
	switch {
	case r == '\u061C', r == '\u200E', r == '\u200F':
		return true
	case r >= '\u202A' && r <= '\u202E', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

type sessionJSON struct {
	Token     string      `json:"token"`
	ExpiresAt string      `json:"expires_at"`
	Account   accountJSON `json:"account"`
}

func (s *Server) startSession(c echo.Context, status int, a accounts.Account) error {
	tok, exp, err := s.sessions.Issue(a.ID)
	if err != nil {
		return err
	}
	view, err := s.accountView(c.Request().Context(), a)
	if err != nil {
		return err
	}
	s.setSessionCookies(c, tok, exp)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, sessionJSON{Token: tok, ExpiresAt: rfc3339(exp), Account: view})
}

func (s *Server) handleSignup() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req signupRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		if err := req.validate(); err != nil {
			return err
		}
		a, err := s.Accounts.SignUp(c.Request().Context(), req.Email, req.Name, req.Password)
		if err != nil {
			return err
		}
		s.log.InfoContext(c.Request().Context(), "account created", "account", a.ID)
		return s.startSession(c, http.StatusCreated, a)
	}
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Server) handleLogin() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req loginRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		if strings.TrimSpace(req.Email) == "" {
			v.Add("email", "is required")
		}
		if req.Password == "" {
			v.Add("password", "is required")
		}
		if err := v.Err(); err != nil {
			return err
		}
		ctx := c.Request().Context()
		throttleKey := accounts.NormalizeEmail(req.Email)
		if s.LoginThrottle != nil {
			blocked, wait, err := s.LoginThrottle.Blocked(ctx, throttleKey)
			if err != nil {
				s.log.WarnContext(ctx, "login throttle unavailable", "err", err)
			} else if blocked {
				c.Response().Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
				return fnmarket.Errorf(fnmarket.ERATELIMITED, "too many failed logins for this account; try again later")
			}
		}
		a, err := s.Accounts.Authenticate(ctx, req.Email, req.Password)
		if fnmarket.ErrorCode(err) == fnmarket.EUNAUTHORIZED && s.LoginThrottle != nil {
			if ferr := s.LoginThrottle.Fail(ctx, throttleKey); ferr != nil {
				s.log.WarnContext(ctx, "login throttle unavailable", "err", ferr)
			}
		}
		if err != nil {
			return err
		}
		if s.LoginThrottle != nil {
			_ = s.LoginThrottle.Reset(ctx, throttleKey)
		}
		return s.startSession(c, http.StatusOK, a)
	}
}

func (s *Server) handleLogout() echo.HandlerFunc {
	return func(c echo.Context) error {
		s.clearSessionCookies(c)
		return c.NoContent(http.StatusNoContent)
	}
}

func (s *Server) handleMe() echo.HandlerFunc {
	return func(c echo.Context) error {
		a, err := s.Accounts.Account(c.Request().Context(), accountID(c))
		if fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND {
			return fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "the session's account no longer exists")
		}
		if err != nil {
			return err
		}
		view, err := s.accountView(c.Request().Context(), a)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, view)
	}
}

type vendorRequest struct {
	Slug        string `json:"slug"`
	DisplayName string `json:"display_name"`
}

func (s *Server) handleBecomeVendor() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req vendorRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		catalog.ValidateName(v, "slug", req.Slug, catalog.MinSlugLen, catalog.MaxSlugLen)
		validateText(v, "display_name", req.DisplayName, 1, 100)
		if err := v.Err(); err != nil {
			return err
		}
		ven, err := s.Catalog.CreateVendor(c.Request().Context(), accountID(c), req.Slug, strings.TrimSpace(req.DisplayName))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, s.toVendorJSON(ven))
	}
}
