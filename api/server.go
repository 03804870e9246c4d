// Package api is the portal's REST API (echo): accounts and sessions, vendor
// function management, the public catalog, API keys, usage and billing reads.
// Every error leaves as application/problem+json with a stable code.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/catalog"
)

// UpstreamChecker refuses backend URLs the gateway would not call (for
// example private addresses); the gateway provides it.
type UpstreamChecker func(ctx context.Context, rawURL string) error

// Deps are what the API needs. Usage and Billing may be nil while those parts
// are not wired; their routes then answer 404.
type Deps struct {
	Logger        *slog.Logger
	Accounts      *accounts.Store
	Catalog       *catalog.Store
	Sessions      *Sessions
	CheckUpstream UpstreamChecker
	Usage         UsageReader
	Billing       BillingReader
	Webhooks      WebhookHandler
	Backends      BackendPreparer
	FunctionLogs  FunctionLogReader
	// GatewayURL is the public base URL of the gateway, shown in the catalog's
	// "how to call" snippets.
	GatewayURL string
	// MaxUploadBytes bounds the bodies that may carry a wasm module (creating
	// a function or a version); every other JSON body is held to
	// MaxBodyBytes (1 MiB by default).
	MaxUploadBytes int64
	// MaxBodyBytes bounds ordinary JSON request bodies.
	MaxBodyBytes int64
	// LoginThrottle, when set, locks logins for an (email, client address)
	// pair after repeated wrong passwords and reports each account's attempts
	// from every address, which slow it down (shared by every replica).
	LoginThrottle LoginThrottle
	// AuthRate, when set, limits sign-ups and login attempts per client
	// address.
	AuthRate AuthRate
	// TrustedProxies are the networks whose X-Forwarded-For names the client
	// address; empty: the connection's address is the client's. Every use of
	// a client address in the API goes through echo's IPExtractor set from
	// it (echo.Context.RealIP).
	TrustedProxies []*net.IPNet
	// Auth tunes the per-account slowdown and bounds password hashing.
	Auth AuthLimits
	// Revocations remembers sessions ended by logout, shared by every
	// replica; nil keeps them in this process only.
	Revocations SessionRevocations
	// Clock decides default usage windows; nil is the system clock.
	Clock fnmarket.Clock
	// StripeEnabled says whether payouts through Stripe Connect are
	// configured, so the portal offers onboarding only then.
	StripeEnabled bool
}

// LoginThrottle counts login attempts per (account, client address) pair and
// per account. Begin reserves an attempt before the password is checked, so
// concurrent attempts cannot overrun it; Release gives the attempt back
// after a right password or when no password was checked.
type LoginThrottle interface {
	Begin(ctx context.Context, account, client string) (allowed bool, retryAfter time.Duration, accountAttempts int64, err error)
	Release(ctx context.Context, account, client string) error
}

// AuthRate limits sign-ups and login attempts per client address.
type AuthRate interface {
	Take(ctx context.Context, client string) (allowed bool, retryAfter time.Duration, err error)
}

// AuthLimits tunes how logins under attack are slowed and how much password
// hashing may run at once. Zero values take the defaults.
type AuthLimits struct {
	// AccountFreeAttempts is how many attempts an account takes in the
	// throttle's window, from all addresses together, before each further
	// one waits (default 10).
	AccountFreeAttempts int64
	// SlowdownStep is the wait added per attempt past the free ones (default
	// 250ms); SlowdownMax caps it (default 3s). Waiting, not refusing, keeps
	// the owner able to log in while the account is under attack.
	SlowdownStep, SlowdownMax time.Duration
	// HashSlots bounds concurrent password hashing (default max(1,
	// GOMAXPROCS/2)), so sign-ups and logins cannot starve the gateway of CPU.
	HashSlots int
	// HashWait is how long a request waits for a hashing slot before it gets
	// 503 with Retry-After (default 2s).
	HashWait time.Duration
}

func (l *AuthLimits) defaults() {
	if l.AccountFreeAttempts <= 0 {
		l.AccountFreeAttempts = 10
	}
	if l.SlowdownStep <= 0 {
		l.SlowdownStep = 250 * time.Millisecond
	}
	if l.SlowdownMax <= 0 {
		l.SlowdownMax = 3 * time.Second
	}
	if l.HashSlots <= 0 {
		l.HashSlots = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if l.HashWait <= 0 {
		l.HashWait = 2 * time.Second
	}
}

// Server is the portal API.
type Server struct {
	Deps
	echo        *echo.Echo
	sessions    *Sessions
	revocations SessionRevocations
	hashSlots   chan struct{}
	log         *slog.Logger
}

// NewServer builds the API with every route registered.
func NewServer(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Clock == nil {
		d.Clock = fnmarket.SystemClock{}
	}
	if d.MaxBodyBytes == 0 {
		d.MaxBodyBytes = 1 << 20
	}
	if d.MaxUploadBytes < d.MaxBodyBytes {
		d.MaxUploadBytes = d.MaxBodyBytes
	}
	d.Auth.defaults()
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = clientIPExtractor(d.TrustedProxies)
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Use(middleware.Recover())
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection: "0", ContentTypeNosniff: "nosniff", XFrameOptions: "DENY", ReferrerPolicy: "same-origin",
	}))
	if d.Revocations == nil {
		d.Revocations = &memoryRevocations{until: map[string]time.Time{}, clock: d.Clock}
	}
	s := &Server{Deps: d, echo: e, sessions: d.Sessions, revocations: d.Revocations, hashSlots: make(chan struct{}, d.Auth.HashSlots), log: d.Logger}
	s.routes()
	return s
}

// Echo exposes the router, so the web package can add its pages.
func (s *Server) Echo() *echo.Echo { return s.echo }

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// Routes lists method and path of every route served, for the OpenAPI test.
func (s *Server) Routes() []*echo.Route { return s.echo.Routes() }

// bind decodes a JSON body strictly: unknown fields, trailing data and wrong
// types are refused with a field-naming problem.
func (s *Server) bind(c echo.Context, dst any) error { return s.bindUpTo(c, dst, s.MaxBodyBytes) }

// bindUpload decodes a body that may carry a wasm module.
func (s *Server) bindUpload(c echo.Context, dst any) error {
	return s.bindUpTo(c, dst, s.MaxUploadBytes)
}

func (s *Server) bindUpTo(c echo.Context, dst any, limit int64) error {
	r := c.Request()
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fnmarket.Errorf(fnmarket.EINVALID, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fnmarket.Errorf(fnmarket.ETOOLARGE, "request body over %d bytes", limit)
		}
		return fnmarket.Errorf(fnmarket.EINVALID, "could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonProblem(err)
	}
	if dec.More() {
		return fnmarket.Errorf(fnmarket.EINVALID, "the body must hold one JSON object")
	}
	return nil
}

func jsonProblem(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fnmarket.Errorf(fnmarket.EINVALID, "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		// Embedded request structs show up in the path; callers never see them.
		field := strings.ReplaceAll(te.Field, "versionInput.", "")
		if field == "" {
			field = "body"
		}
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "a field has the wrong type", Fields: map[string]string{field: fmt.Sprintf("must be %s", jsonKind(te.Type.Kind().String()))}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), "\"")
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "unknown field " + name, Fields: map[string]string{name: "is not a known field"}}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fnmarket.Errorf(fnmarket.EINVALID, "malformed JSON: unexpected end")
	}
	return fnmarket.Errorf(fnmarket.EINVALID, "malformed JSON")
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64":
		return "an integer"
	case "bool":
		return "true or false"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	}
	return "a " + k
}

// list is the envelope of every list answer.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}
