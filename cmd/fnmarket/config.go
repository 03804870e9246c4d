package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket/accounts"
)

// config is everything read from the environment and flags, once, in run.
type config struct {
	Addr                  string
	DataDir               string
	DatabaseURL           string
	RedisURL              string
	RedisPrefix           string
	JWTSecret             string
	RateLimitPerKey       int
	AllowPrivateUpstreams bool
	AuthRatePerMinute     int
	TrustedProxies        []*net.IPNet
	MaxBodyBytes          int64
	BodyIdleTimeout       time.Duration
	WasmMemoryBudgetMB    int64 // 0: the wasm package's default
	WasmMaxConcurrency    int   // 0: the wasm package's default
	WasmReuseMaxCalls     int   // 0: the wasm package's default
	StripeSecretKey       string
	StripeAPIBase         string
	StripeWebhookSecret   string
	PlatformFeeRate       decimal.Decimal
	SuspendAfterDays      int
	PublicURL             string
	RollupInterval        time.Duration
	WebhookPollInterval   time.Duration
	ShutdownTimeout       time.Duration
	AdmissionTimeout      time.Duration
	AdmissionLeases       bool
	GatewayMaxStale       time.Duration // negative: off
	LogLevel              string
	DebugAddr             string
	MetricsAddr           string
	// Bill-only flags.
	Period  string
	Through string
	// Invoice-only flags.
	InvoiceID, InvoiceStatus, InvoiceDetail string
	// Demo (serve only) seeds demo data on first start.
	Demo bool

	// GatewayURL is the gateway's public base URL, shown in the portal's
	// "how to call it" examples; "" means PublicURL (one origin, or an edge
	// that routes /v1/invoke/ to the gateway).
	GatewayURL string
}

