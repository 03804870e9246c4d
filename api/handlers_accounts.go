package api

import (
	"context"
	"net/http"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/audit"
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
	validateNewPassword(v, "password", r.Password, r.Email)
	validateText(v, "name", r.Name, 1, 100)
	return v.Err()
}

func validateNewPassword(v fnmarket.Validation, field, password, email string) {
	switch {
	case utf8.RuneCountInString(password) < 10:
		v.Add(field, "must be at least 10 characters")
	case len(password) > 72:
		v.Add(field, "must be at most 72 bytes")
	case commonPasswords[strings.ToLower(password)] || allSame(password):
		v.Add(field, "is too easy to guess")
	case strings.EqualFold(password, email):
		v.Add(field, "must not be your email")
	}
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
	tok, ses, err := s.sessions.Issue(a.ID, a.CredentialStamp)
	if err != nil {
		return err
	}
	view, err := s.accountView(c.Request().Context(), a)
	if err != nil {
		return err
	}
	s.setSessionCookies(c, tok, ses.ID, ses.ExpiresAt)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(status, sessionJSON{Token: tok, ExpiresAt: rfc3339(ses.ExpiresAt), Account: view})
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
		if err := s.takeAuthRate(c); err != nil {
			return err
		}
		var a accounts.Account
		err := s.hashing(c, func() (err error) {
			a, err = s.Accounts.SignUp(c.Request().Context(), req.Email, req.Name, req.Password)
			return err
		})
		if err != nil {
			return err
		}
		s.log.InfoContext(c.Request().Context(), "account created", "account", a.ID)
		s.audit(c, a.ID, audit.ActionSignup, a.Email, "")
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
		if err := s.takeAuthRate(c); err != nil {
			return err
		}
		email, client := accounts.NormalizeEmail(req.Email), clientAddress(c)
		if err := s.beginPasswordAttempt(c, email, client); err != nil {
			return err
		}
		var a accounts.Account
		err := s.hashing(c, func() (err error) {
			a, err = s.Accounts.Authenticate(ctx, req.Email, req.Password)
			return err
		})
		if !wrongPassword(err) {
			s.releasePasswordAttempt(c, email, client)
		}
		if fnmarket.ErrorCode(err) == fnmarket.EUNAUTHORIZED && s.Audit != nil {
			if aerr := s.Audit.RecordFailedLogin(ctx, email, c.RealIP()); aerr != nil {
				s.log.ErrorContext(ctx, "audit failed login", "err", aerr)
			}
		}
		if err != nil {
			return err
		}
		s.audit(c, a.ID, audit.ActionLogin, a.Email, "")
		return s.startSession(c, http.StatusOK, a)
	}
}

// beginPasswordAttempt reserves a password check for the account (a
// normalised email) from client before the password is checked, so
// concurrent guesses cannot all slip past the limit: 429 once the pair is
// locked; a wait first when the account is under attack from many addresses.
func (s *Server) beginPasswordAttempt(c echo.Context, email, client string) error {
	if s.LoginThrottle == nil {
		return nil
	}
	ctx := c.Request().Context()
	allowed, wait, attempts, err := s.LoginThrottle.Begin(ctx, email, client)
	if err != nil {
		return s.unavailable(c, "login throttle unavailable", err)
	}
	if !allowed {
		setRetryAfter(c, wait)
		return fnmarket.Errorf(fnmarket.ERATELIMITED, "too many wrong passwords for this account from your address; try again later")
	}
	return s.slowDown(ctx, attempts)
}

// wrongPassword says whether err is a wrong password (at login, or as the
// current password of a change): only those keep their reserved attempt.
func wrongPassword(err error) bool {
	switch fnmarket.ErrorCode(err) {
	case fnmarket.EUNAUTHORIZED:
		return true
	case fnmarket.EINVALID:
		_, ok := fnmarket.ErrorFields(err)["current_password"]
		return ok
	}
	return false
}

// releasePasswordAttempt gives the reserved attempt back: the password was
// right, or it was never checked (no hashing slot, a store error).
func (s *Server) releasePasswordAttempt(c echo.Context, email, client string) {
	if s.LoginThrottle == nil {
		return
	}
	if err := s.LoginThrottle.Release(c.Request().Context(), email, client); err != nil {
		s.log.WarnContext(c.Request().Context(), "login throttle unavailable", "err", err)
	}
}

// handleLogout ends the session the request carries, on every replica, and
// clears the browser's cookies. Without a valid session there is nothing to
// end, and the answer is the same 204.
func (s *Server) handleLogout() echo.HandlerFunc {
	return func(c echo.Context) error {
		ses, err := s.authenticate(c)
		switch fnmarket.ErrorCode(err) {
		case "":
			if err := s.revokeSession(c.Request().Context(), ses); err != nil {
				return fnmarket.Wrap("revoke session", err)
			}
		case fnmarket.EUNAUTHORIZED:
		default:
			// A wrong CSRF token must not end someone's session.
			return err
		}
		s.clearSessionCookies(c)
		return c.NoContent(http.StatusNoContent)
	}
}

type passwordChangeRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// handleChangePassword replaces the password. Every session issued before
// (on every replica, since each request checks the account's credential)
// ends; the answer carries a new session like login's.
func (s *Server) handleChangePassword() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req passwordChangeRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		ctx := c.Request().Context()
		a, err := s.Accounts.Account(ctx, accountID(c))
		if err != nil {
			return err
		}
		v := fnmarket.Validation{}
		if req.CurrentPassword == "" {
			v.Add("current_password", "is required")
		}
		validateNewPassword(v, "new_password", req.NewPassword, a.Email)
		if req.NewPassword != "" && req.NewPassword == req.CurrentPassword {
			v.Add("new_password", "must differ from the current password")
		}
		if err := v.Err(); err != nil {
			return err
		}
		// A wrong current password is a guess like a wrong login, and is
		// throttled the same way.
		client := clientAddress(c)
		email := a.Email
		if err := s.beginPasswordAttempt(c, email, client); err != nil {
			return err
		}
		err = s.hashing(c, func() (err error) {
			a, err = s.Accounts.ChangePassword(ctx, a.ID, req.CurrentPassword, req.NewPassword)
			return err
		})
		if !wrongPassword(err) {
			s.releasePasswordAttempt(c, email, client)
		}
		if err != nil {
			return err
		}
		if err := s.revokeSession(ctx, currentSession(c)); err != nil {
			s.log.WarnContext(ctx, "revoke session after password change", "err", err)
		}
		s.log.InfoContext(ctx, "password changed", "account", a.ID)
		return s.startSession(c, http.StatusOK, a)
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
