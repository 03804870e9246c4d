package api

import (
	"maps"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/webhooks"
)

// operation describes one route for the OpenAPI document.
type operation struct {
	id                    string // operationId, camelCase
	method, path, summary string
	auth                  string // "", "session", "apikey", "stripe"
	body                  string // request schema name, or ""
	status                int
	answer                string   // response schema name, or ""
	query                 []string // optional query parameters (strings)
}

// operations is every route fnmarket serves, the gateway and operations
// routes included. TestOpenAPICoversRoutes fails when a served route is
// missing here.
var operations = []operation{
	{"getHealth", "GET", "/healthz", "Liveness: the process is up", "", "", 200, "Status", nil},
	{"getReady", "GET", "/readyz", "Readiness: database and Redis reachable", "", "", 200, "Status", nil},
	{"getMetrics", "GET", "/metrics", "Prometheus metrics; served only on FNMARKET_METRICS_ADDR, never on the public address", "", "", 200, "", nil},
	{"getOpenAPI", "GET", "/api/v1/openapi.json", "This document", "", "", 200, "", nil},
	{"signup", "POST", "/api/v1/auth/signup", "Create an account and start a session", "", "Signup", 201, "Session", nil},
	{"login", "POST", "/api/v1/auth/login", "Start a session", "", "Login", 200, "Session", nil},
	{"logout", "POST", "/api/v1/auth/logout", "End the session the request carries, on every replica, and clear the cookies", "", "", 204, "", nil},
	{"changePassword", "POST", "/api/v1/auth/password", "Change the password; ends every earlier session and answers a new one", "session", "NewPassword", 200, "Session", nil},
	{"getMe", "GET", "/api/v1/me", "The signed-in account", "session", "", 200, "Account", nil},
	{"becomeVendor", "POST", "/api/v1/vendor", "Become a vendor", "session", "VendorRequest", 201, "Vendor", nil},
	{"createFunction", "POST", "/api/v1/functions", "Create a function with version 1, unpublished", "session", "CreateFunction", 201, "Function", nil},
	{"listFunctions", "GET", "/api/v1/functions", "The caller's own functions", "session", "", 200, "FunctionList", nil},
	{"getFunction", "GET", "/api/v1/functions/{id}", "One of the caller's functions with its versions", "session", "", 200, "Function", nil},
	{"updateFunction", "PATCH", "/api/v1/functions/{id}", "Change a function's description", "session", "PatchFunction", 200, "Function", nil},
	{"addVersion", "POST", "/api/v1/functions/{id}/versions", "Add an immutable version", "session", "VersionInput", 201, "Version", nil},
	{"publishFunction", "POST", "/api/v1/functions/{id}/publish", "Publish a version", "session", "Publish", 200, "Function", nil},
	{"unpublishFunction", "POST", "/api/v1/functions/{id}/unpublish", "Unpublish; calls then get 404", "session", "", 200, "Function", nil},
	{"getErrorRateAlert", "GET", "/api/v1/functions/{id}/error-rate-alert", "The function's error-rate alert (404 when none)", "session", "", 200, "ErrorRateAlert", nil},
	{"setErrorRateAlert", "PUT", "/api/v1/functions/{id}/error-rate-alert", "Raise function.error_rate_high once per window when errors / calls over window_minutes (whole hours) reach percent", "session", "ErrorRateAlertInput", 200, "ErrorRateAlert", nil},
	{"deleteErrorRateAlert", "DELETE", "/api/v1/functions/{id}/error-rate-alert", "Remove the function's error-rate alert", "session", "", 204, "", nil},
	{"listAudit", "GET", "/api/v1/audit", "The caller's audit log, newest first: sign-ups, logins (failed too), key, cap, payment, webhook and function changes; append-only", "session", "", 200, "AuditList", []string{"cursor", "limit"}},
	{"getFunctionLogs", "GET", "/api/v1/functions/{id}/logs", "Recent stderr and runtime log lines of a wasm function version (default the published one)", "session", "", 200, "LogList", []string{"version"}},
	{"searchCatalog", "GET", "/api/v1/catalog", "Search published functions", "", "", 200, "ListingList", []string{"q", "cursor", "limit"}},
	{"getListing", "GET", "/api/v1/catalog/{vendor}/{name}", "One published function and how to call it", "", "", 200, "Listing", nil},
	{"getNextCallCost", "GET", "/api/v1/catalog/{vendor}/{name}/next-call", "What the caller's next call of a published function will cost at its position among the caller's calls of it this month: per_call (0 when free), cost_at_1ms, worst_case = per_call + timeout_ms x per_compute_ms", "session", "", 200, "NextCall", nil},
	{"quotePricing", "POST", "/api/v1/pricing/quote", "What calls in one month would cost, priced by billing's rule, at pricing sent or a published function's", "", "QuoteRequest", 200, "Quote", nil},
	{"createKey", "POST", "/api/v1/keys", "Create an API key; the key is shown only here", "session", "CreateKey", 201, "Key", nil},
	{"listKeys", "GET", "/api/v1/keys", "The caller's API keys", "session", "", 200, "KeyList", nil},
	{"updateKey", "PATCH", "/api/v1/keys/{id}", "Change a key's settings (a merge patch: a member present is set, null clears it, an absent one stays), validated as at creation; the secret and the month's spend stay; every gateway applies the change within 2 s, a lowered cap from the next call it admits", "session", "UpdateKey", 200, "Key", nil},
	{"revokeKey", "DELETE", "/api/v1/keys/{id}", "Revoke a key (its current and previous secret); every gateway refuses it within 2 s", "session", "", 204, "", nil},
	{"rotateKey", "POST", "/api/v1/keys/{id}/rotate", "Give a key a new secret, shown only here; same id, so spend, cap, scopes and limits carry over; the old secret works for grace_seconds (0 to 30 days; rotating again ends an earlier grace now)", "session", "RotateKey", 201, "Key", nil},
	{"createWebhook", "POST", "/api/v1/webhooks", "Add an outbound webhook endpoint (https; at most 20 per account); the whsec_ signing secret is shown only here", "session", "CreateWebhook", 201, "WebhookEndpoint", nil},
	{"listWebhooks", "GET", "/api/v1/webhooks", "The caller's webhook endpoints, with why one was disabled", "session", "", 200, "WebhookEndpointList", nil},
	{"deleteWebhook", "DELETE", "/api/v1/webhooks/{id}", "Delete an endpoint; nothing more is sent to it", "session", "", 204, "", nil},
	{"listWebhookDeliveries", "GET", "/api/v1/webhooks/{id}/deliveries", "An endpoint's deliveries, newest first", "session", "", 200, "WebhookDeliveryList", []string{"cursor", "limit"}},
	{"retryWebhookDelivery", "POST", "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", "Send a pending or failed delivery again now, with the same webhook-id", "session", "", 202, "Accepted", nil},
	{"enableWebhook", "POST", "/api/v1/webhooks/{id}/enable", "Enable again an endpoint that failing deliveries disabled: it gets events from now on and its failed deliveries can be retried (events raised while it was disabled were not queued for it)", "session", "", 200, "WebhookEndpoint", nil},
	{"testWebhook", "POST", "/api/v1/webhooks/{id}/test", "Send a webhook.test event to this endpoint only", "session", "", 202, "Accepted", nil},
	{"getBilling", "GET", "/api/v1/billing", "The account's standing, card on file, prepaid balance (never below zero), spend cap and month to date (the upcoming invoice's total in currency)", "session", "", 200, "AccountBilling", nil},
	{"setSpendCap", "PUT", "/api/v1/billing/spend-cap", "Set the account's monthly spend cap over all its keys (null removes it)", "session", "SpendCapInput", 200, "AccountBilling", nil},
	{"addPaymentMethod", "POST", "/api/v1/billing/payment-method", "Start Stripe Checkout (setup mode) to put a card on file; 409 conflict when payments are not configured", "session", "", 200, "CheckoutLink", nil},
	{"buyCredits", "POST", "/api/v1/billing/credits", "Start Stripe Checkout (payment mode) to buy prepaid credit, 0.50 to 10000.00; 409 conflict when payments are not configured", "session", "CreditsInput", 200, "CheckoutLink", nil},
	{"getUsage", "GET", "/api/v1/usage", "The caller's usage (granularity hour or day)", "session", "", 200, "UsageList", []string{"from", "to", "granularity"}},
	{"getVendorUsage", "GET", "/api/v1/vendor/usage", "Usage of the vendor's functions, summed over consumers", "session", "", 200, "UsageList", []string{"from", "to", "granularity"}},
	{"getFunctionLatency", "GET", "/api/v1/vendor/functions/{id}/latency", "p50/p99 compute-ms of a vendor's function over time", "session", "", 200, "LatencyList", []string{"from", "to", "granularity"}},
	{"listInvoices", "GET", "/api/v1/invoices", "The caller's invoices", "session", "", 200, "InvoiceList", nil},
	{"getUpcomingInvoice", "GET", "/api/v1/invoices/upcoming", "The running month so far, status preview", "session", "", 200, "UpcomingInvoice", nil},
	{"getInvoice", "GET", "/api/v1/invoices/{id}", "One invoice with its lines", "session", "", 200, "Invoice", nil},
	{"listStatements", "GET", "/api/v1/vendor/statements", "The vendor's monthly statements", "session", "", 200, "StatementList", nil},
	{"startStripeOnboarding", "POST", "/api/v1/vendor/stripe/onboard", "Start Stripe Connect onboarding; answers a URL", "session", "Onboard", 200, "OnboardLink", nil},
	{"stripeWebhook", "POST", "/webhooks/stripe", "Stripe events, signature checked", "stripe", "", 200, "WebhookReceived", nil},
}

