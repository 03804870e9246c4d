package metering

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// NumShards is how many Redis hash slots the counters are spread over. A
// consumer's counters, rate-limit state, spend and roll-up log all live in the
// shard its id hashes to, so every script touches one cluster slot.
const NumShards = 64

// picoExp is the exponent of the integer unit spend is kept in on Redis:
// 1e-12 of the currency, the finest scale a catalog price may have.
const picoExp = 12

// Live hash metric names.
const (
	metricCalls     = "calls"
	metricBillable  = "billable"
	metricComputeMs = "compute_ms"
	metricErrors    = "errors"
	// metricFree counts billable calls that took a free call, metricCost
	// sums their cost and metricCredit the part paid from prepaid credit
	// (pico-units), as the gateway priced each call.
	metricFree   = "free"
	metricCost   = "cost"
	metricCredit = "credit"
)

// shardOf maps a consumer to its shard: FNV-1a 32 of the id, modulo NumShards.
func shardOf(consumerID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(consumerID))
	return int(h.Sum32() % NumShards)
}

// keyspace builds the Redis keys under one prefix.
type keyspace struct{ prefix string }

func (k keyspace) tag(shard int) string { return fmt.Sprintf("%s{m%d}:", k.prefix, shard) }

func (k keyspace) live(shard int) string    { return k.tag(shard) + "live" }
func (k keyspace) pending(shard int) string { return k.tag(shard) + "pending" }
func (k keyspace) batch(shard int, id string) string {
	return k.tag(shard) + "batch:" + id
}
func (k keyspace) applied(shard int, flushID string) string {
	return k.tag(shard) + "applied:" + flushID
}
func (k keyspace) rateLimit(shard int, keyID string) string {
	return k.tag(shard) + "rl:" + keyID
}

// spend is an API key's spend in a month, held and settled (pico-units).
func (k keyspace) spend(shard int, keyID, month string) string {
	return k.tag(shard) + "spend:" + keyID + ":" + month
}

// accountSpend is a consumer account's spend in a month over all its keys.
func (k keyspace) accountSpend(shard int, consumerID, month string) string {
	return k.tag(shard) + "aspend:" + consumerID + ":" + month
}

// creditLeft is a consumer's prepaid credit not yet held or spent;
// creditGranted the grant total it was last topped up to.
func (k keyspace) creditLeft(shard int, consumerID string) string {
	return k.tag(shard) + "credit:" + consumerID
}
func (k keyspace) creditGranted(shard int, consumerID string) string {
	return k.tag(shard) + "creditg:" + consumerID
}

// position counts the positions handed out for a consumer's calls of one
// function in a month; returned keeps positions given back by calls that
// never reached the function, for the next calls to take.
func (k keyspace) position(shard int, f fcKey) string {
	return k.tag(shard) + "pos:" + f.ConsumerID + ":" + f.FunctionID + ":" + f.Month
}
func (k keyspace) returned(shard int, f fcKey) string {
	return k.tag(shard) + "posret:" + f.ConsumerID + ":" + f.FunctionID + ":" + f.Month
}

// holds maps a consumer's calls in flight (by invocation id) to what they
// hold; holdExpiry orders them by when they are released if never settled.
func (k keyspace) holds(shard int, consumerID string) string {
	return k.tag(shard) + "holds:" + consumerID
}
func (k keyspace) holdExpiry(shard int, consumerID string) string {
	return k.tag(shard) + "holdexp:" + consumerID
}

// admission are the keys admitScript and leaseScript take, in their order,
// for caller c's calls of fk's function and month (all in c's slot).
func (k keyspace) admission(shard int, c Caller, fk fcKey) []string {
	return []string{
		k.rateLimit(shard, c.KeyID),
		k.position(shard, fk),
		k.returned(shard, fk),
		k.spend(shard, c.KeyID, fk.Month),
		k.accountSpend(shard, c.ConsumerID, fk.Month),
		k.creditLeft(shard, c.ConsumerID),
		k.creditGranted(shard, c.ConsumerID),
		k.holds(shard, c.ConsumerID),
		k.holdExpiry(shard, c.ConsumerID),
	}
}

// counter is the Redis key of a spend or credit counter.
func (k keyspace) counter(shard int, c counterKey) string {
	switch c.Kind {
	case counterAccountSpend:
		return k.accountSpend(shard, c.ConsumerID, c.Month)
	case counterCredit:
		return k.creditLeft(shard, c.ConsumerID)
	default:
		return k.spend(shard, c.KeyID, c.Month)
	}
}

// fcKey names one consumer's calls of one function in one month (YYYYMM).
type fcKey struct {
	ConsumerID string `json:"c"`
	FunctionID string `json:"f"`
	Month      string `json:"m"`
}

