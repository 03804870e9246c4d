package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/fnmarket/fnmarket"
	"github.com/fnmarket/fnmarket/backend"
	"github.com/fnmarket/fnmarket/catalog"
	"github.com/fnmarket/fnmarket/usage"
)

// Key is what the gateway needs to know about an API key.
type Key struct {
	ID         string
	ConsumerID string
	// MonthlySpendCap is the key's cap; nil means none.
	MonthlySpendCap *decimal.Decimal
	Revoked         bool
	// ExpiresAt is when the presented secret stops working (the key's
	// expiry, or the end of a rotation's grace for the old secret); nil:
	// never. The gateway compares it with its clock on every call, so an
	// expiry needs no cache refresh.
	ExpiresAt *time.Time
	// Rotated means the presented secret is one a rotation replaced.
	Rotated bool
	// AllowedFunctions are the "vendor/name" the key may call; empty: all.
	AllowedFunctions []string
	// RateLimitPerSecond is the key's own limit; 0: none. It can only lower
	// the effective limit (effectiveRateLimit).
	RateLimitPerSecond int
	// Account is the consumer account's standing, cap and credit; a change
	// to it must make KeysChangedSince report the account's keys.
	Account usage.AccountBilling
}

// KeyStore looks API keys up by hash. The gateway calls it only on cache
// misses and from its invalidation poller, never once per call.
type KeyStore interface {
	// KeyByHash returns the key whose fnmarket.HashAPIKey is hash, revoked or
	// not; an *fnmarket.Error with code ENOTFOUND when there is none.
	KeyByHash(ctx context.Context, hash string) (Key, error)
	// KeysChangedSince returns the hashes of keys created, revoked or changed
	// at or after since.
	KeysChangedSince(ctx context.Context, since time.Time) ([]string, error)
}

// FunctionRef names a function by its vendor's slug and its name.
type FunctionRef struct {
	VendorSlug string
	Name       string
}

// RouteStore looks callable function versions up. The gateway calls it only
// on cache misses and from its invalidation poller.
type RouteStore interface {
	// Route returns what runs a call of vendorSlug/name: the published version
	// when version is 0, else that version if it was ever published. It
	// returns an *fnmarket.Error with code ENOTFOUND for an unknown or
	// unpublished function and for a version never published.
	Route(ctx context.Context, vendorSlug, name string, version int) (catalog.Route, error)
	// FunctionsChangedSince returns the functions published, unpublished or
	// otherwise changed at or after since.
	FunctionsChangedSince(ctx context.Context, since time.Time) ([]FunctionRef, error)
}

// Admitter decides whether one call may go ahead under its key's rate limit,
// the key's and the account's spend caps, prepaid credit and standing; an
// admitted call has a position (which prices it) and holds its worst case
// until Settle replaces the hold by its real cost.
type Admitter interface {
	Admit(ctx context.Context, req usage.AdmissionRequest) (usage.Admission, error)
	// Settle ends an admitted call: its real cost (zero when it never
	// reached the function) replaces its hold. It returns the part of the
	// cost paid from prepaid credit; an error means the hold could not be
	// settled now (the meter settles it later). The gateway skips it for a
	// call that ran and holds nothing (Admission.Hold zero): such a call is
	// recorded unsettled, and the meter adds its cost to the spend counters.
	Settle(ctx context.Context, req usage.AdmissionRequest, adm usage.Admission, reached bool, cost decimal.Decimal) (decimal.Decimal, error)
}

// Meter counts finished calls. Record must not block the call path.
type Meter interface {
	Record(c usage.Call)
}

// Invoker runs calls on one type of backend ("http" is built in; other
// backend kinds, such as "wasm", are Invokers themselves and are added with
// RegisterKinds).
//
// Invoke writes the function's answer to w, including the X-Compute-Ms and
// X-Cost headers, set with Invocation.SetMeasured (and, for an answer
// streamed without a known length, the same two as trailers announced in a
// Trailer header). The gateway has already
// set X-Invocation-Id and the rate-limit headers on w; Invoke must keep them.
// r.Body is already capped at the gateway's body limit.
//
// When it cannot give the function's answer, Invoke returns an error, best an
// *fnmarket.Error with code EUNREACHABLE, EUPSTREAMTIME or ETOOLARGE. If it
// had not yet written the status (Outcome.HeadersSent false) the gateway
// answers the caller with that error as problem+json; otherwise the gateway
// cuts the connection so the caller sees an incomplete answer. A 502 problem
// is never billed: an invoker that returns EUNREACHABLE before writing the
// status reports Reached false; once the function's status and headers have
// arrived, it writes them and reports any later break with HeadersSent true.
type Invoker interface {
	Invoke(w http.ResponseWriter, r *http.Request, call *Invocation) (Outcome, error)
}