// gatewayPaths are the invocation routes, served for every method, with the
// operationId prefix of each.
var gatewayPaths = []struct{ path, id string }{
	{"/v1/invoke/{vendor}/{function}", "invoke"},
	{"/v1/invoke/{vendor}/{function}/{rest}", "invokePath"},
}

// Schemas: answers declare every field that is always present as required
// and mark the ones that may be null; requests require what handlers
// require.
var schemas = map[string]any{
	"Problem": obj(map[string]any{"type": str(), "title": str(), "status": integer(), "detail": str(), "code": str(),
		"errors": map[string]any{"type": "object", "additionalProperties": str()}}, "type", "title", "status", "code"),
	"Status":        obj(map[string]any{"status": str()}, "status"),
	"Signup":        obj(map[string]any{"email": str(), "password": str(), "name": str()}, "email", "password", "name"),
	"Login":         obj(map[string]any{"email": str(), "password": str()}, "email", "password"),
	"NewPassword":   obj(map[string]any{"current_password": str(), "new_password": str()}, "current_password", "new_password"),
	"Session":       obj(map[string]any{"token": str(), "expires_at": str(), "account": ref("Account")}, "token", "expires_at", "account"),
	"Vendor":        obj(map[string]any{"slug": str(), "display_name": str(), "created_at": str(), "payouts": enum("unavailable", "not_connected", "connected")}, "slug", "display_name", "created_at", "payouts"),
	"VendorRequest": obj(map[string]any{"slug": str(), "display_name": str()}, "slug", "display_name"),
	"Account": obj(map[string]any{"id": str(), "email": str(), "name": str(), "created_at": str(),
		"vendor": map[string]any{"nullable": true, "allOf": []any{ref("Vendor")}}}, "id", "email", "name", "created_at", "vendor"),
	"Money": map[string]any{"type": "string", "pattern": `^[0-9]+(\.[0-9]+)?$`, "example": "0.0001"},
	"SignedMoney": map[string]any{"type": "string", "pattern": `^-?[0-9]+(\.[0-9]+)?$`, "example": "-1.75",
		"description": "an amount that can be negative: adjustments that give back, credit applied"},
	"Currency": map[string]any{"type": "string", "description": "ISO 4217 code of a two-decimal currency billing supports (USD, EUR, GBP, CAD, AUD, NZD, CHF, SEK, NOK, DKK, SGD)",
		"example": "USD"},
	"Tier": obj(map[string]any{"up_to": integer(), "per_call": ref("Money")}, "up_to", "per_call"),
	"PricingInput": obj(map[string]any{"currency": ref("Currency"), "per_call": ref("Money"), "per_compute_ms": ref("Money"),
		"free_calls_per_month": integer(), "tiers": arr(ref("Tier"))}, "per_compute_ms"),
	"Pricing": obj(map[string]any{"currency": ref("Currency"), "per_call": ref("Money"), "per_compute_ms": ref("Money"),
		"free_calls_per_month": integer(), "tiers": arr(ref("Tier"))}, "currency", "per_call", "per_compute_ms", "free_calls_per_month"),
	"VersionInput": obj(map[string]any{"backend": ref("BackendInput"), "pricing": ref("PricingInput"), "timeout_ms": integer(), "rate_limit_per_second": integer()}, "backend", "pricing"),
	"CreateFunction": obj(map[string]any{"name": str(), "description": str(), "backend": ref("BackendInput"), "pricing": ref("PricingInput"),
		"timeout_ms": integer(), "rate_limit_per_second": integer()}, "name", "backend", "pricing"),
	"PatchFunction": obj(map[string]any{"description": str()}, "description"),
	"Publish":       obj(map[string]any{"version": integer()}, "version"),
	"Version": obj(map[string]any{"version": integer(), "backend": ref("Backend"), "pricing": ref("Pricing"), "timeout_ms": integer(),
		"rate_limit_per_second": integer(), "ever_published": boolean(), "created_at": str()},
		"version", "backend", "pricing", "timeout_ms", "rate_limit_per_second", "ever_published", "created_at"),
	"Function": obj(map[string]any{"id": str(), "vendor": str(), "name": str(), "description": str(),
		"published_version": nullable(integer()), "versions": arr(ref("Version")), "created_at": str(), "updated_at": str()},
		"id", "vendor", "name", "description", "published_version", "versions", "created_at", "updated_at"),
	"FunctionList": listOf("Function"),
	"Listing": obj(map[string]any{"vendor": str(), "vendor_name": str(), "name": str(), "description": str(), "pricing": ref("Pricing"),
		"published_version": integer(), "timeout_ms": integer(), "invoke_url": str(), "curl": str()},
		"vendor", "vendor_name", "name", "description", "pricing", "published_version", "timeout_ms", "invoke_url"),
	"ListingList": listOf("Listing"),
	"QuoteRequest": obj(map[string]any{"pricing": ref("PricingInput"),
		"function": described(str(), "a published function, \"vendor/name\", instead of pricing"),
		"version":  described(integer(), "with function: a version that was published (default the live one)"),
		"calls":    described(integer(), "calls in the month, 0 to 1000000000"), "compute_ms_per_call": described(integer(), "compute-ms of each call, 0 to 900000"),
		"calls_before": described(integer(), "calls of the function already made this month (default 0): they use up free calls first and graduated tiers continue after them")},
		"calls", "compute_ms_per_call"),
	"Quote": obj(map[string]any{"currency": ref("Currency"), "calls": integer(), "free_calls": integer(), "billable_calls": integer(), "compute_ms": integer(),
		"per_call_cost": ref("Money"), "compute_cost": ref("Money"), "total": ref("Money"),
		"total_rounded": ref("Money")},
		"currency", "calls", "free_calls", "billable_calls", "compute_ms", "per_call_cost", "compute_cost", "total", "total_rounded"),
	"NextCall": obj(map[string]any{"function": str(), "version": integer(), "currency": ref("Currency"),
		"position":        described(integer(), "the caller's calls of the function this month: the next call takes this position"),
		"free_calls_left": described(integer(), "free calls left this month, the next one included"),
		"per_call":        ref("Money"),
		"per_compute_ms":  ref("Money"), "cost_at_1ms": ref("Money"),
		"timeout_ms": integer(), "worst_case": ref("Money"),
		"formula": described(str(), "the price in words")},
		"function", "version", "currency", "position", "free_calls_left", "per_call", "per_compute_ms", "cost_at_1ms", "timeout_ms", "worst_case", "formula"),
	"AlertThresholds": described(map[string]any{"type": "array", "items": map[string]any{"type": "integer", "minimum": 1, "maximum": 100}, "maxItems": 5, "minItems": 1},
		"percents of the cap that raise usage.threshold_reached, ascending and unique (default [80, 100])"),
	"CreateKey": obj(map[string]any{"name": str(), "monthly_spend_cap": ref("Money"), "alert_thresholds": ref("AlertThresholds"),
		"expires_at":            described(str(), "RFC 3339, in the future; calls after it get 401 key_expired"),
		"allowed_functions":     described(arr(str()), "vendor/name of published functions the key may call (at most 50); empty or absent: all"),
		"rate_limit_per_second": described(integer(), "the key's own limit, 1 to the platform default; 0 or absent: the default")}, "name"),
	"UpdateKey": described(minProperties(1, obj(map[string]any{"name": str(), "monthly_spend_cap": nullable(ref("Money")), "alert_thresholds": nullable(ref("AlertThresholds")),
		"expires_at":            nullable(described(str(), "RFC 3339, in the future; null: never")),
		"allowed_functions":     nullable(described(arr(str()), "vendor/name of published functions the key may call (at most 50); empty or null: all")),
		"rate_limit_per_second": nullable(described(integer(), "the key's own limit, 1 to the platform default; 0 or null: the default"))})),
		"a merge patch: name at least one member"),
	"RotateKey": obj(map[string]any{"grace_seconds": described(integer(), "how long the old secret keeps working, 0 (ends it now) to 2592000")}, "grace_seconds"),
	"ErrorRateAlertInput": obj(map[string]any{"percent": described(integer(), "1 to 100"),
		"window_minutes": described(integer(), "whole hours, 60 to 10080")}, "percent", "window_minutes"),
	"ErrorRateAlert": obj(map[string]any{"function_id": str(), "percent": integer(), "window_minutes": integer()}, "function_id", "percent", "window_minutes"),
	"AuditEntry": obj(map[string]any{"at": str(), "actor": described(str(), "the account that acted"), "action": str(),
		"target": described(str(), "what was acted on: a key or function id, an email"), "ip": described(str(), "the client address (empty when no client acted, e.g. a Stripe event)"),
		"detail": str()}, "at", "actor", "action", "target", "ip"),
	"AuditList": listOf("AuditEntry"),
	"Key": obj(map[string]any{"id": str(), "name": str(), "prefix": str(), "key": str(), "monthly_spend_cap": nullable(ref("Money")),
		"created_at": str(), "last_used_at": nullable(str()), "revoked_at": nullable(str()), "alert_thresholds": ref("AlertThresholds"),
		"expires_at": nullable(str()), "allowed_functions": arr(str()), "rate_limit_per_second": integer(),
		"previous_expires_at": described(nullable(str()), "when the secret the last rotation replaced stops (or stopped) working; null if never rotated or revoked"),
		"spend_this_month": described(map[string]any{"type": "object", "additionalProperties": ref("Money")},
			"in lists, when the server reports it: what the key spent this UTC month, exact, per currency (e.g. {\"USD\": \"0.0213\"}; empty when nothing)")},
		"id", "name", "prefix", "monthly_spend_cap", "created_at", "last_used_at", "revoked_at",
		"expires_at", "allowed_functions", "rate_limit_per_second", "previous_expires_at"),
	"KeyList": listOf("Key"),
	"UsageRow": obj(map[string]any{"function": str(), "function_id": str(), "version": integer(), "period_start": str(), "calls": integer(),
		"errors": integer(), "compute_ms": integer(), "cost": ref("Money"), "currency": ref("Currency")},
		"function", "function_id", "version", "period_start", "calls", "errors", "compute_ms", "cost", "currency"),
	"UsageList":    listOf("UsageRow"),
	"LatencyList":  listOf("LatencyPoint"),
	"LatencyPoint": obj(map[string]any{"period_start": str(), "calls": integer(), "p50_ms": integer(), "p99_ms": integer()}, "period_start", "calls", "p50_ms", "p99_ms"),
	"InvoiceLine": obj(map[string]any{"kind": described(enum("usage", "adjustment", "carried_forward", "credit"),
		"usage prices the invoice's month; adjustment late usage of an earlier month; carried_forward an earlier invoice under the minimum charge; "+
			"credit the prepaid credit the usage of period_start's month consumed (a negative amount, no function)"), "period_start": str(),
		"function": str(), "version": integer(), "calls": integer(), "free_calls": integer(),
		"billable_calls": integer(), "compute_ms": integer(), "amount": ref("SignedMoney"), "carried_invoice_id": str()},
		"kind", "period_start", "function", "version", "calls", "free_calls", "billable_calls", "compute_ms", "amount"),
	"Invoice":         obj(invoiceProps(), invoiceRequired...),
	"UpcomingInvoice": obj(with(invoiceProps(), "other_currencies", arr(ref("Invoice"))), invoiceRequired...),
	"InvoiceList":     listOf("Invoice"),
	"StatementLine":   obj(map[string]any{"function": str(), "gross": ref("Money")}, "function", "gross"),
	"Statement": obj(map[string]any{"period_start": str(), "currency": ref("Currency"), "gross": ref("Money"), "platform_fee": ref("Money"), "net": ref("Money"),
		"collected": ref("Money"), "paid_out": ref("Money"),
		"payout_status": enum("pending", "partial", "paid"), "lines": arr(ref("StatementLine"))},
		"period_start", "currency", "gross", "platform_fee", "net", "collected", "paid_out", "payout_status"),
	"StatementList": listOf("Statement"),
	"PaymentMethod": obj(map[string]any{"brand": str(), "last4": str()}, "brand", "last4"),
	"AccountBilling": obj(map[string]any{
		"standing":          described(enum("active", "free_only", "suspended"), "active: every call is admitted; free_only: no card yet, only free calls or calls prepaid credit covers; suspended: an invoice is past due"),
		"payment_method":    nullable(ref("PaymentMethod")),
		"balance":           ref("Money"),
		"currency":          ref("Currency"),
		"monthly_spend_cap": nullable(ref("Money")),
		"month_to_date":     ref("Money"),
		"alert_thresholds":  ref("AlertThresholds")},
		"standing", "payment_method", "balance", "currency", "monthly_spend_cap", "month_to_date"),
	"SpendCapInput": obj(map[string]any{"monthly_spend_cap": nullable(ref("Money")),
		"alert_thresholds": described(ref("AlertThresholds"), "when present, replaces the account's thresholds")}, "monthly_spend_cap"),
	"CreditsInput":    obj(map[string]any{"amount": ref("Money")}, "amount"),
	"CheckoutLink":    obj(map[string]any{"url": str()}, "url"),
	"Onboard":         obj(map[string]any{"return_url": str()}, "return_url"),
	"OnboardLink":     obj(map[string]any{"url": str()}, "url"),
	"WebhookReceived": obj(map[string]any{"received": boolean()}, "received"),
	"CreateWebhook": obj(map[string]any{"url": described(str(), "https URL of the receiver (http and private addresses only where the server allows private upstreams)"),
		"events": described(arr(str()), "event types to receive, or [\"*\"] for all: "+strings.Join(webhooks.Subscribable, ", "))}, "url", "events"),
	"WebhookEndpoint": obj(map[string]any{"id": str(), "url": str(), "events": arr(str()),
		"secret":          described(str(), "whsec_ and the base64 of 32 random bytes; only in the create answer"),
		"created_at":      str(),
		"disabled_at":     nullable(str()),
		"disabled_reason": described(nullable(str()), "why the endpoint was disabled (every attempt failed for 5 days); null while enabled")},
		"id", "url", "events", "created_at", "disabled_at", "disabled_reason"),
	"WebhookEndpointList": listOf("WebhookEndpoint"),
	"WebhookDelivery": obj(map[string]any{"id": str(), "event_id": described(str(), "the webhook-id of every attempt"), "type": str(),
		"status": enum(webhooks.StatusPending, webhooks.StatusDelivered, webhooks.StatusFailed), "attempts": integer(),
		"last_status_code": nullable(integer()), "last_error": nullable(str()), "next_attempt_at": nullable(str()), "created_at": str()},
		"id", "event_id", "type", "status", "attempts", "last_status_code", "last_error", "next_attempt_at", "created_at"),
	"WebhookDeliveryList": listOf("WebhookDelivery"),
	"Accepted":            obj(map[string]any{"accepted": boolean(), "event_id": str()}, "accepted"),
	"LogLine":             obj(map[string]any{"time": str(), "invocation_id": str(), "source": enum("stderr", "runtime"), "text": str()}, "time", "invocation_id", "source", "text"),
	"LogList":             listOf("LogLine"),
}

