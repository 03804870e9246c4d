package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
)

// Sessions signs and checks session tokens: HS256 only, with an issuer and
// an expiry that are always checked.
type Sessions struct {
	secret []byte
	ttl    time.Duration
	clock  fnmarket.Clock
}

// SessionIssuer is the iss claim of every session token.
const SessionIssuer = "fnmarket"

// NewSessions returns a session signer. The secret must be at least 32 bytes.
func NewSessions(secret []byte, ttl time.Duration, clock fnmarket.Clock) *Sessions {
	if clock == nil {
		clock = fnmarket.SystemClock{}
	}
	return &Sessions{secret: secret, ttl: ttl, clock: clock}
}

// Session is what a verified session token says.
type Session struct {
	AccountID string
	// ID is the token's jti: logout revokes it, the CSRF token is bound to it.
	ID        string
	ExpiresAt time.Time
	// credential is the keyed digest of the account's credential stamp when
	// the token was issued.
	credential string
}

type sessionClaims struct {
	jwt.RegisteredClaims
	// Credential binds the token to the password it was issued under.
	Credential string `json:"cst"`
}

// Issue returns a signed token for the account; credentialStamp is the
// account's accounts.Account.CredentialStamp.
func (s *Sessions) Issue(accountID, credentialStamp string) (string, Session, error) {
	now := s.clock.Now()
	exp := now.Add(s.ttl)
	ses := Session{AccountID: accountID, ID: fnmarket.NewID("ses"), ExpiresAt: exp, credential: s.mac("credential", credentialStamp)}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, sessionClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   accountID,
			Issuer:    SessionIssuer,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        ses.ID,
		},
		Credential: ses.credential,
	})
	signed, err := tok.SignedString(s.secret)
	return signed, ses, err
}

// Verify checks a token's signature, issuer and expiry. Any algorithm but
// HS256 (including "none") is refused. Whether the session was revoked or
// its account is gone is the caller's to check.
func (s *Sessions) Verify(token string) (Session, error) {
	var claims sessionClaims
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(SessionIssuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(s.clock.Now),
	)
	_, err := p.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return s.secret, nil })
	if err != nil {
		msg := "invalid session token"
		if errors.Is(err, jwt.ErrTokenExpired) {
			msg = "session expired; log in again"
		}
		return Session{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "%s", msg)
	}
	if claims.Subject == "" || claims.ID == "" {
		return Session{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "invalid session token")
	}
	return Session{AccountID: claims.Subject, ID: claims.ID, ExpiresAt: claims.ExpiresAt.Time, credential: claims.Credential}, nil
}

// CSRFToken is the CSRF token of a session: a keyed digest of its id, so a
// token planted in a cookie by someone else never matches the victim's
// session.
func (s *Sessions) CSRFToken(sessionID string) string { return s.mac("csrf", sessionID) }

// issuedUnder says whether the session was issued under credentialStamp.
func (s *Sessions) issuedUnder(ses Session, credentialStamp string) bool {
	return hmac.Equal([]byte(ses.credential), []byte(s.mac("credential", credentialStamp)))
}

func (s *Sessions) mac(purpose, value string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("fnmarket " + purpose + "\x00" + value))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// SessionRevocations remembers revoked session ids until the tokens would
// have expired anyway, shared by every replica (Redis in production).
type SessionRevocations interface {
	Revoke(ctx context.Context, sessionID string, ttl time.Duration) error
	Revoked(ctx context.Context, sessionID string) (bool, error)
}

// memoryRevocations serves a single process when no shared store is given.
type memoryRevocations struct {
	mu    sync.Mutex
	until map[string]time.Time
	clock fnmarket.Clock
}

var _ SessionRevocations = (*memoryRevocations)(nil)

func (m *memoryRevocations) Revoke(_ context.Context, id string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	for k, t := range m.until {
		if !t.After(now) {
			delete(m.until, k)
		}
	}
	m.until[id] = now.Add(ttl)
	return nil
}

func (m *memoryRevocations) Revoked(_ context.Context, id string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.until[id]
	return ok && t.After(m.clock.Now()), nil
}

