package api

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
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

// Issue returns a signed token for the account.
func (s *Sessions) Issue(accountID string) (string, time.Time, error) {
	now := s.clock.Now()
	exp := now.Add(s.ttl)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   accountID,
		Issuer:    SessionIssuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
		ID:        fnmarket.NewID("ses"),
	})
	signed, err := tok.SignedString(s.secret)
	return signed, exp, err
}

// Verify checks a token and returns its account id. Any algorithm but HS256
// (including "none") is refused.
func (s *Sessions) Verify(token string) (string, error) {
	var claims jwt.RegisteredClaims
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
		return "", fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "%s", msg)
	}
	if claims.Subject == "" {
		return "", fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "invalid session token")
	}
	return claims.Subject, nil
}

// Cookie names for browser sessions. The session cookie is HttpOnly; the CSRF
// cookie is readable by the portal's script, which echoes it in X-CSRF-Token
// (double-submit), so a cross-site form cannot act with the session.
const (
	SessionCookie = "fnm_session"
	CSRFCookie    = "fnm_csrf"
	CSRFHeader    = "X-CSRF-Token"
)

const ctxAccount = "account_id"

// requireSession authenticates with a Bearer token, or with the session
// cookie plus a matching CSRF header on state-changing requests.
func (s *Server) requireSession(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		var token string
		if h := r.Header.Get("Authorization"); h != "" {
			scheme, rest, ok := strings.Cut(h, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || rest == "" {
				return fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "Authorization must be \"Bearer <session token>\"")
			}
			token = strings.TrimSpace(rest)
		} else if ck, err := r.Cookie(SessionCookie); err == nil && ck.Value != "" {
			token = ck.Value
			if !safeMethod(r.Method) {
				csrf, err := r.Cookie(CSRFCookie)
				h := r.Header.Get(CSRFHeader)
				if err != nil || h == "" || subtle.ConstantTimeCompare([]byte(csrf.Value), []byte(h)) != 1 {
					return fnmarket.Errorf(fnmarket.EFORBIDDEN, "missing or wrong CSRF token")
				}
			}
		} else {
			return fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "log in first: send Authorization: Bearer <session token>")
		}
		id, err := s.sessions.Verify(token)
		if err != nil {
			return err
		}
		c.Set(ctxAccount, id)
		return next(c)
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

func accountID(c echo.Context) string {
	id, _ := c.Get(ctxAccount).(string)
	return id
}

// setSessionCookies gives a browser the session and a fresh CSRF token.
func (s *Server) setSessionCookies(c echo.Context, token string, exp time.Time) {
	secure := c.Request().TLS != nil || c.Request().Header.Get("X-Forwarded-Proto") == "https"
	c.SetCookie(&http.Cookie{Name: SessionCookie, Value: token, Path: "/", Expires: exp, HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
	c.SetCookie(&http.Cookie{Name: CSRFCookie, Value: fnmarket.RandomToken(20), Path: "/", Expires: exp, Secure: secure, SameSite: http.SameSiteStrictMode})
}

func (s *Server) clearSessionCookies(c echo.Context) {
	for _, n := range []string{SessionCookie, CSRFCookie} {
		c.SetCookie(&http.Cookie{Name: n, Value: "", Path: "/", MaxAge: -1, HttpOnly: n == SessionCookie, SameSite: http.SameSiteStrictMode})
	}
}