var invoiceRequired = []string{"id", "period_start", "period_end", "status", "currency", "subtotal", "credit_applied", "total", "total_cents", "lines",
	"stripe_invoice_id", "sync_status", "usage_through", "created_at"}

func invoiceProps() map[string]any {
	return map[string]any{"id": str(), "period_start": str(), "period_end": str(), "status": described(str(), "draft, open, paid, void, or preview for the running month"),
		"currency": ref("Currency"), "subtotal": ref("SignedMoney"), "credit_applied": ref("Money"), "total": ref("SignedMoney"),
		"total_cents": integer(), "lines": arr(ref("InvoiceLine")),
		"stripe_invoice_id": str(), "sync_status": described(str(), "none, pending, synced or failed: where the invoice stands with Stripe"), "usage_through": str(), "created_at": str()}
}

func described(m map[string]any, d string) map[string]any { m["description"] = d; return m }

// minProperties makes an object schema need at least n members (a merge
// patch, where none is required on its own).
func minProperties(n int, m map[string]any) map[string]any { m["minProperties"] = n; return m }

func with(m map[string]any, k string, v any) map[string]any { m[k] = v; return m }

func str() map[string]any     { return map[string]any{"type": "string"} }
func integer() map[string]any { return map[string]any{"type": "integer", "format": "int64"} }
func boolean() map[string]any { return map[string]any{"type": "boolean"} }
func enum(values ...string) map[string]any {
	return map[string]any{"type": "string", "enum": values}
}
func arr(items any) map[string]any {
	return map[string]any{"type": "array", "items": items}
}
func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

