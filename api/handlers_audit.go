package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/alerts"
	"github.com/fnmarket/fnmarket/audit"
)

// audit records what the caller just did, with the client address the API
// sees (echo's RealIP, set from TrustedProxies). It is called after the
// change succeeded; an entry that cannot be written is logged, and the
// change stands.
func (s *Server) audit(c echo.Context, actor, action, target, detail string) {
	if s.Audit == nil {
		return
	}
	ctx := c.Request().Context()
	if err := s.Audit.Record(ctx, audit.Entry{ActorID: actor, Action: action, Target: target, IP: c.RealIP(), Detail: detail}); err != nil {
		s.log.ErrorContext(ctx, "audit entry not written", "action", action, "target", target, "err", err)
	}
}

// checkThresholds validates alert_thresholds (nil: absent).
func checkThresholds(v fnmarket.Validation, t []int) {
	if err := accounts.CheckAlertThresholds(t); err != nil {
		for f, msg := range fnmarket.ErrorFields(err) {
			v.Add(f, msg)
		}
	}
}

// auditJSON is one entry of GET /api/v1/audit.
type auditJSON struct {
	At     string `json:"at"`
	Actor  string `json:"actor"`
	Action string `json:"action"`
	Target string `json:"target"`
	IP     string `json:"ip"`
	Detail string `json:"detail"`
}

func (s *Server) handleAudit() echo.HandlerFunc {
	return func(c echo.Context) error {
		limit := audit.MaxPage
		if raw := c.QueryParam("limit"); raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > audit.MaxPage {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "the limit is out of range",
					Fields: map[string]string{"limit": "must be 1 to " + strconv.Itoa(audit.MaxPage)}}
			}
			limit = n
		}
		es, next, err := s.Audit.List(c.Request().Context(), accountID(c), c.QueryParam("cursor"), limit)
		if err != nil {
			return err
		}
		out := list[auditJSON]{Items: []auditJSON{}, NextCursor: next}
		for _, e := range es {
			out.Items = append(out.Items, auditJSON{At: rfc3339(e.At), Actor: e.ActorID, Action: e.Action, Target: e.Target, IP: e.IP, Detail: e.Detail})
		}
		return c.JSON(http.StatusOK, out)
	}
}

// errorAlertJSON is a function's error-rate alert.
type errorAlertJSON struct {
	FunctionID    string `json:"function_id"`
	Percent       int    `json:"percent"`
	WindowMinutes int    `json:"window_minutes"`
}

type errorAlertRequest struct {
	Percent       *int `json:"percent"`
	WindowMinutes *int `json:"window_minutes"`
}

// ownFunction checks the function in the path is the calling vendor's.
func (s *Server) ownFunction(c echo.Context) (string, error) {
	ven, err := s.vendor(c)
	if err != nil {
		return "", err
	}
	f, err := s.Catalog.Function(c.Request().Context(), ven, c.Param("id"))
	if err != nil {
		return "", err
	}
	return f.ID, nil
}

func (s *Server) handleGetErrorAlert() echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := s.ownFunction(c)
		if err != nil {
			return err
		}
		a, err := s.ErrorAlerts.ErrorAlert(c.Request().Context(), id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, errorAlertJSON{FunctionID: a.FunctionID, Percent: a.Percent, WindowMinutes: a.WindowMinutes})
	}
}

func (s *Server) handleSetErrorAlert() echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := s.ownFunction(c)
		if err != nil {
			return err
		}
		var req errorAlertRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		v := fnmarket.Validation{}
		if req.Percent == nil {
			v.Add("percent", "is required")
		}
		if req.WindowMinutes == nil {
			v.Add("window_minutes", "is required")
		}
		if err := v.Err(); err != nil {
			return err
		}
		a := alerts.ErrorAlert{FunctionID: id, Percent: *req.Percent, WindowMinutes: *req.WindowMinutes}
		if err := s.ErrorAlerts.SetErrorAlert(c.Request().Context(), a); err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionErrorAlertSet, id, strconv.Itoa(a.Percent)+"% over "+strconv.Itoa(a.WindowMinutes)+" minutes")
		return c.JSON(http.StatusOK, errorAlertJSON{FunctionID: id, Percent: a.Percent, WindowMinutes: a.WindowMinutes})
	}
}

func (s *Server) handleDeleteErrorAlert() echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := s.ownFunction(c)
		if err != nil {
			return err
		}
		if err := s.ErrorAlerts.DeleteErrorAlert(c.Request().Context(), id); err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionErrorAlertSet, id, "removed")
		return c.NoContent(http.StatusNoContent)
	}
}
