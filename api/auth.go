package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
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

// clientIPExtractor decides which address is the client's: the connection's
// own, or, when it comes from a trusted proxy, the last address in
// X-Forwarded-For not itself trusted. Only the networks given are trusted
// (echo's defaults would also trust every private and loopback address).
func clientIPExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// clientAddress is the address the sign-up and login limits count under:
// echo's RealIP (see clientIPExtractor), an IPv6 address grouped by its /64,
// the block one subscriber usually holds.
func clientAddress(c echo.Context) string {
	raw := c.RealIP()
	ip := net.ParseIP(raw)
	switch {
	case ip == nil:
		return raw
	case ip.To4() != nil:
		return ip.To4().String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

func setRetryAfter(c echo.Context, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	c.Response().Header().Set("Retry-After", strconv.Itoa(secs))
}

// unavailable answers 503 with Retry-After when a store the limits rely on
// cannot be reached: failing open would let guessing run unlimited.
func (s *Server) unavailable(c echo.Context, what string, err error) error {
	s.log.WarnContext(c.Request().Context(), what, "err", err)
	setRetryAfter(c, time.Second)
	return fnmarket.Errorf(fnmarket.EUNAVAILABLE, "sign-in is briefly unavailable; try again shortly")
}

// takeAuthRate counts a sign-up or login attempt against the client's
// per-minute budget.
func (s *Server) takeAuthRate(c echo.Context) error {
	if s.AuthRate == nil {
		return nil
	}
	ok, wait, err := s.AuthRate.Take(c.Request().Context(), clientAddress(c))
	if err != nil {
		return s.unavailable(c, "auth rate limit unavailable", err)
	}
	if !ok {
		setRetryAfter(c, wait)
		return fnmarket.Errorf(fnmarket.ERATELIMITED, "too many sign-ups and logins from your address; try again later")
	}
	return nil
}

// hashing runs f, which hashes or checks a password, in one of a bounded
// number of slots, so portal traffic cannot take every CPU from the gateway.
// A request that waits longer than HashWait gets 503 with Retry-After.
func (s *Server) hashing(c echo.Context, f func() error) error {
	t := time.NewTimer(s.Auth.HashWait)
	defer t.Stop()
	select {
	case s.hashSlots <- struct{}{}:
	case <-t.C:
		setRetryAfter(c, time.Second)
		return fnmarket.Errorf(fnmarket.EUNAVAILABLE, "too many sign-ins at once; try again shortly")
	case <-c.Request().Context().Done():
		return c.Request().Context().Err()
	}
	defer func() { <-s.hashSlots }()
	return f()
}

// slowDown waits before checking a password for an account that has seen
// more than AccountFreeAttempts attempts in the throttle's window, from all
// addresses: SlowdownStep per attempt past them, at most SlowdownMax.
func (s *Server) slowDown(ctx context.Context, accountAttempts int64) error {
	over := accountAttempts - s.Auth.AccountFreeAttempts
	if over <= 0 {
		return nil
	}
	wait := s.Auth.SlowdownMax
	if over < int64(s.Auth.SlowdownMax/s.Auth.SlowdownStep) {
		wait = time.Duration(over) * s.Auth.SlowdownStep
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
