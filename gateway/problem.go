package gateway

import (
	"net/http"

	"github.com/fnmarket/fnmarket"
)

// Headers the gateway adds to every answer.
const (
	headerInvocationID = "X-Invocation-Id"
	headerComputeMs    = "X-Compute-Ms"
)

// writeProblem answers err as application/problem+json and returns the
// status sent; the shape and the code-to-status mapping are shared with the
// portal API.
func writeProblem(w http.ResponseWriter, err error) int { return fnmarket.WriteProblem(w, err) }
