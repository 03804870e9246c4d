package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/accounts"
	"github.com/fnmarket/fnmarket/alerts"
	"github.com/fnmarket/fnmarket/api"
	"github.com/fnmarket/fnmarket/audit"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/billing"
	"github.com/fnmarket/fnmarket/catalog/catalogstore"
	"github.com/fnmarket/fnmarket/gateway"
	"github.com/fnmarket/fnmarket/internal/database"
	"github.com/fnmarket/fnmarket/internal/redisx"
	"github.com/fnmarket/fnmarket/metering"
	"github.com/fnmarket/fnmarket/wasm"
	"github.com/fnmarket/fnmarket/web"
	"github.com/fnmarket/fnmarket/webhooks"
)

// command is one of fnmarket's commands, as `fnmarket help` lists it.
type command struct{ name, args, summary string }

// commandList is every command, in the order help lists them.
func commandList() []command {
	return []command{
		{"serve", "[--demo]", "portal API, web pages, gateway and billing worker in one process; --demo seeds a small living marketplace"},
		{"api", "", "the portal API and web pages alone"},
		{"gateway", "", "the invocation gateway alone"},
		{"worker", "", "the billing worker alone (roll-up, Stripe sync, outbound webhooks)"},
		{"migrate", "", "apply schema migrations (every command also applies them at start)"},
		{"bill", "--period YYYY-MM [--through now]", "issue a month's invoices (safe to re-run)"},
		{"invoice", "--id ID --status paid|void [--detail TEXT]", "an operator marks an open invoice paid (out of band) or void; recorded in the invoice's events, told to Stripe"},
		{"probe", "URL", "exit 0 if URL answers 200 within 3 seconds (container health checks)"},
		{"help", "[COMMAND]", "this text, or one command's flags (same as fnmarket COMMAND -h)"},
	}
}

// envOnly are the settings read only from the environment (no flag).
const envOnly = `environment only (see README.md, Configuration):
  FNMARKET_JWT_SECRET               session signing key, 32+ chars; unset: generated once in the data dir
  FNMARKET_RATE_LIMIT_PER_KEY       default calls per second per API key; 0 means no limit (100)
  FNMARKET_ALLOW_PRIVATE_UPSTREAMS  let functions point at loopback or private addresses (false)
  FNMARKET_AUTH_RATE_PER_MINUTE     sign-ups and login attempts per client address per minute; 0: no limit (20)
  FNMARKET_TRUSTED_PROXIES          CIDRs whose X-Forwarded-For names the client address (unset: the connection's)
  FNMARKET_MAX_BODY_BYTES           largest request body the gateway forwards (6291456)
  FNMARKET_BODY_IDLE_TIMEOUT        a call's request body that sends nothing this long is cut, 408 (20s)
  FNMARKET_ADMISSION_TIMEOUT        how long admission waits for Redis before deciding locally (75ms; 2s on the embedded Redis)
  FNMARKET_ADMISSION_LEASES         admit calls in memory against leases of rate, positions and cap headroom taken from Redis; false: one Redis round trip per call (true)
  FNMARKET_GATEWAY_MAX_STALE        serve cached keys and routes this long past their age while the database is down (15m)
  FNMARKET_WASM_MEMORY_BUDGET_MB    total memory of wasm calls running at once (0: a quarter of the machine's)
  FNMARKET_WASM_MAX_CONCURRENCY     wasm calls running at once (0: GOMAXPROCS)
  FNMARKET_WASM_REUSE_MAX_CALLS     calls a reused wasm instance serves before it is replaced (0: 1000)
  FNMARKET_PLATFORM_FEE_RATE        the platform's share of vendor gross (0.20)
  FNMARKET_SUSPEND_AFTER_DAYS       with Stripe, days an issued invoice may stay unpaid before its account is suspended (14)
  FNMARKET_ROLLUP_INTERVAL          how often the worker moves counters into the database (2s)
  FNMARKET_WEBHOOK_POLL_INTERVAL    how often the worker looks for webhook events and retries that are due (1s)
  FNMARKET_SHUTDOWN_TIMEOUT         how long shutdown waits for in-flight work (20s)
  STRIPE_SECRET_KEY, STRIPE_API_BASE, STRIPE_WEBHOOK_SECRET   Stripe sync; unset: no sync
`

