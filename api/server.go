// Package api is the portal's REST API (echo): accounts and sessions, vendor
// function management, the public catalog, API keys, usage and billing reads.
// Every error leaves as application/problem+json with a stable code.
package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
)

// Deps are what the API needs. Usage and Billing may be nil while those parts
// are not wired; their routes then answer 404.
type Deps struct {
	Logger *slog.Logger
	// DefaultKeyRateLimit is the gateway's calls per second per API key
	// (FNMARKET_RATE_LIMIT_PER_KEY; 0: no limit): a key's own
	// rate_limit_per_second may not be above it.
	DefaultKeyRateLimit int
	Accounts            AccountStore
	Catalog             CatalogStore
	Sessions            *Sessions
	Usage               UsageReader
	Billing             BillingReader
	Webhooks            WebhookHandler
	// WebhookEndpoints keeps accounts' outbound webhook endpoints
	// (/api/v1/webhooks); nil: those routes answer 404.
	WebhookEndpoints WebhookEndpoints
	// Payments starts Stripe Checkout for a card or prepaid credit; nil (or
	// one without Stripe) answers 409 conflict: payments are not configured.
	Payments Payments
	// PublicURL is the portal's public base URL, where Checkout sends the
	// consumer back (PublicURL/billing?...); empty: the request's origin.
	PublicURL string
	// CallPositions counts each consumer's calls of a function this month,
	// as the gateway prices them (the next-call route). Nil falls back to
	// Usage when it can count them (UsageReport: billable calls in the
	// rolled-up usage); with neither, the next-call route answers 404.
	CallPositions CallPositions
	// KeySpends reports each key's spend this month on key lists. Nil falls
	// back to Usage when it can (UsageReport: rolled-up usage priced as
	// usage rows are); with neither, key items carry no spend_this_month.
	KeySpends KeySpends
	// Backends are the backend kinds versions may use; the API hands each
	// backend document to its kind and knows none of them.
	Backends     *backend.Registry
	FunctionLogs FunctionLogReader
	// Audit records what accounts do (sign-ups, logins, keys, caps,
	// functions) and serves GET /api/v1/audit; nil records nothing and
	// that route answers 404.
	Audit AuditLog
	// ErrorAlerts keeps vendors' error-rate alerts (PUT/GET/DELETE
	// /api/v1/functions/{id}/error-rate-alert); nil: those routes answer 404.
	ErrorAlerts ErrorAlerts
	// GatewayURL is the public base URL of the gateway, shown in the catalog's
	// "how to call" snippets.
	GatewayURL string
	// MaxUploadBytes bounds the bodies that may carry a wasm module (creating
	// a function or a version); every other JSON body is held to
	// MaxBodyBytes (1 MiB by default).
	MaxUploadBytes int64
	// MaxBodyBytes bounds ordinary JSON request bodies.
	MaxBodyBytes int64
	// BodyReadTimeout bounds how long the body of a portal request
	// (/api/v1/..., /webhooks/...) may take to arrive, so a client cannot
	// hold a connection by trickling it; 30 s by default.
	BodyReadTimeout time.Duration
	// UploadReadTimeout is BodyReadTimeout for the routes that take a wasm
	// module (MaxUploadBytes); 2 min by default.
	UploadReadTimeout time.Duration
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
	// Pages, when set, adds routes to the API's router after its own, under
	// the same middleware and error handler: the web portal's pages
	// (web.Register).
	Pages func(e *echo.Echo)
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

// NewServer builds the API with every route registered (and Deps.Pages').
func NewServer(d Deps) http.Handler {
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
	if d.BodyReadTimeout <= 0 {
		d.BodyReadTimeout = 30 * time.Second
	}
	if d.UploadReadTimeout < d.BodyReadTimeout {
		d.UploadReadTimeout = max(2*time.Minute, d.BodyReadTimeout)
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.IPExtractor = clientIPExtractor(d.TrustedProxies)
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Use(middleware.Recover())
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection: "0", ContentTypeNosniff: "nosniff", XFrameOptions: "DENY", ReferrerPolicy: "same-origin",
	}))
	e.Use(bodyReadDeadline(d.BodyReadTimeout, d.UploadReadTimeout))
	if d.Revocations == nil {
		d.Revocations = &memoryRevocations{until: map[string]time.Time{}, clock: d.Clock}
	}
	s := &Server{Deps: d, echo: e, sessions: d.Sessions, revocations: d.Revocations, hashSlots: make(chan struct{}, d.Auth.HashSlots), log: d.Logger}
	s.routes()
	if d.Pages != nil {
		d.Pages(e)
	}
	return s
}

