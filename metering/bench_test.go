package metering

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkRollup measures the worker's move of metered counts from Redis
// into the database: each iteration records calls spread over
// FNM_BENCH_CONSUMERS consumers × FNM_BENCH_FUNCTIONS functions × hours
// (defaults 200 × 20 × 3, so 12,000 usage rows), each row's three calls in
// three flushes to Redis, then
// times one RunOnce, with and without flush ids recorded (MeterConfig.Confirmed,
// as the gateway runs). It reports usage rows and calls rolled up per second.
func BenchmarkRollup(b *testing.B) {
	consumers := benchEnvInt("FNM_BENCH_CONSUMERS", 200)
	functions := benchEnvInt("FNM_BENCH_FUNCTIONS", 20)
	hours := benchEnvInt("FNM_BENCH_HOURS", 3)
	const callsPerRow = 3
	for _, be := range testenv.Backends() {
		for _, confirmed := range []bool{false, true} {
			mode := "plain"
			if confirmed {
				mode = "confirmed"
			}
			b.Run(fmt.Sprintf("%s/%s/%dx%dx%dh", be.Name, mode, consumers, functions, hours), func(b *testing.B) {
				db := testenv.DB(b, be)
				rdb, prefix := testenv.Redis(b, be)
				r, err := NewRollup(RollupConfig{DB: db, Redis: rdb, Prefix: prefix, Logger: quietLogger()})
				if err != nil {
					b.Fatal(err)
				}
				var rows, calls int64
				b.ResetTimer()
				for n := 0; n < b.N; n++ {
					b.StopTimer()
					cfg := MeterConfig{Redis: rdb, Prefix: prefix, SpoolDir: b.TempDir(), FlushInterval: time.Hour, Logger: quietLogger()}
					if confirmed {
						// Flush ids recorded per flush, as the gateway runs.
						cfg.Confirmed = NewStore(StoreConfig{DB: db}).FlushesCommitted
						cfg.ConfirmInterval = time.Hour
					}
					m, err := NewMeter(cfg)
					if err != nil {
						b.Fatal(err)
					}
					at := testStart.Add(time.Duration(n*hours) * time.Hour)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					// Each row's calls go out in callsPerRow flushes, as calls
					// spread over several flush intervals do.
					for k := 0; k < callsPerRow; k++ {
						for h := 0; h < hours; h++ {
							for c := 0; c < consumers; c++ {
								for f := 0; f < functions; f++ {
									m.Record(Call{ConsumerID: fmt.Sprintf("con_%d", c), KeyID: fmt.Sprintf("key_%d", c), FunctionID: fmt.Sprintf("fn_%d", f),
										Version: 1, Pricing: testPricing(), At: at.Add(time.Duration(h) * time.Hour), ComputeMs: int64(k + 1), Billable: true})
								}
							}
						}
						if err := m.flushOnce(ctx); err != nil {
							b.Fatal(err)
						}
					}
					if err := m.Close(ctx); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					st, err := r.RunOnce(ctx)
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					rows += int64(st.Rows)
					calls += st.Calls
				}
				b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
				b.ReportMetric(float64(calls)/b.Elapsed().Seconds(), "calls/s")
			})
		}
	}
}

// BenchmarkRecord is the meter's part of one call on the gateway's path:
// the spool line (one write(2), shared by calls recorded at once) and the
// sum in memory, in parallel over 100 keys.
func BenchmarkRecord(b *testing.B) {
	rdb, prefix := testenv.Redis(b, testenv.Backends()[0])
	m, err := NewMeter(MeterConfig{Redis: rdb, Prefix: prefix, SpoolDir: b.TempDir(), FlushInterval: 100 * time.Millisecond, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = m.Close(context.Background()) }()
	p := testPricing()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			m.Record(Call{InvocationID: fmt.Sprint("inv_", i), ConsumerID: "con_" + strconv.FormatInt(i%100, 10), KeyID: "key_" + strconv.FormatInt(i%100, 10),
				FunctionID: "fn", Version: 1, Pricing: p, CallsBefore: i, At: time.Now(), ComputeMs: 3, Billable: true,
				Cost: p.CallCost(i, 3), Settled: true})
		}
	})
}