// Invocation is one admitted call on its way to a function.
type Invocation struct {
	// ID is the call's X-Invocation-Id.
	ID string
	// Route is the function version that runs the call.
	Route catalog.Route
	// ConsumerID is the account whose API key made the call; invokers that
	// keep state between calls (wasm instance reuse) key it by consumer.
	ConsumerID string
	// Rest is the escaped path after the function's name ("" or starting
	// with "/"), to be appended to the backend's path.
	Rest string
	// At is when the gateway accepted the call, from its clock.
	At time.Time
	// Timeout is the version's TimeoutMs (or the gateway's default): a call
	// not finished by then is cut and billed as exactly Timeout of compute.
	Timeout time.Duration

	// Pricing and Position price the call: its cost is
	// Pricing.CallCost(Position, computeMs).
	Pricing  catalog.Pricing
	Position int64

	body *cappedBody
	// bodyStore is where body points: the request body wrapper needs no
	// allocation of its own.
	bodyStore cappedBody
	// costMu guards the last cost computed (Cost), kept because the
	// answer's X-Cost header and the meter both need it.
	costMu  sync.Mutex
	costMs  int64
	costVal decimal.Decimal
	costSet bool
	// hv holds the values of the headers the gateway and its HTTP invoker
	// set on the answer and on the forwarded request.
	hv headerValues
}

// Cost is the exact cost of this call had it taken computeMs: the per-call
// price at its position (free calls and tiers) plus compute, by the one
// pricing rule (catalog.Pricing.CallCost).
func (c *Invocation) Cost(computeMs int64) decimal.Decimal {
	c.costMu.Lock()
	defer c.costMu.Unlock()
	if !c.costSet || c.costMs != computeMs {
		c.costVal, c.costMs, c.costSet = c.Pricing.CallCost(c.Position, computeMs), computeMs, true
	}
	return c.costVal
}

// SetMeasured sets the X-Compute-Ms and X-Cost headers (or trailers) of an
// answer that took computeMs.
func (c *Invocation) SetMeasured(h http.Header, computeMs int64) {
	c.setMeasured(h, computeMs, nil)
}

// setMeasured is SetMeasured taking the header values from hv (nil: each
// its own allocation).
func (c *Invocation) setMeasured(h http.Header, computeMs int64, hv *headerValues) {
	hv.set(h, headerComputeMs, strconv.FormatInt(computeMs, 10))
	// The exact decimal, then the currency: "0.000214 USD".
	hv.set(h, headerCost, c.Cost(computeMs).String()+" "+c.Pricing.CurrencyCode())
}

// headerValues hands out one-value slices for header values from one array,
// so that setting one of the dozen headers a call sets allocates nothing of
// its own. Each slice has capacity 1: appending to it copies, so no header
// ever sees another's value.
type headerValues struct {
	arr [16]string
	n   int
}

// set sets the header canonicalKey (already in canonical form) of h to v,
// replacing any values, as h.Set does. A nil hv allocates the value slice.
func (hv *headerValues) set(h http.Header, canonicalKey, v string) {
	if hv == nil || hv.n == len(hv.arr) {
		h[canonicalKey] = []string{v}
		return
	}
	vv := hv.arr[hv.n : hv.n+1 : hv.n+1]
	hv.n++
	vv[0] = v
	h[canonicalKey] = vv
}

// add adds v to the header canonicalKey of h, as h.Add does.
func (hv *headerValues) add(h http.Header, canonicalKey, v string) {
	if vv, ok := h[canonicalKey]; ok {
		h[canonicalKey] = append(vv, v)
		return
	}
	hv.set(h, canonicalKey, v)
}

// BodyTooLarge reports whether reading the request body hit the gateway's
// body limit, in which case the call is answered 413 and not billed unless the
// function answered anyway.
func (c *Invocation) BodyTooLarge() bool { return c.body != nil && c.body.hit.Load() }