// writeUsage writes the list of commands.
func writeUsage(w io.Writer) {
	fmt.Fprint(w, "usage: fnmarket <command> [flags]\n\ncommands:\n")
	for _, c := range commandList() {
		fmt.Fprintf(w, "  %-8s  %s\n", c.name, c.summary)
		if c.args != "" {
			fmt.Fprintf(w, "  %-8s  fnmarket %s %s\n", "", c.name, c.args)
		}
	}
	fmt.Fprint(w, "\nfnmarket <command> -h lists the command's flags; each names the environment variable it defaults from.\n\n", envOnly)
}

// commandUsage writes one command's summary and flags (its -h).
func commandUsage(w io.Writer, name string, fs *flag.FlagSet) {
	for _, c := range commandList() {
		if c.name == name {
			args := c.args
			if fs != nil {
				args += " [flags]"
			}
			fmt.Fprintf(w, "usage: fnmarket %s %s\n\n%s\n", name, strings.TrimSpace(args), c.summary)
		}
	}
	if fs != nil {
		fmt.Fprint(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
}

// run is the whole program; main only supplies the process's context,
// arguments, environment and streams, so tests can start it on :0.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		writeUsage(stderr)
		return errors.New("no command given")
	}
	cmd := args[1]
	if cmd == "-h" || cmd == "--help" || cmd == "help" {
		if cmd == "help" && len(args) > 2 && args[2] != "help" && !strings.HasPrefix(args[2], "-") {
			// fnmarket help COMMAND is fnmarket COMMAND -h, on stdout.
			return run(ctx, []string{args[0], args[2], "-h"}, getenv, stdout, stdout)
		}
		writeUsage(stdout)
		return nil
	}
	if cmd == "probe" {
		if len(args) > 2 && (args[2] == "-h" || args[2] == "--help" || args[2] == "-help") {
			commandUsage(stderr, "probe", nil)
			return nil
		}
		return probe(ctx, args[2:])
	}
	switch cmd {
	case "serve", "api", "gateway", "worker", "migrate", "bill", "invoice":
	default:
		writeUsage(stderr)
		return fmt.Errorf("unknown command %q", cmd)
	}
	cfg, err := parseConfig(cmd, args[2:], getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	a := &app{cfg: cfg, log: log, clock: fnmarket.SystemClock{}, stdout: stdout}
	defer a.close()
	if err := a.openStores(ctx); err != nil {
		return err
	}
	switch cmd {
	case "migrate":
		fmt.Fprintln(stdout, "migrations applied")
		return nil
	case "bill":
		return a.bill(ctx)
	case "invoice":
		return a.setInvoiceStatus(ctx)
	}
	return a.serve(ctx, cmd)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// app holds the parts one process runs, in the order they are closed.
type app struct {
	cfg    config
	log    *slog.Logger
	clock  fnmarket.Clock
	stdout io.Writer

	db       *database.DB
	redis    *redisx.Conn
	accounts *accounts.Store
	catalog  *catalogstore.Store
	registry *prometheus.Registry
	billing  *billing.Biller
	wasm     *wasm.Runtime
	kinds    *backend.Registry
	wasmLogs *wasm.RedisLogs
	usage    *metering.Store
	meter    *metering.Meter // the gateway's, when this process runs one

	closers      []func()
	rollupPasses atomic.Int64
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

func (a *app) openStores(ctx context.Context) error {
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	db, err := database.Open(openCtx, a.cfg.DatabaseURL, a.cfg.DataDir)
	if err != nil {
		return err
	}
	a.db = db
	a.closers = append(a.closers, func() { _ = db.Close() })
	if err := db.Migrate(openCtx); err != nil {
		return err
	}
	a.accounts = accounts.NewStore(db, a.clock, 0)
	// Without Stripe every account is active and pays by invoice.
	a.accounts.SetBillingPolicy(accounts.BillingPolicy{PaymentsEnabled: a.cfg.StripeSecretKey != "",
		SuspendAfter: time.Duration(a.cfg.SuspendAfterDays) * 24 * time.Hour})
	a.catalog = catalogstore.NewStore(db, a.clock)
	return nil
}

func (a *app) openRedis(ctx context.Context) error {
	if a.redis != nil {
		return nil
	}
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := redisx.Open(openCtx, a.cfg.RedisURL)
	if err != nil {
		return err
	}
	a.redis = r
	a.closers = append(a.closers, func() { _ = r.Close() })
	return nil
}

func (a *app) serve(ctx context.Context, cmd string) error {
	if err := a.openRedis(ctx); err != nil {
		return err
	}
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	// Metrics name vendors and functions with their call counts: they are
	// served only on their own address (FNMARKET_METRICS_ADDR), never on the
	// public one.
	var metricsLn net.Listener
	if a.cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", a.cfg.MetricsAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen for metrics on %s: %w", a.cfg.MetricsAddr, err)
		}
	}
	base := "http://" + ln.Addr().String()
	if a.cfg.PublicURL == "" {
		a.cfg.PublicURL = base
	}
	if a.cfg.GatewayURL == "" {
		a.cfg.GatewayURL = a.cfg.PublicURL
	}
	parts, err := a.buildParts(ctx, cmd)
	if err != nil {
		_ = ln.Close()
		if metricsLn != nil {
			_ = metricsLn.Close()
		}
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	gw, _ := parts.gateway.(*gateway.Gateway)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { a.handleReady(w, r, gw, cmd != "gateway") })
	if parts.gateway != nil {
		mux.Handle("/v1/invoke/", parts.gateway)
	}
	if parts.api != nil {
		mux.Handle("/", parts.api)
	} else {
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			fnmarket.WriteProblem(w, fnmarket.Errorf(fnmarket.ENOTFOUND, "this process runs only the %s", cmd))
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if metricsLn != nil {
		mmux := http.NewServeMux()
		mmux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
		msrv := &http.Server{Handler: mmux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = msrv.Serve(metricsLn) }()
		a.closers = append(a.closers, func() { _ = msrv.Close() })
		fmt.Fprintf(a.stdout, "fnmarket %s metrics on http://%s/metrics\n", cmd, metricsLn.Addr())
	}
	if a.cfg.DebugAddr != "" {
		dbg := &http.Server{Addr: a.cfg.DebugAddr, Handler: pprofMux(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = dbg.ListenAndServe() }()
		a.closers = append(a.closers, func() { _ = dbg.Close() })
	}
	backend := "embedded SQLite + in-process Redis"
	if a.cfg.DatabaseURL != "" || a.cfg.RedisURL != "" {
		backend = fmt.Sprintf("database=%s redis=%s", a.db.Dialect, map[bool]string{true: "external", false: "in-process"}[a.cfg.RedisURL != ""])
	}
	fmt.Fprintf(a.stdout, "fnmarket %s listening on %s (%s)\n", cmd, base, backend)
	a.log.Info("started", "command", cmd, "addr", ln.Addr().String(), "database", string(a.db.Dialect))
	// Demo data is seeded through the running server's own API, after it
	// listens: seeding hashes a few passwords and records a week of calls,
	// which should not hold up the server's start. It stops with ctx.
	demoDone := make(chan struct{})
	if a.cfg.Demo {
		go func() {
			defer close(demoDone)
			if err := a.seedDemo(ctx, base); err != nil && ctx.Err() == nil {
				// The server stays up; the demo data is what is missing.
				a.log.Error("seeding demo data failed", "err", err)
				fmt.Fprintf(a.stdout, "demo: seeding failed: %v\n", err)
			}
		}()
	} else {
		close(demoDone)
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	// Ordered shutdown: stop accepting and drain in-flight calls, then stop
	// the parts (flush metering, finish the roll-up), then close stores.
	a.log.Info("shutting down")
	<-demoDone // seeding stops with ctx; its calls are in flight or done
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		a.log.Warn("shutdown: in-flight requests cut", "err", err)
	}
	for i := len(parts.stop) - 1; i >= 0; i-- {
		if err := parts.stop[i](sctx); err != nil {
			a.log.Error("shutdown step failed", "err", err)
		}
	}
	a.log.Info("stopped")
	return nil
}

// handleReady answers 200 {"status":"ready"} when the database and Redis
// answer. When one does not, it names what is down and what still works in
// {"status":"degraded","problems":[...]}: with 200 while the process can
// still do its job (a gateway keeps serving the keys and routes it has
// cached while the database is unreachable, up to FNMARKET_GATEWAY_MAX_STALE,
// and admits and spools calls while Redis is), so a load balancer does not
// pull every gateway out during a database outage; with 503 when it cannot
// (the API and worker need the database).
func (a *app) handleReady(w http.ResponseWriter, r *http.Request, gw *gateway.Gateway, needsDB bool) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var problems []string
	serving := true // false once a problem leaves this process unable to do its job
	if err := a.db.Ping(ctx); err != nil {
		if st := gatewayStoreStatus(gw); st.MaxStale > 0 && !needsDB {
			problems = append(problems, fmt.Sprintf("database: unreachable; serving cached keys and routes (up to %s past their age), unknown keys refused", st.MaxStale))
		} else if st.MaxStale > 0 {
			problems = append(problems, fmt.Sprintf("database: unreachable; the gateway serves cached keys and routes (up to %s past their age), unknown keys refused; the portal API is down", st.MaxStale))
			serving = false
		} else {
			problems = append(problems, "database: unreachable")
			serving = false
		}
	}
	if a.redis != nil {
		if err := a.redis.Ping(ctx).Err(); err != nil {
			if gw != nil {
				problems = append(problems, "redis: unreachable; calls admitted with per-process rate limits and metered to the local spool")
			} else {
				problems = append(problems, "redis: unreachable")
				serving = false
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if len(problems) > 0 {
		w.Header().Set("Cache-Control", "no-store")
		if !serving {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "degraded", "problems": problems})
		return
	}
	_, _ = io.WriteString(w, `{"status":"ready"}`)
}

func gatewayStoreStatus(gw *gateway.Gateway) gateway.StoreStatus {
	if gw == nil {
		return gateway.StoreStatus{}
	}
	return gw.StoreStatus()
}

// parts are the HTTP handlers and background loops one command runs; stop
// runs in reverse order of registration at shutdown, after the HTTP server
// has drained.
type parts struct {
	api     http.Handler
	gateway http.Handler
	stop    []func(context.Context) error
}

func (p *parts) onStop(f func(context.Context) error) { p.stop = append(p.stop, f) }

func (a *app) buildParts(ctx context.Context, cmd string) (*parts, error) {
	p := &parts{}
	// Stop order (reverse of registration): gateway, meter, webhooks, worker.
	if cmd == "serve" || cmd == "worker" {
		if err := a.startWorker(ctx, p, cmd == "serve"); err != nil {
			return nil, err
		}
		a.startWebhooks(p)
	}
	if cmd == "serve" || cmd == "gateway" {
		if err := a.startGateway(ctx, p); err != nil {
			return nil, err
		}
	}
	if cmd == "serve" || cmd == "api" {
		if err := a.buildAPI(ctx, p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// biller builds the billing engine (once per process).
func (a *app) biller() (*billing.Biller, error) {
	if a.billing != nil {
		return a.billing, nil
	}
	fee := a.cfg.PlatformFeeRate
	b, err := billing.New(billing.Config{
		DB: a.db, Catalog: a.catalog, Accounts: a.accounts, Clock: a.clock, Logger: a.log,
		Live:            a.usageStore(),
		PlatformFeeRate: &fee,
		Stripe:          billing.StripeConfig{SecretKey: a.cfg.StripeSecretKey, APIBase: a.cfg.StripeAPIBase, WebhookSecret: a.cfg.StripeWebhookSecret},
	})
	if err != nil {
		return nil, fmt.Errorf("start billing: %w", err)
	}
	a.billing = b
	return b, nil
}

// wasmRuntime starts the WebAssembly runtime (once per process), with its
// compilation cache under the data dir and modules in the database.
func (a *app) wasmRuntime(ctx context.Context) (*wasm.Runtime, error) {
	if a.wasm != nil {
		return a.wasm, nil
	}
	a.wasmLogs = wasm.NewRedisLogs(a.redis, a.cfg.RedisPrefix, 500, a.log)
	a.closers = append(a.closers, a.wasmLogs.Close)
	rt, err := wasm.New(ctx, wasm.Config{
		CacheDir: filepath.Join(a.cfg.DataDir, "wasm-cache"), Logger: a.log, LogSink: a.wasmLogs.Sink,
		MemoryBudgetBytes: a.cfg.WasmMemoryBudgetMB << 20, MaxConcurrency: a.cfg.WasmMaxConcurrency, ReuseMaxCalls: a.cfg.WasmReuseMaxCalls,
	}, wasm.NewStore(a.db, a.clock))
	if err != nil {
		return nil, fmt.Errorf("start wasm runtime: %w", err)
	}
	a.wasm = rt
	a.closers = append(a.closers, func() { _ = rt.Close(context.Background()) })
	return rt, nil
}

// backendKinds registers every backend kind, once per process: the API
// prepares versions through them and the gateway runs them.
func (a *app) backendKinds(ctx context.Context) (*backend.Registry, error) {
	if a.kinds != nil {
		return a.kinds, nil
	}
	rt, err := a.wasmRuntime(ctx)
	if err != nil {
		return nil, err
	}
	a.kinds, err = backend.NewRegistry(
		gateway.HTTPKind{AllowPrivate: a.cfg.AllowPrivateUpstreams},
		wasm.NewKind(rt),
	)
	return a.kinds, err
}

// usageStore reads metered usage (once per process).
func (a *app) usageStore() *metering.Store {
	if a.usage == nil {
		a.usage = metering.NewStore(metering.StoreConfig{DB: a.db, Redis: a.redis, Prefix: a.cfg.RedisPrefix})
	}
	return a.usage
}

// newRollup builds the roll-up engine the worker and the bill command run;
// each batch it commits also moves its keys' last use forward.
func (a *app) newRollup() (*metering.Rollup, error) {
	return metering.NewRollup(metering.RollupConfig{
		DB: a.db, Redis: a.redis, Prefix: a.cfg.RedisPrefix, Clock: a.clock, Logger: a.log,
		OnBatch: func(tx *gorm.DB, rows []metering.UsageRow) error {
			return accounts.TouchKeys(tx, lastUsed(rows, a.clock.Now()))
		},
	})
}

func (a *app) buildAPI(ctx context.Context, p *parts) error {
	secret, err := a.cfg.jwtSecret()
	if err != nil {
		return err
	}
	kinds, err := a.backendKinds(ctx)
	if err != nil {
		return err
	}
	b, err := a.biller()
	if err != nil {
		return err
	}
	usage := a.usageStore()
	var authRate api.AuthRate
	if a.cfg.AuthRatePerMinute > 0 {
		authRate = redisx.NewClientRate(a.redis, a.cfg.RedisPrefix, a.cfg.AuthRatePerMinute)
	}
	webOpts := web.Options{GatewayOrigin: gatewayOrigin(a.cfg.PublicURL, a.cfg.GatewayURL)}
	p.api = api.NewServer(api.Deps{
		// The portal's pages share the API's router, middleware and errors.
		Pages:    func(e *echo.Echo) { web.Register(e, webOpts) },
		Logger:   a.log,
		Accounts: a.accounts,
		Catalog:  a.catalog,
		Sessions: api.NewSessions(secret, 24*time.Hour, a.clock),
		// A key's own rate limit may only lower the gateway's default.
		DefaultKeyRateLimit: a.cfg.RateLimitPerKey,
		// Logged-out sessions are refused by every replica.
		Revocations: redisx.NewSessionRevocations(a.redis, a.cfg.RedisPrefix),
		Usage:       api.NewUsageReport(usage, billing.NewUsageTable(a.db), a.catalog, a.clock),
		// The next call's position as admission would give it now.
		CallPositions:    metering.NewPositions(a.redis, a.cfg.RedisPrefix),
		Billing:          b,
		Backends:         kinds,
		FunctionLogs:     wasmLogs{a.wasmLogs},
		Webhooks:         b,
		WebhookEndpoints: webhooks.NewStore(a.db, a.clock, a.cfg.AllowPrivateUpstreams),
		Payments:         b,
		PublicURL:        a.cfg.PublicURL,
		GatewayURL:       a.cfg.GatewayURL,
		// A 32 MiB module is about 43 MiB in base64.
		MaxUploadBytes: 48 << 20,
		StripeEnabled:  a.cfg.StripeSecretKey != "",
		Clock:          a.clock,
		// Ten wrong passwords for one account from one address lock that
		// address out of it for 15 minutes; past ten attempts from all
		// addresses together, each further one waits (api.AuthLimits).
		LoginThrottle:  redisx.NewLoginThrottle(a.redis, a.cfg.RedisPrefix, 10, 15*time.Minute),
		AuthRate:       authRate,
		TrustedProxies: a.cfg.TrustedProxies,
		// The audit log (GET /api/v1/audit) and vendors' error-rate alerts.
		Audit:       audit.NewLog(a.db, a.clock),
		ErrorAlerts: alerts.NewChecker(a.db, a.clock),
	})
	return nil
}

// gatewayOrigin is the gateway's origin when the portal's pages must call it
// across origins (the "try it" box), or "" when both share one.
func gatewayOrigin(publicURL, gatewayURL string) string {
	p, err1 := url.Parse(publicURL)
	g, err2 := url.Parse(gatewayURL)
	if err1 != nil || err2 != nil || (p.Scheme == g.Scheme && p.Host == g.Host) {
		return ""
	}
	return g.Scheme + "://" + g.Host
}

func (a *app) startGateway(ctx context.Context, p *parts) error {
	meter, err := a.openMeter()
	if err != nil {
		return err
	}
	a.meter = meter
	p.onStop(func(ctx context.Context) error {
		if err := meter.Close(ctx); err != nil {
			return fmt.Errorf("flush metering: %w", err)
		}
		return nil
	})
	limiter, err := metering.NewLimiter(metering.LimiterConfig{Redis: a.redis, Prefix: a.cfg.RedisPrefix, Timeout: a.cfg.AdmissionTimeout, Clock: a.clock, Logger: a.log})
	if err != nil {
		return err
	}
	var admitter gateway.Admitter = limiter
	if a.cfg.AdmissionLeases {
		var lc metering.LeaseConfig
		if a.redis.Embedded != nil {
			// The only replica of its Redis: no other shares a key's
			// rate or cap, and a round trip through the embedded server's
			// Lua costs about a millisecond, so leases are larger.
			lc.MaxCalls, lc.Sole = 4096, true
		}
		leaser := metering.NewLeaser(limiter, lc)
		leaser.Start(ctx)
		// Stops after the gateway (no call in flight), before the meter.
		p.onStop(func(ctx context.Context) error {
			if err := leaser.Close(ctx); err != nil {
				return fmt.Errorf("give admission leases back: %w", err)
			}
			return nil
		})
		admitter = leaser
	}
	gw, err := gateway.New(gateway.Config{
		DefaultRateLimitPerKey: a.cfg.RateLimitPerKey,
		MaxBodyBytes:           a.cfg.MaxBodyBytes,
		BodyIdleTimeout:        a.cfg.BodyIdleTimeout,
		AllowPrivateUpstreams:  a.cfg.AllowPrivateUpstreams,
		MaxStale:               a.cfg.GatewayMaxStale,
		Registerer:             a.registry,
		Logger:                 a.log,
		Clock:                  a.clock,
	}, gatewayKeys{s: a.accounts, payURL: strings.TrimRight(a.cfg.PublicURL, "/") + "/billing"}, gatewayRoutes{a.catalog}, admitter, meter)
	if err != nil {
		return err
	}
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fnmarket_metering_backlog_calls",
		Help: "Calls recorded by this gateway and not yet confirmed by Redis.",
	}, func() float64 { return float64(meter.Backlog()) }))
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fnmarket_metering_unconfirmed_calls",
		Help: "Calls Redis has acknowledged that the database does not hold yet (kept in the spool until it does).",
	}, func() float64 { return float64(meter.Unconfirmed()) }))
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fnmarket_gateway_store_unreachable",
		Help: "1 while the gateway's key and route lookups fail (it then serves cached entries up to FNMARKET_GATEWAY_MAX_STALE), else 0.",
	}, func() float64 {
		if gw.StoreStatus().Unreachable {
			return 1
		}
		return 0
	}))
	kinds, err := a.backendKinds(ctx)
	if err != nil {
		return err
	}
	if err := gw.RegisterKinds(kinds); err != nil {
		return err
	}
	gw.UseIdempotencyStore(redisx.NewIdempotency(a.redis, a.cfg.RedisPrefix))
	gw.Start(ctx)
	p.onStop(func(context.Context) error { return gw.Close() })
	p.gateway = gw
	return nil
}

