package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Routes lists method and path of every route h (a NewServer) serves, for
// the OpenAPI test.
func Routes(h http.Handler) []*echo.Route { return h.(*Server).echo.Routes() }
