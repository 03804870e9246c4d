package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// operation describes one route for the OpenAPI document.
type operation struct {
	method, path, summary string
	auth                  string // "", "session", "apikey", "stripe"
	body                  string // request schema name, or ""
	status                int
	answer                string // response schema name, or ""
}

// operations is every route fnmarket serves, the gateway and operations
// routes included. TestOpenAPICoversRoutes fails when a served route is
// missing here.
var operations = []operation{
	{"GET", "/healthz", "Liveness: the process is up", "", "", 200, ""},
	{"GET", "/readyz", "Readiness: database and Redis reachable", "", "", 200, ""},
	{"GET", "/metrics", "Prometheus metrics", "", "", 200, ""},
	{"GET", "/api/v1/openapi.json", "This document", "", "", 200, ""},
	{"POST", "/api/v1/auth/signup", "Create an account and start a session", "", "Signup", 201, "Session"},
	{"POST", "/api/v1/auth/login", "Start a session", "", "Login", 200, "Session"},
	{"POST", "/api/v1/auth/logout", "End a browser session (clears cookies)", "", "", 204, ""},
	{"GET", "/api/v1/me", "The signed-in account", "session", "", 200, "Account"},
	{"POST", "/api/v1/vendor", "Become a vendor", "session", "VendorRequest", 201, "Vendor"},
	{"POST", "/api/v1/functions", "Create a function with version 1, unpublished", "session", "CreateFunction", 201, "Function"},
	{"GET", "/api/v1/functions", "The caller's own functions", "session", "", 200, "FunctionList"},
	{"GET", "/api/v1/functions/{id}", "One of the caller's functions with its versions", "session", "", 200, "Function"},
	{"PATCH", "/api/v1/functions/{id}", "Change a function's description", "session", "PatchFunction", 200, "Function"},
	{"POST", "/api/v1/functions/{id}/versions", "Add an immutable version", "session", "VersionInput", 201, "Version"},
	{"POST", "/api/v1/functions/{id}/publish", "Publish a version", "session", "Publish", 200, "Function"},
	{"POST", "/api/v1/functions/{id}/unpublish", "Unpublish; calls then get 404", "session", "", 200, "Function"},
	{"GET", "/api/v1/functions/{id}/logs", "Recent stderr and runtime log lines of a wasm function version (?version=, default the published one)", "session", "", 200, "LogList"},
	{"GET", "/api/v1/catalog", "Search published functions (q, cursor, limit)", "", "", 200, "ListingList"},
	{"GET", "/api/v1/catalog/{vendor}/{name}", "One published function and how to call it", "", "", 200, "Listing"},
	{"POST", "/api/v1/keys", "Create an API key; the key is shown only here", "session", "CreateKey", 201, "Key"},
	{"GET", "/api/v1/keys", "The caller's API keys", "session", "", 200, "KeyList"},
	{"DELETE", "/api/v1/keys/{id}", "Revoke a key; every gateway refuses it within 2 s", "session", "", 204, ""},
	{"GET", "/api/v1/usage", "The caller's usage (from, to, granularity=hour|day)", "session", "", 200, "UsageList"},
	{"GET", "/api/v1/vendor/usage", "Usage of the vendor's functions, summed over consumers", "session", "", 200, "UsageList"},
	{"GET", "/api/v1/vendor/functions/{id}/latency", "p50/p99 compute-ms of a vendor's function over time", "session", "", 200, "LatencyList"},
	{"GET", "/api/v1/invoices", "The caller's invoices", "session", "", 200, "InvoiceList"},
	{"GET", "/api/v1/invoices/upcoming", "The running month so far, status preview", "session", "", 200, "Invoice"},
	{"GET", "/api/v1/invoices/{id}", "One invoice with its lines", "session", "", 200, "Invoice"},
	{"GET", "/api/v1/vendor/statements", "The vendor's monthly statements", "session", "", 200, "StatementList"},
	{"POST", "/api/v1/vendor/stripe/onboard", "Start Stripe Connect onboarding; answers a URL", "session", "Onboard", 200, ""},
	{"POST", "/webhooks/stripe", "Stripe events, signature checked", "stripe", "", 200, ""},
}