// monthOf is the YYYYMM of t in UTC.
func monthOf(t time.Time) string { return t.UTC().Format("200601") }

// fieldEscaper keeps ids containing the separator from breaking field names.
var (
	fieldEscaper   = strings.NewReplacer("%", "%25", "|", "%7C")
	fieldUnescaper = strings.NewReplacer("%7C", "|", "%25", "%")
)

// rowKey identifies one usage row: consumer, key and function version in one hour.
type rowKey struct {
	HourStart  int64
	ConsumerID string
	KeyID      string
	FunctionID string
	Version    int
}

// field is the live hash field of metric for this row:
// hour|consumer|key|function|version|metric.
func (r rowKey) field(metric string) string {
	return strconv.FormatInt(r.HourStart, 10) + "|" + fieldEscaper.Replace(r.ConsumerID) + "|" +
		fieldEscaper.Replace(r.KeyID) + "|" + fieldEscaper.Replace(r.FunctionID) + "|" +
		strconv.Itoa(r.Version) + "|" + metric
}

// flushRowField is the live hash field of metric for this row as one flush
// adds it: <flush id>|hour|consumer|key|function|version|metric. A Meter with
// Confirmed set writes its counts this way, so each flush's contribution
// stays apart from the others' until the roll-up, which counts it only if the
// database does not hold the flush id yet.
func flushRowField(flushID, rowField string) string {
	return fieldEscaper.Replace(flushID) + "|" + rowField
}

// parseField splits a live hash field into its row and metric.
func parseField(f string) (rowKey, string, error) {
	_, rk, metric, err := splitField(f)
	return rk, metric, err
}

// splitField splits a live hash field into the flush id that added it (""
// for merged counts, written without a flush id), its row and metric.
func splitField(f string) (flushID string, rk rowKey, metric string, err error) {
	parts := strings.Split(f, "|")
	switch len(parts) {
	case 6:
	case 7:
		flushID = fieldUnescaper.Replace(parts[0])
		parts = parts[1:]
	default:
		return "", rowKey{}, "", fmt.Errorf("usage field %q: want 6 or 7 parts, got %d", f, len(parts))
	}
	hour, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return "", rowKey{}, "", fmt.Errorf("usage field %q: hour: %w", f, err)
	}
	version, err := strconv.Atoi(parts[4])
	if err != nil {
		return "", rowKey{}, "", fmt.Errorf("usage field %q: version: %w", f, err)
	}
	return flushID, rowKey{
		HourStart:  hour,
		ConsumerID: fieldUnescaper.Replace(parts[1]),
		KeyID:      fieldUnescaper.Replace(parts[2]),
		FunctionID: fieldUnescaper.Replace(parts[3]),
		Version:    version,
	}, parts[5], nil
}

// histogramBucket is the index of the HistogramBounds bucket computeMs falls
// in; len(HistogramBounds) is the overflow bucket.
func histogramBucket(computeMs int64) int {
	for i, b := range HistogramBounds {
		if computeMs <= b {
			return i
		}
	}
	return len(HistogramBounds)
}

func histogramMetric(bucket int) string { return "h" + strconv.Itoa(bucket) }

// toPico converts an amount of money to integer pico-units, rounding up so a
// spend cap never lets through what an exact count would refuse (catalog
// prices have at most 12 decimal places, so nothing is rounded in practice).
// Amounts beyond int64 saturate.
func toPico(d decimal.Decimal) int64 {
	// Every call's amounts go through here: catalog amounts have at most
	// 12 decimals and fit in int64, so scale the coefficient directly.
	if e := d.Exponent(); e <= 0 && e >= -picoExp {
		if c := d.Coefficient(); c.IsInt64() {
			v, m := c.Int64(), pow10[e+picoExp]
			if v <= math.MaxInt64/m && v >= math.MinInt64/m {
				return v * m
			}
		}
	}
	p := d.Shift(picoExp).Ceil()
	b := p.BigInt()
	if !b.IsInt64() {
		if b.Sign() < 0 {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return b.Int64()
}

// pow10[i] is 10^i.
var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12}

// fromPico converts integer pico-units back to money.
func fromPico(p int64) decimal.Decimal { return decimal.New(p, -picoExp) }

// flushFieldPrefix starts the live hash field that records a flush id
// (flush|<id>), written by the flush script of a Meter that has its flushes
// confirmed in the database. Counter fields start with the hour's Unix
// seconds, a number, so the two never collide; the field travels with the
// counts when the Rollup renames live to a batch.
const flushFieldPrefix = "flush|"

func flushField(flushID string) string { return flushFieldPrefix + flushID }

// fieldCount is one counter field of a live hash or batch.
type fieldCount struct {
	row    rowKey
	metric string
	n      int64
}

// flushCounts is what one flush added to a live hash: times is how often
// Redis applied it (its flush|<id> field; more than 1 when Redis lost its
// applied marker but kept the counts), fields hold times × its deltas.
type flushCounts struct {
	times  int64
	fields []fieldCount
}

// hashCounts is a live hash or batch parsed: merged counts without a flush
// id (from a Meter without Confirmed) and, per flush id, that flush's own
// counts, so a roll-up can leave out the flushes the database already holds.
type hashCounts struct {
	merged  []fieldCount
	flushes map[string]*flushCounts
}

// parseHash parses a live hash or batch, keeping only the rows accepted by
// keep (nil keeps all).
func parseHash(h map[string]string, keep func(rowKey) bool) (*hashCounts, error) {
	hc := &hashCounts{flushes: map[string]*flushCounts{}}
	flush := func(id string) *flushCounts {
		fc := hc.flushes[id]
		if fc == nil {
			fc = &flushCounts{}
			hc.flushes[id] = fc
		}
		return fc
	}
	for f, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("usage field %q: value %q: %w", f, v, err)
		}
		if id, ok := strings.CutPrefix(f, flushFieldPrefix); ok {
			if id != "" {
				flush(id).times += n
			}
			continue
		}
		id, rk, metric, err := splitField(f)
		if err != nil {
			return nil, err
		}
		if keep != nil && !keep(rk) {
			continue
		}
		fc := fieldCount{row: rk, metric: metric, n: n}
		if id == "" {
			hc.merged = append(hc.merged, fc)
		} else {
			fl := flush(id)
			fl.fields = append(fl.fields, fc)
		}
	}
	return hc, nil
}

