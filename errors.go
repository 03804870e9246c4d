// Package fnmarket holds the domain vocabulary shared by every part of the
// marketplace: the application error type with its stable codes, and the clock.
// Packages below it (catalog, metering, gateway, billing, api) depend on it;
// it depends on nothing of theirs.
package fnmarket

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Stable machine-readable error codes, as listed in API.md.
const (
	EINVALID      = "invalid_input"
	EUNAUTHORIZED = "unauthenticated"
	EFORBIDDEN    = "forbidden"
	ENOTFOUND     = "not_found"
	ECONFLICT     = "conflict"
	ERATELIMITED  = "rate_limited"
	ESPENDCAP     = "spend_cap_reached"
	ETOOLARGE     = "payload_too_large"
	EUNREACHABLE  = "upstream_unreachable"
	EUPSTREAMTIME = "upstream_timeout"
	EINTERNAL     = "internal"
	// EREQUESTTIMEOUT: the request body stopped arriving (408).
	EREQUESTTIMEOUT = "request_timeout"
	// EUNAVAILABLE: the server is at a capacity limit right now; retry
	// after the Retry-After header (503).
	EUNAVAILABLE = "unavailable"
	// EUNSUPPORTEDMEDIA refuses a request body that is not sent as the
	// media type the route takes (application/json).
	EUNSUPPORTEDMEDIA = "unsupported_media_type"
	// EPAYMENTREQUIRED: the account has no way to pay for this call yet, or
	// an invoice is past due (402, with a link to pay).
	EPAYMENTREQUIRED = "payment_required"
	// EKEYEXPIRED: the API key is past its expires_at, or is the secret a
	// rotation replaced and its grace has ended (401; an unknown key is
	// EUNAUTHORIZED).
	EKEYEXPIRED = "key_expired"
	// EIDEMPOTENCYMISMATCH: an Idempotency-Key was reused with a different
	// request (method, path and query, or body) than its first call (422).
	EIDEMPOTENCYMISMATCH = "idempotency_mismatch"
)

// Error is the one application error type. Code is stable and maps to an HTTP
// status in exactly one place (api and gateway share HTTPStatus below).
type Error struct {
	Code    string
	Message string
	// Fields names the bad input fields and what is wrong with each.
	Fields map[string]string
	// Err is the underlying cause; it is logged, never shown to callers.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " [%s: %s]", k, e.Fields[k])
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an application error with the given code and message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, EINTERNAL when err is not an *Error, and
// "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the message safe to show a caller.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != EINTERNAL {
		return e.Message
	}
	return "internal error"
}

// ErrorFields returns the per-field problems of err, if any.
func ErrorFields(err error) map[string]string {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// HTTPStatus maps an error code to its HTTP status.
func HTTPStatus(code string) int {
	switch code {
	case EINVALID:
		return 400
	case EUNAUTHORIZED, EKEYEXPIRED:
		return 401
	case ESPENDCAP, EPAYMENTREQUIRED:
		return 402
	case EFORBIDDEN:
		return 403
	case ENOTFOUND:
		return 404
	case ECONFLICT:
		return 409
	case ETOOLARGE:
		return 413
	case EIDEMPOTENCYMISMATCH:
		return 422
	case EREQUESTTIMEOUT:
		return 408
	case EUNSUPPORTEDMEDIA:
		return 415
	case ERATELIMITED:
		return 429
	case EUNREACHABLE:
		return 502
	case EUNAVAILABLE:
		return 503
	case EUPSTREAMTIME:
		return 504
	default:
		return 500
	}
}

// Validation collects per-field problems; Err returns nil when there are none.
type Validation map[string]string

// Add records a problem with field unless one is already recorded.
func (v Validation) Add(field, problem string) {
	if _, ok := v[field]; !ok {
		v[field] = problem
	}
}

// Err returns an EINVALID error naming every bad field, or nil.
func (v Validation) Err() error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Code: EINVALID, Message: "the request has invalid fields", Fields: map[string]string(v)}
}

// Wrap adds what was being done to err, leaving application errors as they
// are (their message is for callers); nil stays nil.
func Wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}