// BodyStalled reports whether the request body sent nothing for the
// gateway's BodyIdleTimeout, in which case the call is answered 408 and not
// billed unless the function answered anyway.
func (c *Invocation) BodyStalled() bool { return c.body != nil && c.body.stalled.Load() }

// Outcome is what an Invoker reports about one call.
type Outcome struct {
	// Reached means the function received the call and either answered (with
	// any status) or ran into the timeout: the call is billable.
	Reached bool
	// Status is the status the caller was sent (0 if none yet).
	Status int
	// ComputeMs is the billed compute: whole milliseconds, at least 1,
	// rounded up (see ComputeMs); the timeout for a call cut at the timeout.
	ComputeMs int64
	// TimedOut means the function had not finished within the timeout.
	TimedOut bool
	// HeadersSent means the status and headers were already written to the caller.
	HeadersSent bool
}

// ComputeMs turns a measured duration into billed compute-milliseconds:
// rounded up to a whole millisecond, and never less than 1.
func ComputeMs(d time.Duration) int64 {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	return max(ms, 1)
}

// Defaults for Config fields left zero.
const (
	DefaultPathPrefix          = "/v1/invoke/"
	DefaultMaxBodyBytes        = 6 << 20
	DefaultBufferResponseBytes = 1 << 20
	DefaultTimeout             = 30 * time.Second
	DefaultPollInterval        = 500 * time.Millisecond
	DefaultClockSkew           = 5 * time.Second
	DefaultMaxEntryAge         = 30 * time.Second
	DefaultNegativeTTL         = 2 * time.Second
	DefaultKeyCacheSize        = 100_000
	DefaultRouteCacheSize      = 10_000
	DefaultStoreTimeout        = 5 * time.Second
	DefaultDialTimeout         = 5 * time.Second
)

// DefaultBodyIdleTimeout is Config.BodyIdleTimeout when left zero.
const DefaultBodyIdleTimeout = 20 * time.Second

// Config tunes a Gateway. Zero fields take the defaults above.
type Config struct {
	// PathPrefix is the part of the request path before {vendor}; set it to
	// "/" when the handler is mounted behind http.StripPrefix("/v1/invoke").
	PathPrefix string
	// DefaultRateLimitPerKey is calls per second per API key; 0 means no
	// limit. A version's RateLimitPerSecond, when above zero, lowers it.
	DefaultRateLimitPerKey int
	// MaxBodyBytes is the largest request body accepted (413 above it).
	MaxBodyBytes int64
	// BufferResponseBytes: answers with a Content-Length up to this are read
	// whole before they are sent, so their X-Compute-Ms header is final.
	// Others are streamed and carry the final value in the X-Compute-Ms trailer.
	BufferResponseBytes int64
	// DefaultTimeout applies to versions whose TimeoutMs is not set.
	DefaultTimeout time.Duration
	// AllowPrivateUpstreams lets backends live at loopback, private and
	// other non-public addresses (development and tests only).
	AllowPrivateUpstreams bool
	// PollInterval is how often the invalidation poller asks the stores
	// what changed.
	PollInterval time.Duration
	// ClockSkew is how far back each poll reaches before the previous one,
	// to cover clock differences between replicas and the database.
	ClockSkew time.Duration
	// MaxEntryAge is the longest a cached key or route is trusted, should
	// the poller miss a change or the stores be unreachable.
	MaxEntryAge time.Duration
	// MaxStale is how long past MaxEntryAge a cached key or route is still
	// served while the store cannot be reached (stale-if-error, see
	// readThrough); default DefaultMaxStale, negative turns it off.
	MaxStale time.Duration
	// NegativeTTL is how long an unknown key or function is remembered as unknown.
	NegativeTTL time.Duration
	// KeyCacheSize and RouteCacheSize bound the caches (entries each; the
	// negative caches are bounded by the same numbers).
	KeyCacheSize   int
	RouteCacheSize int
	// StoreTimeout bounds one store lookup.
	StoreTimeout time.Duration
	// DialTimeout bounds connecting to an HTTP backend.
	DialTimeout time.Duration
	// BodyIdleTimeout cuts a request body that sends nothing for this long
	// while the gateway reads it (DefaultBodyIdleTimeout when zero): bodies
	// stream, but one byte every few seconds must not hold a connection,
	// and a call slot at the function, forever.
	BodyIdleTimeout time.Duration
	// Registerer receives the gateway's Prometheus metrics; nil keeps them
	// in a private registry.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
	// Clock decides call times and cache ages; nil is the system clock.
	Clock fnmarket.Clock
}