// flushIDs returns the flush ids in the hash, sorted, and those Redis
// applied more than once.
func (hc *hashCounts) flushIDs() (ids, twice []string) {
	for id, fc := range hc.flushes {
		ids = append(ids, id)
		if fc.times > 1 {
			twice = append(twice, id)
		}
	}
	sort.Strings(ids)
	sort.Strings(twice)
	return ids, twice
}

// rows sums the merged counts and, once each, the counts of the flushes
// counted accepts (nil accepts all) into usage rows. Rows come out in no
// particular order.
func (hc *hashCounts) rows(counted func(flushID string) bool) ([]UsageRow, error) {
	idx := map[rowKey]int{}
	var rows []UsageRow
	add := func(fc fieldCount, times int64) error {
		i, ok := idx[fc.row]
		if !ok {
			i = len(rows)
			idx[fc.row] = i
			rows = append(rows, UsageRow{
				HourStart:  time.Unix(fc.row.HourStart, 0).UTC(),
				ConsumerID: fc.row.ConsumerID,
				KeyID:      fc.row.KeyID,
				FunctionID: fc.row.FunctionID,
				Version:    fc.row.Version,
				Histogram:  make([]int64, len(HistogramBounds)+1),
			})
		}
		r := &rows[i]
		n := fc.n / times
		switch fc.metric {
		case metricCalls:
			r.Calls += n
		case metricBillable:
			r.BillableCalls += n
		case metricComputeMs:
			r.ComputeMs += n
		case metricErrors:
			r.Errors += n
		case metricFree:
			r.FreeCalls += n
		case metricCost:
			r.CostPico += n
			r.Priced = true
		case metricCredit:
			r.CreditPico += n
		default:
			b, err := strconv.Atoi(strings.TrimPrefix(fc.metric, "h"))
			if !strings.HasPrefix(fc.metric, "h") || err != nil || b < 0 || b > len(HistogramBounds) {
				return fmt.Errorf("usage field of row %+v: unknown metric %q", fc.row, fc.metric)
			}
			r.Histogram[b] += n
		}
		return nil
	}
	for _, fc := range hc.merged {
		if err := add(fc, 1); err != nil {
			return nil, err
		}
	}
	for id, fl := range hc.flushes {
		if counted != nil && !counted(id) {
			continue
		}
		// Every application of a flush adds the same deltas with its
		// flush|<id> field, in one script on one hash: divide them out.
		times := max(fl.times, 1)
		for _, fc := range fl.fields {
			if err := add(fc, times); err != nil {
				return nil, err
			}
		}
	}
	for i := range rows {
		// A row without billable calls has nothing to price.
		rows[i].Priced = rows[i].Priced || rows[i].BillableCalls == 0
	}
	return rows, nil
}

// rowsFromHash turns live-hash (or batch) fields into usage rows, keeping
// only those accepted by keep (nil keeps all), each flush counted once.
// Rows come out in no particular order.
func rowsFromHash(h map[string]string, keep func(rowKey) bool) ([]UsageRow, error) {
	hc, err := parseHash(h, keep)
	if err != nil {
		return nil, err
	}
	return hc.rows(nil)
}