// openMeter opens the gateway's metering spool. Replicas may share one data
// volume: each takes the first spool directory no live process holds
// (spool/0, spool/1, ...). A replica that restarts after a crash finds its
// old directory free again, or another replica takes it, and either way the
// unsent calls in it are replayed.
func (a *app) openMeter() (*metering.Meter, error) {
	for i := 0; i < 64; i++ {
		m, err := metering.NewMeter(metering.MeterConfig{
			Redis:    a.redis,
			Prefix:   a.cfg.RedisPrefix,
			SpoolDir: filepath.Join(a.cfg.DataDir, "spool", strconv.Itoa(i)),
			Logger:   a.log,
			// Keep each flush in the spool until the database has it, so a
			// Redis that loses its data (the embedded one dies with a kill
			// -9) loses no call.
			Confirmed: a.usageStore().FlushesCommitted,
		})
		if errors.Is(err, metering.ErrSpoolInUse) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("start meter: %w", err)
		}
		return m, nil
	}
	return nil, errors.New("start meter: all 64 spool directories are in use")
}

// startWorker runs the roll-up loop, each pass followed by the alert check
// (usage thresholds, error rates). Each pass runs to its end even when
// shutdown begins; with final set (the embedded serve), one last pass after
// the gateway has flushed moves everything into the database before exit.
func (a *app) startWorker(ctx context.Context, p *parts, final bool) error {
	rollup, err := a.newRollup()
	if err != nil {
		return err
	}
	b, err := a.biller()
	if err != nil {
		return err
	}
	// Stripe sync retries pending invoices and payouts with their original
	// idempotency keys; it never blocks the roll-up for long.
	var syncEvery time.Duration
	if a.cfg.StripeSecretKey != "" {
		syncEvery = 30 * time.Second
	}
	var lastSync time.Time
	checker := alerts.NewChecker(a.db, a.clock)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(a.cfg.RollupInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				a.rollOnce(rollup)
				// Alerts read what the roll-up just wrote.
				a.checkAlerts(checker)
				if syncEvery > 0 && time.Since(lastSync) >= syncEvery {
					a.syncStripe(b)
					lastSync = time.Now()
				}
			}
		}
	}()
	expiringDone := make(chan struct{})
	go func() {
		defer close(expiringDone)
		a.notifyExpiringKeys(stop)
	}()
	a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fnmarket_rollup_passes_total", Help: "Roll-up passes run by this worker.",
	}, func() float64 { return float64(a.rollupPasses.Load()) }))
	p.onStop(func(ctx context.Context) error {
		close(stop)
		<-done
		<-expiringDone
		if final {
			if _, err := rollup.RunOnce(ctx); err != nil {
				return fmt.Errorf("final roll-up: %w", err)
			}
		}
		return nil
	})
	return nil
}