func (c *Config) setDefaults() {
	if c.PathPrefix == "" {
		c.PathPrefix = DefaultPathPrefix
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.BufferResponseBytes <= 0 {
		c.BufferResponseBytes = DefaultBufferResponseBytes
	}
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = DefaultTimeout
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ClockSkew <= 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.MaxEntryAge <= 0 {
		c.MaxEntryAge = DefaultMaxEntryAge
	}
	if c.MaxStale == 0 {
		c.MaxStale = DefaultMaxStale
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.KeyCacheSize <= 0 {
		c.KeyCacheSize = DefaultKeyCacheSize
	}
	if c.RouteCacheSize <= 0 {
		c.RouteCacheSize = DefaultRouteCacheSize
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.BodyIdleTimeout <= 0 {
		c.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = fnmarket.SystemClock{}
	}
}

// routeKey names one cached route; version 0 is "the published one".
type routeKey struct {
	vendor, name string
	version      int
}

func (k routeKey) tag() string { return k.vendor + "/" + k.name }

// Gateway is the invocation handler: authenticate, route, limit, dispatch,
// measure, meter. It is an http.Handler for the PathPrefix.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	clock    fnmarket.Clock
	keyStore KeyStore
	routeDB  RouteStore
	admitter Admitter
	meter    Meter
	metrics  *metrics

	keys   *readThrough[keyHash, Key]
	routes *readThrough[routeKey, catalog.Route]

	httpInv *httpInvoker
	idem    IdempotencyStore

	invMu    sync.RWMutex
	invokers map[string]Invoker

	runMu   sync.Mutex
	stop    context.CancelFunc
	running sync.WaitGroup
}

// New returns a Gateway over its stores, admitter and meter, with the HTTP
// invoker registered for backend type "http". Call Start to run the
// invalidation poller and Close to stop it.
func New(cfg Config, keys KeyStore, routes RouteStore, admitter Admitter, meter Meter) (*Gateway, error) {
	if keys == nil || routes == nil || admitter == nil || meter == nil {
		return nil, errors.New("gateway: a key store, route store, admitter and meter are required")
	}
	cfg.setDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		keyStore: keys,
		routeDB:  routes,
		admitter: admitter,
		meter:    meter,
		metrics:  m,
		invokers: make(map[string]Invoker),
	}
	g.keys = &readThrough[keyHash, Key]{
		found:   newLRUCache[keyHash, Key](cfg.KeyCacheSize, nil),
		missing: newLRUCache[keyHash, struct{}](cfg.KeyCacheSize, nil),
		maxAge:  cfg.MaxEntryAge,
		negTTL:  cfg.NegativeTTL,
		timeout: cfg.StoreTimeout,
		clock:   cfg.Clock,
		load: func(ctx context.Context, h keyHash) (Key, error) {
			return keys.KeyByHash(ctx, h.String())
		},
		onLookup: m.cacheLookups("key"),
	}
	g.routes = &readThrough[routeKey, catalog.Route]{
		found:   newLRUCache[routeKey, catalog.Route](cfg.RouteCacheSize, routeKey.tag),
		missing: newLRUCache[routeKey, struct{}](cfg.RouteCacheSize, routeKey.tag),
		maxAge:  cfg.MaxEntryAge,
		negTTL:  cfg.NegativeTTL,
		timeout: cfg.StoreTimeout,
		clock:   cfg.Clock,
		load: func(ctx context.Context, k routeKey) (catalog.Route, error) {
			return routes.Route(ctx, k.vendor, k.name, k.version)
		},
		onLookup: m.cacheLookups("route"),
	}
	g.keys.staleIfError(cfg.MaxStale)
	g.routes.staleIfError(cfg.MaxStale)
	g.httpInv = newHTTPInvoker(cfg)
	g.invokers[BackendHTTP] = g.httpInv
	return g, nil
}

// RegisterInvoker makes the gateway run versions whose backend type is
// backendType with inv, replacing any invoker already registered for it.
func (g *Gateway) RegisterInvoker(backendType string, inv Invoker) {
	g.invMu.Lock()
	defer g.invMu.Unlock()
	g.invokers[backendType] = inv
}

// RegisterKinds makes the gateway run every kind of kinds: a kind is its own
// Invoker, except "http", whose invoker is built in. A kind that cannot
// invoke is an error, so a version the API accepts is one the gateway runs.
func (g *Gateway) RegisterKinds(kinds *backend.Registry) error {
	for _, t := range kinds.Types() {
		k, _ := kinds.Kind(t)
		if _, ok := k.(HTTPKind); ok && t == BackendHTTP {
			continue
		}
		inv, ok := k.(Invoker)
		if !ok {
			return fmt.Errorf("gateway: backend kind %q has no invoker", t)
		}
		g.RegisterInvoker(t, inv)
	}
	return nil
}

func (g *Gateway) invoker(backendType string) (Invoker, bool) {
	g.invMu.RLock()
	defer g.invMu.RUnlock()
	inv, ok := g.invokers[backendType]
	return inv, ok
}

// Start runs the invalidation poller until ctx ends or Close is called.
// Without it, cached keys and routes are trusted for up to MaxEntryAge.
func (g *Gateway) Start(ctx context.Context) {
	g.runMu.Lock()
	defer g.runMu.Unlock()
	if g.stop != nil {
		return
	}
	ctx, g.stop = context.WithCancel(ctx)
	g.running.Go(func() { g.poll(ctx) })
}

// Close stops the invalidation poller and closes idle upstream connections.
// It does not wait for calls in flight: the HTTP server's Shutdown does that.
func (g *Gateway) Close() error {
	g.runMu.Lock()
	if g.stop != nil {
		g.stop()
	}
	g.runMu.Unlock()
	g.running.Wait()
	g.httpInv.transport.CloseIdleConnections()
	g.httpInv.h1.closeIdle()
	return nil
}

// poll drops cached keys and routes the stores report as changed. Each poll
// reaches ClockSkew further back than the last successful one, so a change
// stamped by a clock a little behind ours is still seen.
func (g *Gateway) poll(ctx context.Context) {
	keysSince := g.clock.Now().Add(-g.cfg.ClockSkew)
	routesSince := keysSince
	t := time.NewTicker(g.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := g.clock.Now()
		if err := g.pollKeys(ctx, keysSince); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.metrics.pollErrors.WithLabelValues("key").Inc()
			g.log.LogAttrs(ctx, slog.LevelWarn, "gateway: poll changed keys", slog.Any("err", err))
		} else {
			keysSince = now.Add(-g.cfg.ClockSkew)
		}
		if err := g.pollRoutes(ctx, routesSince); err != nil {
			if ctx.Err() != nil {
				return
			}
			g.metrics.pollErrors.WithLabelValues("route").Inc()
			g.log.LogAttrs(ctx, slog.LevelWarn, "gateway: poll changed functions", slog.Any("err", err))
		} else {
			routesSince = now.Add(-g.cfg.ClockSkew)
		}
	}
}

