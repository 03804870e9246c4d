package metering

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// aggregate is the sum of some calls of one shard, in the shape a flush
// applies to Redis: live hash increments and, for calls whose hold could not
// be settled as they ended, the settlement of their spend and credit
// counters (see Limiter.Settle).
type aggregate struct {
	live map[string]int64
	// counters are increments of plain Redis counters (spend per key and
	// month, per account and month, credit left per consumer), by key.
	counters map[counterKey]int64
	n        int64 // how many calls are summed
	// fields keeps each row's live hash field names once built, so adding
	// a call builds no string for a row already seen by this aggregate.
	fields map[rowKey]*rowFields
}

// rowFields are one row's live hash field names, by metric: the fixed
// metrics first, then the histogram buckets.
type rowFields [len(fixedMetrics) + maxHistogramBuckets]string

// fixedMetrics are the metrics every row may have, in rowFields' order.
var fixedMetrics = [...]string{metricCalls, metricErrors, metricBillable, metricComputeMs, metricCost, metricFree, metricCredit}

// maxHistogramBuckets bounds len(HistogramBounds)+1 (the overflow bucket).
const maxHistogramBuckets = 32

// field is the live hash field of rk's metric i (an index in rowFields);
// metric names it.
func (a *aggregate) field(rk rowKey, i int, metric string) string {
	if i >= len(rowFields{}) {
		return rk.field(metric)
	}
	if a.fields == nil {
		a.fields = map[rowKey]*rowFields{}
	}
	f := a.fields[rk]
	if f == nil {
		f = new(rowFields)
		a.fields[rk] = f
	}
	if f[i] == "" {
		f[i] = rk.field(metric)
	}
	return f[i]
}

// Indexes of fixedMetrics in rowFields.
const (
	fieldCalls = iota
	fieldErrors
	fieldBillable
	fieldComputeMs
	fieldCost
	fieldFree
	fieldCredit
)

// counterKey names one spend or credit counter of a shard.
type counterKey struct {
	Kind       string `json:"t"` // counterKeySpend, counterAccountSpend or counterCredit
	ConsumerID string `json:"c"` // decides the shard
	KeyID      string `json:"k,omitempty"`
	Month      string `json:"m,omitempty"`
}

// Kinds of counterKey.
const (
	counterKeySpend     = "ks"
	counterAccountSpend = "as"
	counterCredit       = "cr"
)

func newAggregate() *aggregate {
	return &aggregate{live: map[string]int64{}, counters: map[counterKey]int64{}}
}

func (a *aggregate) empty() bool { return a.n == 0 && len(a.live) == 0 && len(a.counters) == 0 }

// addSpooled adds one call as the spool keeps it (priced once, as the
// gateway answered it), so replaying a spooled call gives exactly what
// recording it gave.
func (a *aggregate) addSpooled(c spooledCall) {
	at := time.UnixMicro(c.At).UTC()
	rk := rowKey{
		HourStart:  at.Truncate(time.Hour).Unix(),
		ConsumerID: c.ConsumerID,
		KeyID:      c.KeyID,
		FunctionID: c.FunctionID,
		Version:    c.Version,
	}
	a.n++
	a.live[a.field(rk, fieldCalls, metricCalls)]++
	if c.Error {
		a.live[a.field(rk, fieldErrors, metricErrors)]++
	}
	if !c.Billable {
		return
	}
	a.live[a.field(rk, fieldBillable, metricBillable)]++
	if c.ComputeMs != 0 {
		a.live[a.field(rk, fieldComputeMs, metricComputeMs)] += c.ComputeMs
	}
	bucket := histogramBucket(c.ComputeMs)
	a.live[a.field(rk, len(fixedMetrics)+bucket, histogramMetric(bucket))]++
	// The cost field is written even when zero: its presence marks the
	// row as priced by the gateway.
	a.live[a.field(rk, fieldCost, metricCost)] += c.SpendPico
	if c.Free {
		a.live[a.field(rk, fieldFree, metricFree)]++
	}
	if c.CreditPico != 0 {
		a.live[a.field(rk, fieldCredit, metricCredit)] += c.CreditPico
	}
	if c.Unsettled {
		// Its hold stays in Redis until it expires and is released
		// (Limiter); the call's real cost and credit use go in here.
		month := monthOf(at)
		if c.SpendPico != 0 {
			a.counters[counterKey{Kind: counterKeySpend, ConsumerID: c.ConsumerID, KeyID: c.KeyID, Month: month}] += c.SpendPico
			a.counters[counterKey{Kind: counterAccountSpend, ConsumerID: c.ConsumerID, Month: month}] += c.SpendPico
		}
		if c.CreditPico != 0 {
			a.counters[counterKey{Kind: counterCredit, ConsumerID: c.ConsumerID}] -= c.CreditPico
		}
	}
}

// spooledCall is a call as the spool keeps it: what counting needs, with
// its cost as the gateway priced it (catalog.Pricing.CallCost at the call's
// admission position) in pico-units.
type spooledCall struct {
	InvocationID string `json:"i"`
	ConsumerID   string `json:"c"`
	KeyID        string `json:"k"`
	FunctionID   string `json:"f"`
	Version      int    `json:"v"`
	At           int64  `json:"at"` // Unix microseconds
	ComputeMs    int64  `json:"ms"`
	Billable     bool   `json:"b"`
	Error        bool   `json:"e"`
	SpendPico    int64  `json:"s"`
	Free         bool   `json:"fr,omitempty"`
	CreditPico   int64  `json:"cr,omitempty"`
	Unsettled    bool   `json:"u,omitempty"`
}