// keyExpiringInterval is how often the worker looks for keys that expire
// within accounts.ExpiringNotice.
const keyExpiringInterval = time.Minute

// notifyExpiringKeys enqueues key.expiring for keys expiring within three
// days, at start and every keyExpiringInterval until stop closes. Every
// worker may run it: the events' dedupe keys make each happen once per key
// and expiry.
func (a *app) notifyExpiringKeys(stop <-chan struct{}) {
	t := time.NewTicker(keyExpiringInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		n, err := a.accounts.NotifyExpiringKeys(ctx, a.clock.Now())
		cancel()
		if err != nil {
			a.log.Warn("key.expiring pass failed; it will be retried", "err", err)
		} else if n > 0 {
			a.log.Debug("key.expiring events enqueued", "events", n)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// startWebhooks runs the outbound webhook deliverer: every
// FNMARKET_WEBHOOK_POLL_INTERVAL it fans new outbox events out to their
// endpoints and sends the deliveries that are due. At shutdown the attempts
// in flight finish (5 s at most) and are recorded; what is left waits in the
// database for the next worker.
func (a *app) startWebhooks(p *parts) {
	d := webhooks.NewDeliverer(webhooks.DeliverConfig{DB: a.db, Clock: a.clock, Logger: a.log, AllowPrivate: a.cfg.AllowPrivateUpstreams})
	for _, m := range []struct {
		name, help string
		value      func(webhooks.Counts) int64
	}{
		{"fnmarket_webhook_attempts_total", "Outbound webhook delivery attempts made by this worker.", func(c webhooks.Counts) int64 { return c.Attempts }},
		{"fnmarket_webhook_delivered_total", "Outbound webhook attempts answered 2xx.", func(c webhooks.Counts) int64 { return c.Delivered }},
		{"fnmarket_webhook_failed_total", "Outbound webhook deliveries failed for good after their last attempt.", func(c webhooks.Counts) int64 { return c.GaveUp }},
		{"fnmarket_webhook_endpoints_disabled_total", "Webhook endpoints disabled after failing for days.", func(c webhooks.Counts) int64 { return c.Disabled }},
	} {
		a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: m.name, Help: m.help},
			func() float64 { return float64(m.value(d.Counts())) }))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx, a.cfg.WebhookPollInterval)
	}()
	p.onStop(func(context.Context) error {
		cancel()
		<-done
		return nil
	})
}