func (g *Gateway) pollKeys(ctx context.Context, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	hashes, err := g.keyStore.KeysChangedSince(ctx, since)
	if err != nil {
		return err
	}
	for _, h := range hashes {
		if kh, ok := parseKeyHash(h); ok {
			g.keys.drop(kh)
		}
	}
	return nil
}

func (g *Gateway) pollRoutes(ctx context.Context, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.StoreTimeout)
	defer cancel()
	refs, err := g.routeDB.FunctionsChangedSince(ctx, since)
	if err != nil {
		return err
	}
	for _, f := range refs {
		g.routes.dropTag(routeKey{vendor: f.VendorSlug, name: f.Name}.tag())
	}
	return nil
}

// ServeHTTP answers one invocation.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	started := time.Now()
	// The call is made now, though it may be refused: its header values
	// serve the answer's headers from the start.
	call := &Invocation{ID: newInvocationID()}
	id := call.ID
	h := w.Header()
	call.hv.set(h, headerInvocationID, id)

	vendor, name, version, rest, ok := parseInvokePath(r.URL.EscapedPath(), g.cfg.PathPrefix)
	if !ok {
		g.refuse(w, r, "", "", fnmarket.Errorf(fnmarket.ENOTFOUND, "no such function; call /v1/invoke/{vendor}/{name}[@{version}][/{path}]"))
		return
	}
	key, err := g.authenticate(w, r)
	if err != nil {
		g.refuse(w, r, "", "", err)
		return
	}
	route, err := g.routes.get(r.Context(), routeKey{vendor: vendor, name: name, version: version})
	if err != nil {
		if fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND {
			err = fnmarket.Errorf(fnmarket.ENOTFOUND, "no published function %s/%s%s", vendor, name, versionSuffix(version))
		} else {
			err = storeUnavailable(w, "look up function", err)
		}
		g.refuse(w, r, "", "", err)
		return
	}
	// From here on the function is known to exist, so its names are safe
	// metric labels (a caller cannot grow their number).
	vendor, name = route.VendorSlug, route.Function
	if !key.allows(vendor, name) {
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.EFORBIDDEN, "this API key may not call %s/%s", vendor, name))
		return
	}
	if restEscapesBase(rest) {
		// An encoded "../" would reach another path on the vendor's host
		// at this function's price.
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.EINVALID, "the path after the function's name must not contain \".\" or \"..\" segments, in any encoding"))
		return
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		g.refuse(w, r, vendor, name, fnmarket.Errorf(fnmarket.ETOOLARGE, "the request body is over the limit of %d bytes", g.cfg.MaxBodyBytes))
		return
	}
	inv, ok := g.invoker(route.Version.Backend.Type)
	if !ok {
		g.refuse(w, r, vendor, name, &fnmarket.Error{Code: fnmarket.EINTERNAL, Err: fmt.Errorf("no invoker for backend type %q", route.Version.Backend.Type)})
		return
	}
	timeout := time.Duration(route.Version.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = g.cfg.DefaultTimeout
	}
	var idem *idemCall
	if _, ok := r.Header[HeaderIdempotencyKey]; ok && g.idem != nil {
		var done bool
		if idem, done = g.beginIdempotent(w, r, key, vendor, name, timeout); done {
			return
		}
		w = idem.rec
	}
	at := g.clock.Now()
	admReq := usage.AdmissionRequest{
		Caller: usage.Caller{
			ConsumerID:         key.ConsumerID,
			KeyID:              key.ID,
			RateLimitPerSecond: effectiveRateLimit(g.cfg.DefaultRateLimitPerKey, route.Version.RateLimitPerSecond, key.RateLimitPerSecond),
			MonthlySpendCap:    key.MonthlySpendCap,
			Account:            key.Account,
		},
		InvocationID: id,
		FunctionID:   route.FunctionID,
		Version:      route.Version.Version,
		Pricing:      route.Version.Pricing,
		TimeoutMs:    ComputeMs(timeout),
		At:           at,
	}
	adm, err := g.admitter.Admit(r.Context(), admReq)
	if err != nil {
		idem.release(r.Context())
		g.refuse(w, r, vendor, name, &fnmarket.Error{Code: fnmarket.EINTERNAL, Message: "admit call", Err: err})
		return
	}
	setRateLimitHeaders(h, adm, &call.hv)
	if !adm.Allowed {
		idem.release(r.Context())
		g.refuse(w, r, vendor, name, refusal(h, adm, key))
		return
	}

	call.Route, call.ConsumerID, call.Rest, call.At, call.Timeout = route, key.ConsumerID, rest, at, timeout
	call.Pricing, call.Position = route.Version.Pricing, adm.CallsBefore
	if r.Body != nil && r.Body != http.NoBody {
		call.bodyStore = cappedBody{rc: r.Body, limit: g.cfg.MaxBodyBytes, left: g.cfg.MaxBodyBytes, idle: g.cfg.BodyIdleTimeout, w: w}
		call.body = &call.bodyStore
		r.Body = call.body
	}
	out, err := inv.Invoke(w, idem.request(r), call)
	callerGone := r.Context().Err() != nil
	var cost decimal.Decimal
	if out.Reached {
		cost = call.Cost(out.ComputeMs)
	}
	// Settle before the answer ends, so the caller's next call sees this
	// one's real cost, not its worst case. The caller may be gone: the
	// settlement must still happen. A call that holds nothing and ran needs
	// no round trip: the meter adds its cost to the spend counters.
	credit, settled := decimal.Zero, false
	if !out.Reached || adm.Hold.IsPositive() {
		var serr error
		credit, serr = g.admitter.Settle(context.WithoutCancel(r.Context()), admReq, adm, out.Reached, cost)
		if settled = serr == nil; !settled && g.log.Enabled(r.Context(), slog.LevelWarn) {
			g.log.LogAttrs(r.Context(), slog.LevelWarn, "gateway: settle call; the meter settles it when it flushes",
				slog.String("invocation_id", id), slog.Any("err", serr))
		}
	}
	if out.Reached {
		g.meter.Record(usage.Call{
			InvocationID: id,
			ConsumerID:   key.ConsumerID,
			KeyID:        key.ID,
			FunctionID:   route.FunctionID,
			Version:      route.Version.Version,
			Pricing:      route.Version.Pricing,
			CallsBefore:  adm.CallsBefore,
			At:           at,
			ComputeMs:    out.ComputeMs,
			Billable:     true,
			Error:        out.TimedOut || out.Status >= 500 || (err != nil && !callerGone),
			Cost:         cost,
			Credit:       credit,
			Free:         route.Version.Pricing.SlotAt(adm.CallsBefore).Free,
			Settled:      settled,
		})
	}
	if err != nil {
		g.logCallError(r, call, key, out, err, callerGone)
	}
	switch {
	case err == nil:
		idem.finish(r.Context(), out, nil)
		g.metrics.observe(vendor, name, out.Status, time.Since(started))
	case !out.HeadersSent:
		if out.Reached {
			call.setMeasured(h, out.ComputeMs, &call.hv)
		}
		status := fnmarket.WriteProblem(w, err)
		idem.finish(r.Context(), out, err)
		g.metrics.observe(vendor, name, status, time.Since(started))
	default:
		idem.finish(r.Context(), out, err)
		// The answer is already on its way and cannot become a problem:
		// cut the connection so the caller sees it is incomplete.
		g.metrics.observe(vendor, name, 0, time.Since(started))
		panic(http.ErrAbortHandler)
	}
}