// gatewayPaths are the invocation routes, served for every method.
var gatewayPaths = []string{"/v1/invoke/{vendor}/{function}", "/v1/invoke/{vendor}/{function}/{rest}"}

var schemas = map[string]any{
	"Problem": obj(map[string]any{"type": str(), "title": str(), "status": integer(), "detail": str(), "code": str(),
		"errors": map[string]any{"type": "object", "additionalProperties": str()}}),
	"Signup":        obj(map[string]any{"email": str(), "password": str(), "name": str()}, "email", "password", "name"),
	"Login":         obj(map[string]any{"email": str(), "password": str()}, "email", "password"),
	"Session":       obj(map[string]any{"token": str(), "expires_at": str(), "account": ref("Account")}),
	"Vendor":        obj(map[string]any{"slug": str(), "display_name": str(), "created_at": str(), "payouts": map[string]any{"type": "string", "enum": []string{"unavailable", "not_connected", "connected"}}}),
	"VendorRequest": obj(map[string]any{"slug": str(), "display_name": str()}, "slug", "display_name"),
	"Account": obj(map[string]any{"id": str(), "email": str(), "name": str(), "created_at": str(),
		"vendor": map[string]any{"nullable": true, "allOf": []any{ref("Vendor")}}}),
	"Money": map[string]any{"type": "string", "pattern": `^[0-9]+(\.[0-9]+)?$`, "example": "0.0001"},
	"Pricing": obj(map[string]any{"currency": str(), "per_call": ref("Money"), "per_compute_ms": ref("Money"),
		"free_calls_per_month": integer(), "tiers": arr(obj(map[string]any{"up_to": integer(), "per_call": ref("Money")}))}),
	"Backend": obj(map[string]any{"type": map[string]any{"type": "string", "enum": []string{"http", "wasm"}}, "url": str(),
		"module_base64": str(), "module_sha256": str(), "memory_pages": integer()}, "type"),
	"VersionInput":   obj(map[string]any{"backend": ref("Backend"), "pricing": ref("Pricing"), "timeout_ms": integer(), "rate_limit_per_second": integer()}, "backend", "pricing"),
	"CreateFunction": map[string]any{"allOf": []any{ref("VersionInput"), obj(map[string]any{"name": str(), "description": str()}, "name")}},
	"PatchFunction":  obj(map[string]any{"description": str()}, "description"),
	"Publish":        obj(map[string]any{"version": integer()}, "version"),
	"Version": obj(map[string]any{"version": integer(), "backend": ref("Backend"), "pricing": ref("Pricing"), "timeout_ms": integer(),
		"rate_limit_per_second": integer(), "ever_published": map[string]any{"type": "boolean"}, "created_at": str()}),
	"Function": obj(map[string]any{"id": str(), "vendor": str(), "name": str(), "description": str(),
		"published_version": map[string]any{"type": "integer", "nullable": true}, "versions": arr(ref("Version")), "created_at": str(), "updated_at": str()}),
	"FunctionList": listOf("Function"),
	"Listing": obj(map[string]any{"vendor": str(), "vendor_name": str(), "name": str(), "description": str(), "pricing": ref("Pricing"),
		"published_version": integer(), "timeout_ms": integer(), "invoke_url": str(), "curl": str()}),
	"ListingList": listOf("Listing"),
	"CreateKey":   obj(map[string]any{"name": str(), "monthly_spend_cap": ref("Money")}, "name"),
	"Key": obj(map[string]any{"id": str(), "name": str(), "prefix": str(), "key": str(), "monthly_spend_cap": ref("Money"),
		"created_at": str(), "last_used_at": str(), "revoked_at": str()}),
	"KeyList": listOf("Key"),
	"UsageRow": obj(map[string]any{"function": str(), "function_id": str(), "version": integer(), "period_start": str(), "calls": integer(),
		"errors": integer(), "compute_ms": integer(), "cost": ref("Money"), "currency": str()}),
	"UsageList":    listOf("UsageRow"),
	"LatencyList":  listOf("LatencyPoint"),
	"LatencyPoint": obj(map[string]any{"period_start": str(), "calls": integer(), "p50_ms": integer(), "p99_ms": integer()}),
	"InvoiceLine": obj(map[string]any{"kind": map[string]any{"type": "string", "enum": []string{"usage", "adjustment", "carried_forward"}}, "period_start": str(),
		"function": str(), "version": integer(), "calls": integer(), "free_calls": integer(),
		"billable_calls": integer(), "compute_ms": integer(), "amount": ref("Money")}),
	"Invoice": obj(map[string]any{"id": str(), "period_start": str(), "period_end": str(), "status": str(), "currency": str(),
		"subtotal": ref("Money"), "total": ref("Money"), "total_cents": integer(), "lines": arr(ref("InvoiceLine")), "stripe_invoice_id": str()}),
	"InvoiceList": listOf("Invoice"),
	"Statement": obj(map[string]any{"period_start": str(), "gross": ref("Money"), "platform_fee": ref("Money"), "net": ref("Money"),
		"payout_status": str()}),
	"StatementList": listOf("Statement"),
	"Onboard":       obj(map[string]any{"return_url": str()}),
	"LogLine":       obj(map[string]any{"time": str(), "invocation_id": str(), "source": map[string]any{"type": "string", "enum": []string{"stderr", "runtime"}}, "text": str()}),
	"LogList":       listOf("LogLine"),
}