func (a *app) syncStripe(b *billing.Biller) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := b.SyncPending(ctx)
	if fnmarket.ErrorCode(err) == fnmarket.ECONFLICT {
		a.log.Debug("another process is syncing with Stripe; skipped this pass", "err", err)
		return
	}
	if err != nil {
		a.log.Warn("stripe sync failed; it will be retried", "err", err)
		return
	}
	if res.InvoiceFailures > 0 || res.PayoutFailures > 0 {
		a.log.Warn("stripe sync left work pending", "invoice_failures", res.InvoiceFailures, "payout_failures", res.PayoutFailures)
	}
}

// checkAlerts raises spend-threshold and error-rate events from the
// rolled-up usage (package alerts); each is enqueued exactly once whatever
// the workers running this at once.
func (a *app) checkAlerts(c *alerts.Checker) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := c.Run(ctx)
	if err != nil {
		a.log.Warn("alert check failed; it will be retried", "err", err)
	}
	if rep.Thresholds > 0 || rep.ErrorRates > 0 {
		a.log.Debug("alerts raised", "thresholds", rep.Thresholds, "error_rates", rep.ErrorRates)
	}
}

func (a *app) rollOnce(r *metering.Rollup) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a.rollupPasses.Add(1)
	st, err := r.RunOnce(ctx)
	if err != nil {
		a.log.Warn("roll-up pass failed; it will be retried", "err", err)
		return
	}
	if st.Batches > 0 {
		a.log.Debug("rolled up", "batches", st.Batches, "rows", st.Rows, "calls", st.Calls)
	}
}