// refusal is the error a refused admission answers with.
func refusal(h http.Header, adm usage.Admission, key Key) error {
	switch adm.Reason {
	case fnmarket.ESPENDCAP:
		return fnmarket.Errorf(fnmarket.ESPENDCAP, "this call's worst case does not fit in the monthly spend cap of this API key or of its account")
	case fnmarket.EPAYMENTREQUIRED:
		msg := "this account has no way to pay for this call: add a card or prepaid credit"
		if key.Account.Standing == usage.StandingSuspended {
			msg = "this account has an invoice past due: pay it to call functions again"
		}
		if u := key.Account.PayURL; u != "" {
			h.Set("Link", "<"+u+">; rel=\"payment\"")
			msg += " at " + u
		}
		return fnmarket.Errorf(fnmarket.EPAYMENTREQUIRED, "%s", msg)
	case fnmarket.EUNAVAILABLE:
		h.Set("Retry-After", "1")
		return fnmarket.Errorf(fnmarket.EUNAVAILABLE, "this key's spend cap, credit or standing cannot be checked right now; retry shortly")
	}
	h.Set("Retry-After", strconv.FormatInt(ceilSeconds(adm.RetryAfter), 10))
	return fnmarket.Errorf(fnmarket.ERATELIMITED, "rate limit of %d calls per second reached", adm.Limit)
}