func str() map[string]any     { return map[string]any{"type": "string"} }
func integer() map[string]any { return map[string]any{"type": "integer"} }
func arr(items any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}
func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }
func obj(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}
func listOf(name string) map[string]any {
	return obj(map[string]any{"items": arr(ref(name)), "next_cursor": str()})
}

// OpenAPI returns the OpenAPI 3 document of every route.
func OpenAPI() map[string]any {
	paths := map[string]any{}
	add := func(path, method string, op map[string]any) {
		p, _ := paths[path].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[path] = p
		}
		p[strings.ToLower(method)] = op
	}
	problem := map[string]any{"description": "problem", "content": map[string]any{"application/problem+json": map[string]any{"schema": ref("Problem")}}}
	for _, o := range operations {
		op := map[string]any{"summary": o.summary, "operationId": strings.ToLower(o.method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_").Replace(o.path)}
		var params []any
		for _, seg := range strings.Split(o.path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": str()})
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		switch o.auth {
		case "session":
			op["security"] = []any{map[string]any{"session": []any{}}}
		case "stripe":
			op["parameters"] = append(params, map[string]any{"name": "Stripe-Signature", "in": "header", "required": true, "schema": str()})
		}
		if o.body != "" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": ref(o.body)}}}
		}
		ok := map[string]any{"description": http.StatusText(o.status)}
		if o.answer != "" {
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": ref(o.answer)}}
		}
		op["responses"] = map[string]any{itoa(o.status): ok, "default": problem}
		add(o.path, o.method, op)
	}
	for _, p := range gatewayPaths {
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			params := []any{}
			for _, seg := range strings.Split(p, "/") {
				if strings.HasPrefix(seg, "{") {
					params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": str(),
						"description": "function may carry @version to pin one that was published"})
				}
			}
			add(p, m, map[string]any{
				"summary":    "Invoke a published function (billed per call and compute-ms)",
				"security":   []any{map[string]any{"apiKey": []any{}}, map[string]any{"apiKeyBearer": []any{}}},
				"parameters": params,
				"responses": map[string]any{
					"default": map[string]any{"description": "the function's own answer, with X-Invocation-Id and X-Compute-Ms"},
					"401":     problem, "402": problem, "404": problem, "413": problem, "429": problem, "502": problem, "504": problem,
				},
			})
		}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "fnmarket", "version": "1.0.0", "description": "Function marketplace with metered pay-per-use billing."},
		"paths":   paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{
				"session":      map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
				"apiKey":       map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
				"apiKeyBearer": map[string]any{"type": "http", "scheme": "bearer"},
			},
		},
	}
}

func (s *Server) handleOpenAPI() echo.HandlerFunc {
	doc := OpenAPI()
	return func(c echo.Context) error { return c.JSON(http.StatusOK, doc) }
}