// lastUsed gives each key in rows a last-used time: the end of its latest
// hour, or now if that is sooner (accurate to the roll-up interval).
func lastUsed(rows []metering.UsageRow, now time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for _, r := range rows {
		t := r.HourStart.Add(time.Hour)
		if t.After(now) {
			t = now
		}
		if t.After(out[r.KeyID]) {
			out[r.KeyID] = t
		}
	}
	return out
}

// bill rolls everything metered so far into the database, issues the
// month's invoices (idempotently) and, with Stripe configured, syncs them.
func (a *app) bill(ctx context.Context) error {
	period, err := time.Parse("2006-01", a.cfg.Period)
	if err != nil {
		return fmt.Errorf("bill: --period must be a month such as 2026-10")
	}
	if a.cfg.Through != "" && a.cfg.Through != "now" {
		return fmt.Errorf("bill: --through takes only \"now\"")
	}
	if err := a.openRedis(ctx); err != nil {
		return err
	}
	rollup, err := a.newRollup()
	if err != nil {
		return err
	}
	st, err := rollup.RunOnce(ctx)
	if err != nil {
		return fmt.Errorf("bill: roll up usage first: %w", err)
	}
	b, err := a.biller()
	if err != nil {
		return err
	}
	rep, err := b.BillPeriod(ctx, period, billing.Options{ThroughNow: a.cfg.Through == "now"})
	if err != nil {
		if fnmarket.ErrorCode(err) == fnmarket.EINTERNAL {
			return fmt.Errorf("bill %s: %w", a.cfg.Period, err)
		}
		return fmt.Errorf("bill %s: %s", a.cfg.Period, fnmarket.ErrorMessage(err))
	}
	fmt.Fprintf(a.stdout, "rolled up %d calls; %s: %d consumers, %d invoices created, %d finalized, %d refreshed, %d unchanged, %d late-usage lines (draft: %v)\n",
		st.Calls, a.cfg.Period, rep.Consumers, rep.Created, rep.Finalized, rep.Refreshed, rep.Unchanged, rep.AdjustmentLines, rep.Draft)
	if a.cfg.StripeSecretKey != "" && !rep.Draft {
		// BillPeriod has synced already; its report says what it pushed.
		res := rep.Sync
		fmt.Fprintf(a.stdout, "stripe: %d invoices synced (%d failed, retried by the worker), %d payouts (%d failed)\n", res.Invoices, res.InvoiceFailures, res.Payouts, res.PayoutFailures)
	}
	return nil
}