func parseConfig(cmd string, args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var c config
	fs := flagSet(cmd, &c, getenv)
	fs.SetOutput(stderr)
	fs.Usage = func() { commandUsage(stderr, cmd, fs) }
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%s takes no arguments, got %q (see fnmarket %s -h)", cmd, fs.Args(), cmd)
	}
	if u, err := url.Parse(c.GatewayURL); c.GatewayURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "") {
		return c, fmt.Errorf("FNMARKET_GATEWAY_URL must be an absolute http(s) URL such as https://run.example.com")
	}
	c.JWTSecret = getenv("FNMARKET_JWT_SECRET")
	c.StripeSecretKey = getenv("STRIPE_SECRET_KEY")
	c.StripeAPIBase = getenv("STRIPE_API_BASE")
	c.StripeWebhookSecret = getenv("STRIPE_WEBHOOK_SECRET")
	var err error
	if c.RateLimitPerKey, err = strconv.Atoi(env("FNMARKET_RATE_LIMIT_PER_KEY", "100")); err != nil || c.RateLimitPerKey < 0 {
		return c, fmt.Errorf("FNMARKET_RATE_LIMIT_PER_KEY must be a whole number, 0 or more")
	}
	if c.AuthRatePerMinute, err = strconv.Atoi(env("FNMARKET_AUTH_RATE_PER_MINUTE", "20")); err != nil || c.AuthRatePerMinute < 0 {
		return c, fmt.Errorf("FNMARKET_AUTH_RATE_PER_MINUTE must be a whole number, 0 or more")
	}
	if c.TrustedProxies, err = parseCIDRs(getenv("FNMARKET_TRUSTED_PROXIES")); err != nil {
		return c, fmt.Errorf("FNMARKET_TRUSTED_PROXIES: %w", err)
	}
	if c.AllowPrivateUpstreams, err = strconv.ParseBool(env("FNMARKET_ALLOW_PRIVATE_UPSTREAMS", "false")); err != nil {
		return c, fmt.Errorf("FNMARKET_ALLOW_PRIVATE_UPSTREAMS must be true or false")
	}
	if c.MaxBodyBytes, err = strconv.ParseInt(env("FNMARKET_MAX_BODY_BYTES", strconv.Itoa(6<<20)), 10, 64); err != nil || c.MaxBodyBytes <= 0 {
		return c, fmt.Errorf("FNMARKET_MAX_BODY_BYTES must be a positive number of bytes")
	}
	if c.BodyIdleTimeout, err = time.ParseDuration(env("FNMARKET_BODY_IDLE_TIMEOUT", "20s")); err != nil || c.BodyIdleTimeout <= 0 {
		return c, fmt.Errorf("FNMARKET_BODY_IDLE_TIMEOUT must be a positive duration such as 20s")
	}
	if c.WasmMemoryBudgetMB, err = strconv.ParseInt(env("FNMARKET_WASM_MEMORY_BUDGET_MB", "0"), 10, 64); err != nil || c.WasmMemoryBudgetMB < 0 || c.WasmMemoryBudgetMB > 1<<30 {
		return c, fmt.Errorf("FNMARKET_WASM_MEMORY_BUDGET_MB must be a whole number of MiB (0: a quarter of the machine's memory)")
	}
	if c.WasmMaxConcurrency, err = strconv.Atoi(env("FNMARKET_WASM_MAX_CONCURRENCY", "0")); err != nil || c.WasmMaxConcurrency < 0 {
		return c, fmt.Errorf("FNMARKET_WASM_MAX_CONCURRENCY must be a whole number (0: one per CPU)")
	}
	if c.WasmReuseMaxCalls, err = strconv.Atoi(env("FNMARKET_WASM_REUSE_MAX_CALLS", "0")); err != nil || c.WasmReuseMaxCalls < 0 {
		return c, fmt.Errorf("FNMARKET_WASM_REUSE_MAX_CALLS must be a whole number (0: 1000)")
	}
	if c.PlatformFeeRate, err = decimal.NewFromString(env("FNMARKET_PLATFORM_FEE_RATE", "0.20")); err != nil || c.PlatformFeeRate.IsNegative() || c.PlatformFeeRate.GreaterThan(decimal.NewFromInt(1)) {
		return c, fmt.Errorf("FNMARKET_PLATFORM_FEE_RATE must be a decimal between 0 and 1")
	}
	if c.SuspendAfterDays, err = strconv.Atoi(env("FNMARKET_SUSPEND_AFTER_DAYS", strconv.Itoa(accounts.DefaultSuspendAfterDays))); err != nil || c.SuspendAfterDays < 0 || c.SuspendAfterDays > 3650 {
		return c, fmt.Errorf("FNMARKET_SUSPEND_AFTER_DAYS must be a whole number of days, 0 to 3650")
	}
	if c.RollupInterval, err = time.ParseDuration(env("FNMARKET_ROLLUP_INTERVAL", "2s")); err != nil || c.RollupInterval <= 0 {
		return c, fmt.Errorf("FNMARKET_ROLLUP_INTERVAL must be a duration such as 2s")
	}
	if c.WebhookPollInterval, err = time.ParseDuration(env("FNMARKET_WEBHOOK_POLL_INTERVAL", "1s")); err != nil || c.WebhookPollInterval <= 0 {
		return c, fmt.Errorf("FNMARKET_WEBHOOK_POLL_INTERVAL must be a duration such as 1s")
	}
	if c.ShutdownTimeout, err = time.ParseDuration(env("FNMARKET_SHUTDOWN_TIMEOUT", "20s")); err != nil {
		return c, fmt.Errorf("FNMARKET_SHUTDOWN_TIMEOUT must be a duration such as 20s")
	}
	// The in-process Redis cannot be away, only busy: deciding locally
	// there would only price calls at guessed positions.
	admissionDefault := "75ms"
	if c.RedisURL == "" {
		admissionDefault = "2s"
	}
	if c.AdmissionTimeout, err = time.ParseDuration(env("FNMARKET_ADMISSION_TIMEOUT", admissionDefault)); err != nil || c.AdmissionTimeout <= 0 {
		return c, fmt.Errorf("FNMARKET_ADMISSION_TIMEOUT must be a duration such as 75ms")
	}
	if c.AdmissionLeases, err = strconv.ParseBool(env("FNMARKET_ADMISSION_LEASES", "true")); err != nil {
		return c, fmt.Errorf("FNMARKET_ADMISSION_LEASES must be true or false")
	}
	if c.GatewayMaxStale, err = time.ParseDuration(env("FNMARKET_GATEWAY_MAX_STALE", "15m")); err != nil || c.GatewayMaxStale < 0 {
		return c, fmt.Errorf("FNMARKET_GATEWAY_MAX_STALE must be a duration such as 15m (0 turns serving cached keys during a database outage off)")
	}
	if c.GatewayMaxStale == 0 {
		c.GatewayMaxStale = -1 // gateway.Config: negative is off, 0 the default
	}
	return c, nil
}