func spooledOf(c Call) spooledCall {
	sc := spooledCall{InvocationID: c.InvocationID, ConsumerID: c.ConsumerID, KeyID: c.KeyID, FunctionID: c.FunctionID,
		Version: c.Version, At: c.At.UnixMicro(), ComputeMs: c.ComputeMs, Billable: c.Billable, Error: c.Error}
	if c.Billable {
		sc.SpendPico = toPico(c.Cost)
		sc.Free = c.Free
		sc.CreditPico = toPico(c.Credit)
		sc.Unsettled = !c.Settled
	}
	return sc
}

// appendSpoolLine appends the call's spool record (a JSON line) without
// reflection: this runs once per call on the gateway's path.
func (c spooledCall) appendSpoolLine(b []byte) []byte {
	b = append(b, `{"t":"c","call":{"i":`...)
	b = appendJSONString(b, c.InvocationID)
	b = append(b, `,"c":`...)
	b = appendJSONString(b, c.ConsumerID)
	b = append(b, `,"k":`...)
	b = appendJSONString(b, c.KeyID)
	b = append(b, `,"f":`...)
	b = appendJSONString(b, c.FunctionID)
	b = append(b, `,"v":`...)
	b = strconv.AppendInt(b, int64(c.Version), 10)
	b = append(b, `,"at":`...)
	b = strconv.AppendInt(b, c.At, 10)
	b = append(b, `,"ms":`...)
	b = strconv.AppendInt(b, c.ComputeMs, 10)
	b = append(b, `,"b":`...)
	b = strconv.AppendBool(b, c.Billable)
	b = append(b, `,"e":`...)
	b = strconv.AppendBool(b, c.Error)
	b = append(b, `,"s":`...)
	b = strconv.AppendInt(b, c.SpendPico, 10)
	if c.Free {
		b = append(b, `,"fr":true`...)
	}
	if c.CreditPico != 0 {
		b = append(b, `,"cr":`...)
		b = strconv.AppendInt(b, c.CreditPico, 10)
	}
	if c.Unsettled {
		b = append(b, `,"u":true`...)
	}
	return append(b, "}}\n"...)
}

// appendJSONString quotes s as JSON; ids are plain ASCII, anything else goes
// through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// merge adds b into a.
func (a *aggregate) merge(b *aggregate) {
	a.n += b.n
	for k, v := range b.live {
		a.live[k] += v
	}
	for k, v := range b.counters {
		a.counters[k] += v
	}
}

// aggregateJSON is an aggregate as the spool stores it. Calls and Spend are
// what spools written before per-call holds carried (per-function call counts
// and per-key spend): still read, so such a spool replays, and applied as
// they were.
type aggregateJSON struct {
	N        int64            `json:"n"`
	Live     map[string]int64 `json:"live,omitempty"`
	Counters []counterDelta   `json:"counters,omitempty"`
	Spend    []spendDelta     `json:"spend,omitempty"`
}

type counterDelta struct {
	counterKey
	N int64 `json:"n"`
}

// spendDelta is a key's spend in a spool from before per-call holds.
type spendDelta struct {
	ConsumerID string `json:"c"`
	KeyID      string `json:"k"`
	Month      string `json:"m"`
	Pico       int64  `json:"p"`
}

func (a *aggregate) MarshalJSON() ([]byte, error) {
	j := aggregateJSON{N: a.n, Live: a.live}
	for k, v := range a.counters {
		j.Counters = append(j.Counters, counterDelta{k, v})
	}
	return json.Marshal(j)
}

func (a *aggregate) UnmarshalJSON(b []byte) error {
	var j aggregateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*a = *newAggregate()
	a.n = j.N
	for k, v := range j.Live {
		a.live[k] += v
	}
	for _, d := range j.Counters {
		a.counters[d.counterKey] += d.N
	}
	for _, d := range j.Spend {
		a.counters[counterKey{Kind: counterKeySpend, ConsumerID: d.ConsumerID, KeyID: d.KeyID, Month: d.Month}] += d.Pico
	}
	return nil
}

// scriptArgs lays the aggregate out for flushScript: KEYS are the applied
// marker, the live hash, then every fc and spend key; ARGV are the marker
// TTL, the counter TTL, the number of live fields, field/increment pairs, then
// one increment per counter key (spend and credit counters). Increments travel as decimal strings so Lua
// never turns them into floating point. With recordID the flush id is one
// more live field, flush|<id> incremented by 1, so it reaches the database
// with the counts, and every counter field carries the flush id
// (flushRowField), so the roll-up can count each flush at most once.
func (a *aggregate) scriptArgs(ks keyspace, shard int, flushID string, appliedTTL, counterTTL time.Duration, recordID bool) ([]string, []any) {
	keys := []string{ks.applied(shard, flushID), ks.live(shard)}
	n := len(a.live)
	if recordID {
		n++
	}
	args := []any{int64(appliedTTL / time.Second), int64(counterTTL / time.Second), n}
	if recordID {
		args = append(args, flushField(flushID), 1)
	}
	fields := make([]string, 0, len(a.live))
	for f := range a.live {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	for _, f := range fields {
		if recordID {
			args = append(args, flushRowField(flushID, f), a.live[f])
		} else {
			args = append(args, f, a.live[f])
		}
	}
	for k, v := range a.counters {
		keys = append(keys, ks.counter(shard, k))
		args = append(args, v)
	}
	return keys, args
}