// storeUnavailable is the refusal of a call whose key or function is not
// cached and cannot be looked up (the database is unreachable): 503 with
// Retry-After, so clients back off and retry, never a 500. It is logged as
// an error with its cause.
func storeUnavailable(w http.ResponseWriter, doing string, err error) error {
	w.Header().Set("Retry-After", "5")
	return &fnmarket.Error{Code: fnmarket.EUNAVAILABLE, Message: doing + ": the store is unreachable; retry shortly", Err: err}
}

// refuse answers a call the gateway turned down before it reached the
// function. Refusals are never billed and never recorded with the meter.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, vendor, name string, err error) {
	if code := fnmarket.ErrorCode(err); (code == fnmarket.EINTERNAL || (code == fnmarket.EUNAVAILABLE && errors.Unwrap(err) != nil)) &&
		g.log.Enabled(r.Context(), slog.LevelError) {
		g.log.LogAttrs(r.Context(), slog.LevelError, "gateway: refuse call",
			slog.String("invocation_id", w.Header().Get(headerInvocationID)),
			slog.String("vendor", vendor), slog.String("function", name),
			slog.Any("err", err))
	}
	status := fnmarket.WriteProblem(w, err)
	g.metrics.count(vendor, name, statusClass(status))
}

func (g *Gateway) logCallError(r *http.Request, call *Invocation, key Key, out Outcome, err error, callerGone bool) {
	level := slog.LevelWarn
	if callerGone {
		level = slog.LevelDebug
	}
	if fnmarket.ErrorCode(err) == fnmarket.EINTERNAL && !callerGone {
		level = slog.LevelError
	}
	if !g.log.Enabled(r.Context(), level) {
		return
	}
	g.log.LogAttrs(r.Context(), level, "gateway: call failed",
		slog.String("invocation_id", call.ID),
		slog.String("vendor", call.Route.VendorSlug),
		slog.String("function", call.Route.Function),
		slog.Int("version", call.Route.Version.Version),
		slog.String("key_id", key.ID),
		slog.Bool("billed", out.Reached),
		slog.Bool("timed_out", out.TimedOut),
		slog.Bool("caller_gone", callerGone),
		slog.Any("err", err))
}