// nullable marks a schema as allowing null; a reference is wrapped in allOf,
// as OpenAPI 3.0 ignores siblings of $ref.
func nullable(schema map[string]any) map[string]any {
	if _, isRef := schema["$ref"]; isRef {
		return map[string]any{"nullable": true, "allOf": []any{schema}}
	}
	out := map[string]any{"nullable": true}
	for k, v := range schema {
		out[k] = v
	}
	return out
}
func obj(props map[string]any, required ...string) map[string]any {
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}
func listOf(name string) map[string]any {
	return obj(map[string]any{"items": arr(ref(name)), "next_cursor": str()}, "items", "next_cursor")
}

// OpenAPI returns the OpenAPI 3 document of every route, with the backend
// schemas made of what kinds says each backend kind takes and shows.
func OpenAPI(kinds *backend.Registry) map[string]any {
	input, stored := map[string]any{"type": enum(kinds.Types()...)}, map[string]any{"type": enum(kinds.Types()...)}
	for _, t := range kinds.Types() {
		k, _ := kinds.Kind(t)
		sc := k.Schema()
		maps.Copy(input, sc.Input)
		maps.Copy(stored, sc.Stored)
	}
	components := maps.Clone(schemas)
	components["BackendInput"] = obj(input, "type")
	components["Backend"] = obj(stored, "type")
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
		op := map[string]any{"summary": o.summary, "operationId": o.id}
		var params []any
		for _, seg := range strings.Split(o.path, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": str()})
			}
		}
		for _, q := range o.query {
			params = append(params, map[string]any{"name": q, "in": "query", "required": false, "schema": str()})
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
	for _, gp := range gatewayPaths {
		p := gp.path
		for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			params := []any{}
			for _, seg := range strings.Split(p, "/") {
				if strings.HasPrefix(seg, "{") {
					params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": str(),
						"description": "function may carry @version to pin one that was published"})
				}
			}
			params = append(params, map[string]any{"name": "Idempotency-Key", "in": "header", "required": false,
				"schema":      map[string]any{"type": "string", "minLength": 1, "maxLength": 255, "pattern": `^[ -~]+$`},
				"description": "makes the call safe to retry: the first answer is kept 24 h per API key and replayed (Idempotent-Replayed: true, not billed) for the same request; 422 idempotency_mismatch for another request, 409 conflict while the first runs"})
			add(p, m, map[string]any{
				"operationId": gp.id + m[:1] + strings.ToLower(m[1:]),
				"summary":     "Invoke a published function (billed per call and compute-ms)",
				"security":    []any{map[string]any{"apiKey": []any{}}, map[string]any{"apiKeyBearer": []any{}}},
				"parameters":  params,
				"responses": map[string]any{
					"default": map[string]any{"description": "the function's own answer (without Set-Cookie, with Content-Security-Policy: sandbox), with X-Invocation-Id and X-Compute-Ms"},
					"400":     problem, "401": problem, "402": problem, "404": problem, "408": problem, "413": problem, "429": problem, "502": problem,
					"409": map[string]any{"description": "a call with the same Idempotency-Key is still running (retry after Retry-After), or its answer was not kept", "content": problem["content"]},
					"422": map[string]any{"description": "idempotency_mismatch: the Idempotency-Key was first used with another request", "content": problem["content"]},
					"503": map[string]any{"description": "wasm functions at this server's capacity (memory budget or concurrency); not billed, retry after Retry-After", "content": problem["content"]},
					"504": problem,
				},
			})
		}
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "fnmarket", "version": "1.0.0", "description": "Function marketplace with metered pay-per-use billing."},
		"paths":   paths,
		"components": map[string]any{
			"schemas": components,
			"securitySchemes": map[string]any{
				"session":      map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
				"apiKey":       map[string]any{"type": "apiKey", "in": "header", "name": "X-API-Key"},
				"apiKeyBearer": map[string]any{"type": "http", "scheme": "bearer"},
			},
		},
	}
}

func (s *Server) handleOpenAPI() echo.HandlerFunc {
	doc := OpenAPI(s.Backends)
	return func(c echo.Context) error { return c.JSON(http.StatusOK, doc) }
}
