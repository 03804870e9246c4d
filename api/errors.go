package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
)

// Problem is an RFC 9457 problem document with fnmarket's stable code.
type Problem struct {
	Type   string            `json:"type"`
	Title  string            `json:"title"`
	Status int               `json:"status"`
	Detail string            `json:"detail,omitempty"`
	Code   string            `json:"code"`
	Errors map[string]string `json:"errors,omitempty"`
}

// ProblemFor turns any error into the problem callers see. Internal errors
// show no detail.
func ProblemFor(err error) Problem {
	code := fnmarket.ErrorCode(err)
	status := fnmarket.HTTPStatus(code)
	return Problem{
		Type:   "https://fnmarket.dev/problems/" + code,
		Title:  http.StatusText(status),
		Status: status,
		Detail: fnmarket.ErrorMessage(err),
		Code:   code,
		Errors: fnmarket.ErrorFields(err),
	}
}

// WriteProblem writes err as application/problem+json.
func WriteProblem(w http.ResponseWriter, err error) {
	p := ProblemFor(err)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// errorHandler is echo's one error handler: it maps codes to problem+json
// and logs only internal errors.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			err = fromEcho(he)
		}
		if fnmarket.ErrorCode(err) == fnmarket.EINTERNAL {
			log.ErrorContext(c.Request().Context(), "request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		WriteProblem(c.Response(), err)
	}
}

func fromEcho(he *echo.HTTPError) error {
	msg, _ := he.Message.(string)
	switch he.Code {
	case http.StatusNotFound:
		return fnmarket.Errorf(fnmarket.ENOTFOUND, "no such route")
	case http.StatusMethodNotAllowed:
		return &fnmarket.Error{Code: fnmarket.ENOTFOUND, Message: "method not allowed on this route"}
	case http.StatusRequestEntityTooLarge:
		return fnmarket.Errorf(fnmarket.ETOOLARGE, "request body too large")
	case http.StatusUnauthorized:
		return fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "authentication required")
	case http.StatusForbidden:
		return fnmarket.Errorf(fnmarket.EFORBIDDEN, "forbidden")
	case http.StatusTooManyRequests:
		return fnmarket.Errorf(fnmarket.ERATELIMITED, "too many requests")
	}
	if he.Code >= 400 && he.Code < 500 {
		if msg == "" {
			msg = http.StatusText(he.Code)
		}
		return fnmarket.Errorf(fnmarket.EINVALID, "%s", msg)
	}
	return &fnmarket.Error{Code: fnmarket.EINTERNAL, Err: he}
}
