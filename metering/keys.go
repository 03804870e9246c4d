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
func (k keyspace) spend(shard int, s spendKey) string {
	return k.tag(shard) + "spend:" + s.KeyID + ":" + s.Month
}
func (k keyspace) functionCalls(shard int, f fcKey) string {
	return k.tag(shard) + "fc:" + f.ConsumerID + ":" + f.FunctionID + ":" + f.Month
}

// spendKey names one API key's spend in one month (YYYYMM).
type spendKey struct {
	ConsumerID string `json:"c"` // decides the shard
	KeyID      string `json:"k"`
	Month      string `json:"m"`
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

// parseField splits a live hash field into its row and metric.
func parseField(f string) (rowKey, string, error) {
	parts := strings.Split(f, "|")
	if len(parts) != 6 {
		return rowKey{}, "", fmt.Errorf("usage field %q: want 6 parts, got %d", f, len(parts))
	}
	hour, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return rowKey{}, "", fmt.Errorf("usage field %q: hour: %w", f, err)
	}
	version, err := strconv.Atoi(parts[4])
	if err != nil {
		return rowKey{}, "", fmt.Errorf("usage field %q: version: %w", f, err)
	}
	return rowKey{
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

// fromPico converts integer pico-units back to money.
func fromPico(p int64) decimal.Decimal { return decimal.New(p, -picoExp) }

// flushFieldPrefix starts the live hash field that records a flush id
// (flush|<id>), written by the flush script of a Meter that has its flushes
// confirmed in the database. Counter fields start with the hour's Unix
// seconds, a number, so the two never collide; the field travels with the
// counts when the Rollup renames live to a batch.
const flushFieldPrefix = "flush|"

func flushField(flushID string) string { return flushFieldPrefix + flushID }

// flushIDsFromHash returns the flush ids recorded in a live hash or batch,
// sorted, and those recorded more than once (applied twice: Redis lost the
// applied marker but not the counts).
func flushIDsFromHash(h map[string]string) (ids, twice []string) {
	for f, v := range h {
		id, ok := strings.CutPrefix(f, flushFieldPrefix)
		if !ok || id == "" {
			continue
		}
		ids = append(ids, id)
		if v != "1" {
			twice = append(twice, id)
		}
	}
	sort.Strings(ids)
	sort.Strings(twice)
	return ids, twice
}

// rowsFromHash turns live-hash (or batch) fields into usage rows, keeping
// only those accepted by keep (nil keeps all); flush id fields are skipped.
// Rows come out in field order of first appearance, which callers must not
// rely on.
func rowsFromHash(h map[string]string, keep func(rowKey) bool) ([]UsageRow, error) {
	idx := map[rowKey]int{}
	var rows []UsageRow
	for f, v := range h {
		if strings.HasPrefix(f, flushFieldPrefix) {
			continue
		}
		rk, metric, err := parseField(f)
		if err != nil {
			return nil, err
		}
		if keep != nil && !keep(rk) {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("usage field %q: value %q: %w", f, v, err)
		}
		i, ok := idx[rk]
		if !ok {
			i = len(rows)
			idx[rk] = i
			rows = append(rows, UsageRow{
				HourStart:  time.Unix(rk.HourStart, 0).UTC(),
				ConsumerID: rk.ConsumerID,
				KeyID:      rk.KeyID,
				FunctionID: rk.FunctionID,
				Version:    rk.Version,
				Histogram:  make([]int64, len(HistogramBounds)+1),
			})
		}
		r := &rows[i]
		switch metric {
		case metricCalls:
			r.Calls += n
		case metricBillable:
			r.BillableCalls += n
		case metricComputeMs:
			r.ComputeMs += n
		case metricErrors:
			r.Errors += n
		default:
			b, err := strconv.Atoi(strings.TrimPrefix(metric, "h"))
			if !strings.HasPrefix(metric, "h") || err != nil || b < 0 || b > len(HistogramBounds) {
				return nil, fmt.Errorf("usage field %q: unknown metric %q", f, metric)
			}
			r.Histogram[b] += n
		}
	}
	return rows, nil
}