// Cookie names for browser sessions. The session cookie is HttpOnly; the CSRF
// cookie is readable by the portal's script, which echoes it in X-CSRF-Token.
// The token is derived from the session (Sessions.CSRFToken) and checked
// against it, not merely against the cookie, so a cross-site form cannot act
// with the session and a planted cookie pair does not pass either.
const (
	SessionCookie = "fnm_session"
	CSRFCookie    = "fnm_csrf"
	CSRFHeader    = "X-CSRF-Token"
)

const ctxAccount = "account_id"
const ctxSession = "session"

// requireSession authenticates with a Bearer token, or with the session
// cookie plus the session's CSRF token on state-changing requests. The
// session must not be revoked, its account must exist and its password must
// not have changed since it was issued.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ses, err := s.authenticate(c)
		if err != nil {
			return err
		}
		c.Set(ctxAccount, ses.AccountID)
		c.Set(ctxSession, ses)
		return next(c)
	}
}

// sessionToken returns the token a request carries and whether it came from
// the cookie; "" when it carries none.
func sessionToken(r *http.Request) (token string, fromCookie bool, err error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
			return "", false, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "Authorization must be \"Bearer <session token>\"")
		}
		return strings.TrimSpace(rest), false, nil
	}
	if ck, err := r.Cookie(SessionCookie); err == nil && ck.Value != "" {
		return ck.Value, true, nil
	}
	return "", false, nil
}

func (s *Server) authenticate(c echo.Context) (Session, error) {
	r := c.Request()
	token, fromCookie, err := sessionToken(r)
	if err != nil {
		return Session{}, err
	}
	if token == "" {
		return Session{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "log in first: send Authorization: Bearer <session token>")
	}
	ses, err := s.sessions.Verify(token)
	if err != nil {
		return Session{}, err
	}
	if fromCookie && !safeMethod(r.Method) {
		h := r.Header.Get(CSRFHeader)
		if h == "" || subtle.ConstantTimeCompare([]byte(h), []byte(s.sessions.CSRFToken(ses.ID))) != 1 {
			return Session{}, fnmarket.Errorf(fnmarket.EFORBIDDEN, "missing or wrong CSRF token")
		}
	}
	ctx := r.Context()
	revoked, err := s.revocations.Revoked(ctx, ses.ID)
	if err != nil {
		return Session{}, fnmarket.Wrap("check session revocation", err)
	}
	if revoked {
		return Session{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "session ended; log in again")
	}
	a, err := s.Accounts.Account(ctx, ses.AccountID)
	if fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND {
		return Session{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "the session's account no longer exists")
	}
	if err != nil {
		return Session{}, err
	}
	if !s.sessions.issuedUnder(ses, a.CredentialStamp) {
		return Session{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "session ended by a password change; log in again")
	}
	return ses, nil
}

// revokeSession ends one session on every replica.
func (s *Server) revokeSession(ctx context.Context, ses Session) error {
	ttl := ses.ExpiresAt.Sub(s.Clock.Now()) + time.Minute
	if ttl <= time.Minute {
		return nil
	}
	return s.revocations.Revoke(ctx, ses.ID, ttl)
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func accountID(c echo.Context) string {
	id, _ := c.Get(ctxAccount).(string)
	return id
}

func currentSession(c echo.Context) Session {
	ses, _ := c.Get(ctxSession).(Session)
	return ses
}

// setSessionCookies gives a browser the session and its CSRF token.
func (s *Server) setSessionCookies(c echo.Context, token, sessionID string, exp time.Time) {
	secure := c.Request().TLS != nil || c.Request().Header.Get("X-Forwarded-Proto") == "https"
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: token, Path: "/", Expires: exp, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	c.SetCookie(&http.Cookie{Name: CSRFCookie, Value: s.sessions.CSRFToken(sessionID), Path: "/", Expires: exp, Secure: secure, SameSite: http.SameSiteStrictMode})
}

func (s *Server) clearSessionCookies(c echo.Context) {
	for _, n := range []string{SessionCookie, CSRFCookie} {
		c.SetCookie(&http.Cookie{Name: n, Value: "", Path: "/", MaxAge: -1, HttpOnly: n == SessionCookie, SameSite: http.SameSiteStrictMode})
	}
}