// authenticate finds the caller's key from the Authorization bearer token or
// the X-API-Key header. The key itself is only ever hashed, never kept or logged.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (Key, error) {
	raw := presentedKey(r)
	if raw == "" {
		return Key{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>")
	}
	k, err := g.keys.get(r.Context(), hashPresentedKey(raw))
	switch {
	case fnmarket.ErrorCode(err) == fnmarket.ENOTFOUND:
		return Key{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "the API key is not valid")
	case err != nil:
		return Key{}, storeUnavailable(w, "look up API key", err)
	case k.Revoked:
		return Key{}, fnmarket.Errorf(fnmarket.EUNAUTHORIZED, "the API key has been revoked")
	case k.ExpiresAt != nil && !g.clock.Now().Before(*k.ExpiresAt):
		if k.Rotated {
			return Key{}, fnmarket.Errorf(fnmarket.EKEYEXPIRED, "this API key was rotated and its grace period ended at %s; use the new key", k.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return Key{}, fnmarket.Errorf(fnmarket.EKEYEXPIRED, "the API key expired at %s", k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return k, nil
}

// allows reports whether the key may call vendor/name.
func (k Key) allows(vendor, name string) bool {
	if len(k.AllowedFunctions) == 0 {
		return true
	}
	for _, f := range k.AllowedFunctions {
		if f == vendor+"/"+name {
			return true
		}
	}
	return false
}

// keyHash is the SHA-256 of an API key: the key cache's key, so that a cached
// key is found without building the hex form (fnmarket.HashAPIKey, String)
// that only a store lookup needs.
type keyHash [sha256.Size]byte

// hashPresentedKey is the keyHash of raw, which is fnmarket.HashAPIKey(raw)
// before its hex encoding.
func hashPresentedKey(raw string) keyHash {
	var buf [128]byte // keys are far shorter: no copy on the heap
	if len(raw) <= len(buf) {
		return sha256.Sum256(append(buf[:0], raw...))
	}
	return sha256.Sum256([]byte(raw))
}

// String is the hash as fnmarket.HashAPIKey writes it.
func (h keyHash) String() string { return hex.EncodeToString(h[:]) }

// parseKeyHash reads a hash written by fnmarket.HashAPIKey.
func parseKeyHash(s string) (keyHash, bool) {
	var h keyHash
	if len(s) != hex.EncodedLen(len(h)) {
		return h, false
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err == nil
}

func presentedKey(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			return strings.TrimSpace(a[7:])
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

// effectiveRateLimit is the lowest of the limits above zero: the
// gateway's default, the version's and the key's own; 0 (no limit) when
// none is set.
func effectiveRateLimit(def int, more ...int) int {
	limit := max(def, 0)
	for _, l := range more {
		if l > 0 && (limit == 0 || l < limit) {
			limit = l
		}
	}
	return limit
}

func setRateLimitHeaders(h http.Header, adm usage.Admission, hv *headerValues) {
	if adm.Limit <= 0 {
		return
	}
	hv.set(h, "X-Ratelimit-Limit", strconv.Itoa(adm.Limit))
	hv.set(h, "X-Ratelimit-Remaining", strconv.Itoa(max(adm.Remaining, 0)))
	hv.set(h, "X-Ratelimit-Reset", strconv.FormatInt(ceilSeconds(adm.Reset), 10))
}

// ceilSeconds is d in whole seconds, rounded up, at least 1.
func ceilSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 1)
}

func versionSuffix(v int) string {
	if v == 0 {
		return ""
	}
	return "@" + strconv.Itoa(v)
}

func newInvocationID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it crashes instead)
	return hex.EncodeToString(b[:])
}
