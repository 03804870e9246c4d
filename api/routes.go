package api

// routes lists every route the API serves; the OpenAPI document must list
// the same (TestOpenAPICoversRoutes).
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.handleHealth())
	e.GET("/api/v1/openapi.json", s.handleOpenAPI())

	e.POST("/api/v1/auth/signup", s.handleSignup())
	e.POST("/api/v1/auth/login", s.handleLogin())
	e.POST("/api/v1/auth/logout", s.handleLogout())

	e.GET("/api/v1/catalog", s.handleCatalogSearch())
	e.GET("/api/v1/catalog/:vendor/:name", s.handleCatalogListing())
	e.POST("/api/v1/pricing/quote", s.handleQuote())

	if s.Webhooks != nil {
		e.POST("/webhooks/stripe", s.handleStripeWebhook())
	}

	a := e.Group("/api/v1")
	auth := s.requireSession
	a.POST("/auth/password", s.handleChangePassword(), auth)
	a.GET("/me", s.handleMe(), auth)
	a.POST("/vendor", s.handleBecomeVendor(), auth)

	a.POST("/functions", s.handleCreateFunction(), auth)
	a.GET("/functions", s.handleListFunctions(), auth)
	a.GET("/functions/:id", s.handleGetFunction(), auth)
	a.PATCH("/functions/:id", s.handlePatchFunction(), auth)
	a.POST("/functions/:id/versions", s.handleAddVersion(), auth)
	a.POST("/functions/:id/publish", s.handlePublish(), auth)
	a.POST("/functions/:id/unpublish", s.handleUnpublish(), auth)
	if s.ErrorAlerts != nil {
		a.GET("/functions/:id/error-rate-alert", s.handleGetErrorAlert(), auth)
		a.PUT("/functions/:id/error-rate-alert", s.handleSetErrorAlert(), auth)
		a.DELETE("/functions/:id/error-rate-alert", s.handleDeleteErrorAlert(), auth)
	}
	if s.Audit != nil {
		a.GET("/audit", s.handleAudit(), auth)
	}
	if s.FunctionLogs != nil {
		a.GET("/functions/:id/logs", s.handleFunctionLogs(), auth)
	}

	if cp := s.callPositions(); cp != nil {
		a.GET("/catalog/:vendor/:name/next-call", s.handleNextCall(cp), auth)
	}

	a.POST("/keys", s.handleCreateKey(), auth)
	a.GET("/keys", s.handleListKeys(), auth)
	a.PATCH("/keys/:id", s.handleUpdateKey(), auth)
	a.DELETE("/keys/:id", s.handleRevokeKey(), auth)
	a.POST("/keys/:id/rotate", s.handleRotateKey(), auth)

	if s.WebhookEndpoints != nil {
		a.POST("/webhooks", s.handleCreateWebhook(), auth)
		a.GET("/webhooks", s.handleListWebhooks(), auth)
		a.DELETE("/webhooks/:id", s.handleDeleteWebhook(), auth)
		a.GET("/webhooks/:id/deliveries", s.handleWebhookDeliveries(), auth)
		a.POST("/webhooks/:id/deliveries/:delivery_id/retry", s.handleRetryDelivery(), auth)
		a.POST("/webhooks/:id/test", s.handleTestWebhook(), auth)
		a.POST("/webhooks/:id/enable", s.handleEnableWebhook(), auth)
	}

	a.GET("/billing", s.handleGetBilling(), auth)
	a.PUT("/billing/spend-cap", s.handleSetSpendCap(), auth)
	a.POST("/billing/payment-method", s.handlePaymentMethodCheckout(), auth)
	a.POST("/billing/credits", s.handleCreditsCheckout(), auth)

	if s.Usage != nil {
		a.GET("/usage", s.handleUsage(false), auth)
		a.GET("/vendor/usage", s.handleUsage(true), auth)
		a.GET("/vendor/functions/:id/latency", s.handleLatency(), auth)
	}
	if s.Billing != nil {
		a.GET("/invoices", s.handleInvoices(), auth)
		a.GET("/invoices/upcoming", s.handleUpcoming(), auth)
		a.GET("/invoices/:id", s.handleInvoice(), auth)
		a.GET("/vendor/statements", s.handleStatements(), auth)
		a.POST("/vendor/stripe/onboard", s.handleStripeOnboard(), auth)
	}
}