// bodyReadDeadline sets the connection's read deadline for portal requests
// that carry a body: a body that has not arrived by then fails to read (and
// the connection is closed), however slowly it trickles in.
// net/http lifts the deadline itself once the body has been read to its end,
// so a handler working longer keeps its request context.
func bodyReadDeadline(body, upload time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.Body != nil && r.Body != http.NoBody && (strings.HasPrefix(r.URL.Path, "/api/") || strings.HasPrefix(r.URL.Path, "/webhooks/")) {
				d := body
				if p := c.Path(); r.Method == http.MethodPost && (p == "/api/v1/functions" || p == "/api/v1/functions/:id/versions") {
					d = upload
				}
				// A writer without deadlines (a test recorder) is left as it is.
				_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now().Add(d))
			}
			return next(c)
		}
	}
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// bind decodes a JSON body strictly: unknown fields, duplicate or
// differently cased keys, invalid UTF-8, trailing data and wrong types are
// refused with a field-naming problem.
func (s *Server) bind(c echo.Context, dst any) error { return s.bindUpTo(c, dst, s.MaxBodyBytes) }

// bindUpload decodes a body that may carry a wasm module. Callers check who
// is calling (a vendor, owning the function) before they call it, so a body
// is only read for someone allowed to send it.
func (s *Server) bindUpload(c echo.Context, dst any) error {
	return s.bindUpTo(c, dst, s.MaxUploadBytes)
}

func (s *Server) bindUpTo(c echo.Context, dst any, limit int64) error {
	r := c.Request()
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.ContentLength == 0 {
		// No body at all: the same as an empty object.
		return jsonv2.Unmarshal([]byte("{}"), dst, jsonv2.RejectUnknownMembers(true))
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return &fnmarket.Error{Code: fnmarket.EUNSUPPORTEDMEDIA, Message: "send the body as application/json",
			Fields: map[string]string{"Content-Type": "must be application/json"}}
	}
	if r.ContentLength > limit {
		return fnmarket.Errorf(fnmarket.ETOOLARGE, "request body over %d bytes", limit)
	}
	body := http.MaxBytesReader(c.Response(), r.Body, limit)
	var err error
	if r.ContentLength > 0 {
		// The declared length read into one buffer of that size and decoded
		// in place: a large module is held twice at most (the body and the
		// string decoded from it), not in a series of growing copies.
		buf := make([]byte, r.ContentLength)
		if _, err = io.ReadFull(body, buf); err == nil {
			err = jsonv2.Unmarshal(buf, dst, jsonv2.RejectUnknownMembers(true))
		}
	} else {
		err = jsonv2.UnmarshalRead(body, dst, jsonv2.RejectUnknownMembers(true))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fnmarket.Errorf(fnmarket.ETOOLARGE, "request body over %d bytes", limit)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fnmarket.Errorf(fnmarket.EINVALID, "the request body did not arrive in time")
		}
		return jsonProblem(err)
	}
	return nil
}

// jsonField turns a JSON pointer (/pricing/tiers/0/up_to) into the field
// names problems use (pricing.tiers[0].up_to).
func jsonField(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

// errInvalidUTF8 is the decoder's invalid-UTF-8 error, matched by identity:
// the json module keeps its sentinel in an internal package, so it is taken
// once from a decode of invalid UTF-8.
var errInvalidUTF8 = func() error {
	var s string
	var se *jsontext.SyntacticError
	if err := jsonv2.Unmarshal([]byte("\"\xff\""), &s); errors.As(err, &se) {
		return se.Err
	}
	return nil
}()

func jsonProblem(err error) error {
	var se *jsontext.SyntacticError
	var me *jsonv2.SemanticError
	switch {
	case errors.As(err, &se) && errors.Is(err, jsontext.ErrDuplicateName):
		f := jsonField(se.JSONPointer)
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "duplicate field " + f, Fields: map[string]string{f: "appears more than once"}}
	case errors.As(err, &se) && errInvalidUTF8 != nil && errors.Is(se.Err, errInvalidUTF8):
		f := jsonField(se.JSONPointer)
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "invalid UTF-8 in " + f, Fields: map[string]string{f: "must be valid UTF-8"}}
	case errors.As(err, &se):
		return fnmarket.Errorf(fnmarket.EINVALID, "malformed JSON at byte %d", se.ByteOffset)
	case errors.As(err, &me) && errors.Is(err, jsonv2.ErrUnknownName):
		f := jsonField(me.JSONPointer)
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "unknown field " + f,
			Fields: map[string]string{f: "is not a known field (names are case-sensitive)"}}
	case errors.As(err, &me) && me.GoType != nil:
		return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "a field has the wrong type",
			Fields: map[string]string{jsonField(me.JSONPointer): "must be " + jsonKind(me.GoType)}}
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fnmarket.Errorf(fnmarket.EINVALID, "malformed JSON: unexpected end")
	}
	return fnmarket.Errorf(fnmarket.EINVALID, "malformed JSON")
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch k := t.Kind().String(); k {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		return "an integer"
	case "bool":
		return "true or false"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	default:
		return "a " + k
	}
}

// list is the envelope of every list answer.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}