// probe checks a URL answers 200, for health checks in images without curl.
func probe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: fnmarket probe URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d", args[0], res.StatusCode)
	}
	return nil
}

// pprofMux serves the profiler on its own listener, never on the public one.
func pprofMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}

// setInvoiceStatus lets an operator move an open invoice to paid or void.
func (a *app) setInvoiceStatus(ctx context.Context) error {
	if a.cfg.InvoiceID == "" || (a.cfg.InvoiceStatus != "paid" && a.cfg.InvoiceStatus != "void") {
		return errors.New("invoice: give --id ID and --status paid or void")
	}
	b, err := a.biller()
	if err != nil {
		return err
	}
	if err := b.Transition(ctx, a.cfg.InvoiceID, billing.Status(a.cfg.InvoiceStatus), a.cfg.InvoiceDetail); err != nil {
		if fnmarket.ErrorCode(err) == fnmarket.EINTERNAL {
			return fmt.Errorf("invoice %s: %w", a.cfg.InvoiceID, err)
		}
		return fmt.Errorf("invoice %s: %s", a.cfg.InvoiceID, fnmarket.ErrorMessage(err))
	}
	fmt.Fprintf(a.stdout, "invoice %s is now %s\n", a.cfg.InvoiceID, a.cfg.InvoiceStatus)
	return nil
}
