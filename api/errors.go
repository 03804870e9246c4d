package api

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
)

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
		fnmarket.WriteProblem(c.Response(), err)
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
