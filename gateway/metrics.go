package gateway

import (
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series. Labels name vendors and
// functions that exist (never what a caller typed for an unknown one), and
// never a consumer or a key.
type metrics struct {
	calls      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	cache      *prometheus.CounterVec
	pollErrors *prometheus.CounterVec

	// series remembers the counters and observers already resolved, so a
	// call does not hash its labels into the vectors every time.
	seriesMu  sync.RWMutex
	counters  map[[3]string]prometheus.Counter  // vendor, function, class
	observers map[[2]string]prometheus.Observer // vendor, function
}

// maxSeriesCached bounds the resolved series kept; the maps are emptied when
// either reaches it (the series themselves stay in their vectors).
const maxSeriesCached = 10_000

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fnmarket_gateway_calls_total",
			Help: "Invocations answered, by vendor, function and status class (2xx..5xx; \"cut\" for an answer cut mid-stream; \"replayed\" for an answer replayed for a repeated Idempotency-Key). Refusals before the function is known have empty vendor and function.",
		}, []string{"vendor", "function", "status_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fnmarket_gateway_call_duration_seconds",
			Help:    "Wall time of invocations dispatched to a function, from arrival to the end of the answer.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"vendor", "function"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fnmarket_gateway_cache_lookups_total",
			Help: "Key and route cache lookups, by cache and result (hit or miss).",
		}, []string{"cache", "result"}),
		pollErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fnmarket_gateway_invalidation_poll_errors_total",
			Help: "Failed polls for changed keys or functions, by cache.",
		}, []string{"cache"}),
		counters:  make(map[[3]string]prometheus.Counter),
		observers: make(map[[2]string]prometheus.Observer),
	}
	var err error
	m.calls, err = register(reg, m.calls)
	if err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.cache, err = register(reg, m.cache); err != nil {
		return nil, err
	}
	if m.pollErrors, err = register(reg, m.pollErrors); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to reg, or returns the collector already there, so several
// gateways (as in tests) can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) count(vendor, function, class string) {
	k := [3]string{vendor, function, class}
	m.seriesMu.RLock()
	c, ok := m.counters[k]
	m.seriesMu.RUnlock()
	if !ok {
		c = m.calls.WithLabelValues(vendor, function, class)
		m.seriesMu.Lock()
		if len(m.counters) >= maxSeriesCached {
			clear(m.counters)
		}
		m.counters[k] = c
		m.seriesMu.Unlock()
	}
	c.Inc()
}

// durationOf is the duration observer of vendor/function.
func (m *metrics) durationOf(vendor, function string) prometheus.Observer {
	k := [2]string{vendor, function}
	m.seriesMu.RLock()
	o, ok := m.observers[k]
	m.seriesMu.RUnlock()
	if !ok {
		o = m.duration.WithLabelValues(vendor, function)
		m.seriesMu.Lock()
		if len(m.observers) >= maxSeriesCached {
			clear(m.observers)
		}
		m.observers[k] = o
		m.seriesMu.Unlock()
	}
	return o
}

// observe counts a dispatched call; status 0 means the answer was cut.
func (m *metrics) observe(vendor, function string, status int, d time.Duration) {
	class := "cut"
	if status != 0 {
		class = statusClass(status)
	}
	m.count(vendor, function, class)
	m.durationOf(vendor, function).Observe(d.Seconds())
}

// cacheLookups returns the hit/miss counter function for one cache, with its
// series resolved once rather than on every call.
func (m *metrics) cacheLookups(cache string) func(hit bool) {
	hits, misses := m.cache.WithLabelValues(cache, "hit"), m.cache.WithLabelValues(cache, "miss")
	return func(hit bool) {
		if hit {
			hits.Inc()
		} else {
			misses.Inc()
		}
	}
}

func statusClass(status int) string {
	switch {
	case status >= 500:
		return "5xx"
	case status >= 400:
		return "4xx"
	case status >= 300:
		return "3xx"
	case status >= 200:
		return "2xx"
	default:
		return "1xx"
	}
}
