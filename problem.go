package fnmarket

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem document with fnmarket's stable code: the
// one error shape of the portal API and the gateway.
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
	code := ErrorCode(err)
	status := HTTPStatus(code)
	return Problem{
		Type:   "https://fnmarket.dev/problems/" + code,
		Title:  http.StatusText(status),
		Status: status,
		Detail: ErrorMessage(err),
		Code:   code,
		Errors: ErrorFields(err),
	}
}

// WriteProblem answers err as application/problem+json and returns the
// status sent.
func WriteProblem(w http.ResponseWriter, err error) int {
	p := ProblemFor(err)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
	return p.Status
}
