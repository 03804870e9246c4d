package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/webhooks"
)

// WebhookEndpoints keeps each account's outbound webhook endpoints and their
// delivery logs (a *webhooks.Store). Every method is scoped to the account:
// another account's endpoint or delivery is not_found.
type WebhookEndpoints interface {
	CreateEndpoint(ctx context.Context, accountID, url string, events []string) (webhooks.Endpoint, error)
	Endpoints(ctx context.Context, accountID string) ([]webhooks.Endpoint, error)
	DeleteEndpoint(ctx context.Context, accountID, id string) error
	Deliveries(ctx context.Context, accountID, endpointID, after string, limit int) ([]webhooks.Delivery, error)
	RetryDelivery(ctx context.Context, accountID, endpointID, deliveryID string) error
	SendTest(ctx context.Context, accountID, endpointID string) (string, error)
	EnableEndpoint(ctx context.Context, accountID, id string) (webhooks.Endpoint, error)
}

type createEndpointRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// endpointJSON is an endpoint; Secret only in the create answer.
type endpointJSON struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Secret         string   `json:"secret,omitempty"`
	CreatedAt      string   `json:"created_at"`
	DisabledAt     *string  `json:"disabled_at"`
	DisabledReason *string  `json:"disabled_reason"`
}

func toEndpointJSON(e webhooks.Endpoint) endpointJSON {
	out := endpointJSON{ID: e.ID, URL: e.URL, Events: e.Events, Secret: e.Secret, CreatedAt: rfc3339(e.CreatedAt), DisabledAt: rfc3339Ptr(e.DisabledAt)}
	if out.Events == nil {
		out.Events = []string{}
	}
	if e.DisabledAt != nil {
		r := e.DisabledReason
		out.DisabledReason = &r
	}
	return out
}

type deliveryJSON struct {
	ID             string  `json:"id"`
	EventID        string  `json:"event_id"`
	Type           string  `json:"type"`
	Status         string  `json:"status"`
	Attempts       int     `json:"attempts"`
	LastStatusCode *int    `json:"last_status_code"`
	LastError      *string `json:"last_error"`
	NextAttemptAt  *string `json:"next_attempt_at"`
	CreatedAt      string  `json:"created_at"`
}

type acceptedJSON struct {
	Accepted bool   `json:"accepted"`
	EventID  string `json:"event_id,omitempty"`
}

func (s *Server) handleCreateWebhook() echo.HandlerFunc {
	return func(c echo.Context) error {
		var req createEndpointRequest
		if err := s.bind(c, &req); err != nil {
			return err
		}
		if len(req.Events) > 50 {
			return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "too many event types", Fields: map[string]string{"events": "must have at most 50 entries"}}
		}
		ep, err := s.WebhookEndpoints.CreateEndpoint(c.Request().Context(), accountID(c), req.URL, req.Events)
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionWebhookCreate, ep.ID, ep.URL)
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.JSON(http.StatusCreated, toEndpointJSON(ep))
	}
}

func (s *Server) handleListWebhooks() echo.HandlerFunc {
	return func(c echo.Context) error {
		eps, err := s.WebhookEndpoints.Endpoints(c.Request().Context(), accountID(c))
		if err != nil {
			return err
		}
		out := list[endpointJSON]{Items: []endpointJSON{}}
		for _, e := range eps {
			out.Items = append(out.Items, toEndpointJSON(e))
		}
		return c.JSON(http.StatusOK, out)
	}
}

func (s *Server) handleDeleteWebhook() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.WebhookEndpoints.DeleteEndpoint(c.Request().Context(), accountID(c), c.Param("id")); err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionWebhookDelete, c.Param("id"), "")
		return c.NoContent(http.StatusNoContent)
	}
}

// handleEnableWebhook enables again an endpoint that failing deliveries
// disabled.
func (s *Server) handleEnableWebhook() echo.HandlerFunc {
	return func(c echo.Context) error {
		e, err := s.WebhookEndpoints.EnableEndpoint(c.Request().Context(), accountID(c), c.Param("id"))
		if err != nil {
			return err
		}
		s.audit(c, accountID(c), audit.ActionWebhookEnable, e.ID, "")
		return c.JSON(http.StatusOK, toEndpointJSON(e))
	}
}

func (s *Server) handleWebhookDeliveries() echo.HandlerFunc {
	return func(c echo.Context) error {
		limit := 50
		if ls := c.QueryParam("limit"); ls != "" {
			n, err := strconv.Atoi(ls)
			if err != nil || n < 1 || n > 100 {
				return &fnmarket.Error{Code: fnmarket.EINVALID, Message: "bad limit", Fields: map[string]string{"limit": "must be between 1 and 100"}}
			}
			limit = n
		}
		ds, err := s.WebhookEndpoints.Deliveries(c.Request().Context(), accountID(c), c.Param("id"), c.QueryParam("cursor"), limit+1)
		if err != nil {
			return err
		}
		out := list[deliveryJSON]{Items: []deliveryJSON{}}
		for i, d := range ds {
			if i == limit {
				out.NextCursor = ds[i-1].ID
				break
			}
			j := deliveryJSON{ID: d.ID, EventID: d.EventID, Type: d.Type, Status: d.Status, Attempts: d.Attempts,
				LastStatusCode: d.LastStatusCode, NextAttemptAt: rfc3339Ptr(d.NextAttemptAt), CreatedAt: rfc3339(d.CreatedAt)}
			if d.LastError != "" {
				e := d.LastError
				j.LastError = &e
			}
			out.Items = append(out.Items, j)
		}
		return c.JSON(http.StatusOK, out)
	}
}

func (s *Server) handleRetryDelivery() echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.WebhookEndpoints.RetryDelivery(c.Request().Context(), accountID(c), c.Param("id"), c.Param("delivery_id")); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, acceptedJSON{Accepted: true})
	}
}

func (s *Server) handleTestWebhook() echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := s.WebhookEndpoints.SendTest(c.Request().Context(), accountID(c), c.Param("id"))
		if err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, acceptedJSON{Accepted: true, EventID: id})
	}
}