// flagSet declares the flags command cmd takes, into c; each command takes
// only the flags it uses, so its -h is the whole truth.
func flagSet(cmd string, c *config, getenv func(string) string) *flag.FlagSet {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs := flag.NewFlagSet("fnmarket "+cmd, flag.ContinueOnError)
	server := cmd == "serve" || cmd == "api" || cmd == "gateway" || cmd == "worker"
	if server {
		fs.StringVar(&c.Addr, "addr", env("FNMARKET_ADDR", "127.0.0.1:8080"), "listen address (FNMARKET_ADDR)")
		fs.StringVar(&c.PublicURL, "public-url", getenv("FNMARKET_PUBLIC_URL"), "public base URL shown in examples (FNMARKET_PUBLIC_URL); empty: the listen URL")
		fs.StringVar(&c.GatewayURL, "gateway-url", getenv("FNMARKET_GATEWAY_URL"), "the gateway's public base URL in the portal's examples; default: the public URL (FNMARKET_GATEWAY_URL)")
		fs.StringVar(&c.DebugAddr, "debug-addr", getenv("FNMARKET_DEBUG_ADDR"), "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (FNMARKET_DEBUG_ADDR); off when empty")
		fs.StringVar(&c.MetricsAddr, "metrics-addr", getenv("FNMARKET_METRICS_ADDR"), "serve Prometheus /metrics on this separate address, e.g. 127.0.0.1:9090 (FNMARKET_METRICS_ADDR); off when empty")
	}
	fs.StringVar(&c.DataDir, "data-dir", env("FNMARKET_DATA_DIR", "./data"), "embedded default's data directory (FNMARKET_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", getenv("DATABASE_URL"), "PostgreSQL URL; empty: embedded SQLite (DATABASE_URL)")
	fs.StringVar(&c.RedisURL, "redis-url", getenv("REDIS_URL"), "Redis URL or comma-separated cluster seeds; empty: in-process (REDIS_URL)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", env("FNMARKET_REDIS_PREFIX", "fnm:"), "prefix of every Redis key (FNMARKET_REDIS_PREFIX)")
	fs.StringVar(&c.LogLevel, "log-level", env("FNMARKET_LOG_LEVEL", "info"), "debug, info, warn or error (FNMARKET_LOG_LEVEL)")
	switch cmd {
	case "serve":
		fs.BoolVar(&c.Demo, "demo", false, "seed demo vendors, functions (WebAssembly, work offline) and a week of usage on first start; prints the demo logins")
	case "bill":
		fs.StringVar(&c.Period, "period", "", "the month to bill, YYYY-MM (required)")
		fs.StringVar(&c.Through, "through", "", "\"now\" to issue a draft for a month not yet over")
	case "invoice":
		fs.StringVar(&c.InvoiceID, "id", "", "the invoice's id (required)")
		fs.StringVar(&c.InvoiceStatus, "status", "", "paid or void (required)")
		fs.StringVar(&c.InvoiceDetail, "detail", "", "why, kept with the transition")
	}
	return fs
}

// parseCIDRs reads comma-separated networks ("10.0.0.0/8, 2001:db8::/32");
// a bare address stands for itself alone.
func parseCIDRs(list string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip := net.ParseIP(f)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an IP address", f)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// jwtSecret returns the configured session key or, when none is set, one
// generated once and kept in the data directory (mode 0600).
func (c config) jwtSecret() ([]byte, error) {
	if c.JWTSecret != "" {
		if len(c.JWTSecret) < 32 {
			return nil, errors.New("FNMARKET_JWT_SECRET must be at least 32 characters")
		}
		return []byte(c.JWTSecret), nil
	}
	path := filepath.Join(c.DataDir, "jwt-secret")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	buf := make([]byte, 32)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	secret := hex.EncodeToString(buf)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Another process won the race; use its secret.
		b, err := os.ReadFile(path)
		return []byte(strings.TrimSpace(string(b))), err
	}
	if err != nil {
		return nil, fmt.Errorf("keep session key: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return nil, fmt.Errorf("keep session key: %w", err)
	}
	return []byte(secret), nil
}
