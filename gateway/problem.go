package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/fnmarket/fnmarket"
)

// Headers the gateway adds to every answer.
const (
	headerInvocationID = "X-Invocation-Id"
	headerComputeMs    = "X-Compute-Ms"
)

// problem is an RFC 9457 problem document, as API.md describes errors.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// writeProblem answers err as application/problem+json and returns the
// status sent. The status comes from fnmarket.HTTPStatus, the one mapping
// the API shares; internal causes are never shown.
func writeProblem(w http.ResponseWriter, err error) int {
	code := fnmarket.ErrorCode(err)
	status := fnmarket.HTTPStatus(code)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: fnmarket.ErrorMessage(err),
		Code:   code,
	})
	return status
}
