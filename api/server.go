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
	"net/http"
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
	// LoginThrottle, when set, refuses logins for an email after repeated
	// wrong passwords (shared by every replica).
	LoginThrottle LoginThrottle
	// Revocations remembers sessions ended by logout, shared by every
	// replica; nil keeps them in this process only.
	Revocations SessionRevocations
	// Clock decides default usage windows; nil is the system clock.
	Clock fnmarket.Clock
	// StripeEnabled says whether payouts through Stripe Connect are
	// configured, so the portal offers onboarding only then.
	StripeEnabled bool
}

// LoginThrottle counts failed logins per account.
type LoginThrottle interface {
	Blocked(ctx context.Context, key string) (bool, time.Duration, error)
	Fail(ctx context.Context, key string) error
	Reset(ctx context.Context, key string) error
}

// Server is the portal API.
type Server struct {
	Deps
	echo        *echo.Echo
	sessions    *Sessions
	revocations SessionRevocations
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
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	e.Use(middleware.Recover())
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection: "0", ContentTypeNosniff: "nosniff", XFrameOptions: "DENY", ReferrerPolicy: "same-origin",
	}))
	if d.Revocations == nil {
		d.Revocations = &memoryRevocations{until: map[string]time.Time{}, clock: d.Clock}
	}
	s := &Server{Deps: d, echo: e, sessions: d.Sessions, revocations: d.Revocations, log: d.Logger}
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
