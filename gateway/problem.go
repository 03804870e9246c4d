package gateway

// Headers the gateway adds to every answer.
const (
	headerInvocationID = "X-Invocation-Id"
	headerComputeMs    = "X-Compute-Ms"
	headerCost         = "X-Cost"
)
