package billing

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket/internal/testenv"
)

// benchSize reads a benchmark dimension from the environment, so the big run
// (FNM_BENCH_CONSUMERS=10000 FNM_BENCH_FUNCTIONS=100 FNM_BENCH_HOURS=720)
// needs no code change; the defaults finish in seconds.
func benchSize(b *testing.B, name string, def int) int {
	if s := os.Getenv(name); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q is not a positive integer", name, s)
		}
		return n
	}
	return def
}

// BenchmarkBillMonth measures BillPeriod issuing a month's invoices from
// usage_hourly: every consumer uses every function (two versions) in every
// hour. Each iteration starts from no invoices.
func BenchmarkBillMonth(b *testing.B) {
	consumers := benchSize(b, "FNM_BENCH_CONSUMERS", 300)
	functions := benchSize(b, "FNM_BENCH_FUNCTIONS", 20)
	hours := benchSize(b, "FNM_BENCH_HOURS", 24)
	for _, be := range testenv.Backends() {
		b.Run(fmt.Sprintf("%s/%dx%dx%dh", be.Name, consumers, functions, hours), func(b *testing.B) {
			f := newFixture(b, be, nil)
			v := f.vendor("bench")
			fns := make([]string, functions)
			for i := range fns {
				fns[i] = f.function(v, fmt.Sprintf("fn%d", i), usd("0.0001", "0.0000021", 1000), usd("0.0002", "0.0000021", 1000))
			}
			start := time.Now()
			seedUsage(b, f, consumers, fns, hours)
			b.Logf("seeded %d usage rows in %s", consumers*functions*hours, time.Since(start).Round(time.Millisecond))
			f.clock.Set(feb.Add(time.Hour))
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for _, table := range []string{"invoice_events", "vendor_shares", "invoice_lines", "invoices", "billing_periods"} {
					if err := f.db.Exec("DELETE FROM " + table).Error; err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				rep, err := f.biller.BillPeriod(f.ctx, jan, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if rep.Created != consumers {
					b.Fatalf("created %d invoices, want %d", rep.Created, consumers)
				}
			}
			b.ReportMetric(float64(consumers), "invoices/op")
			b.ReportMetric(float64(consumers*functions), "lines/op")
		})
	}
}

// seedUsage writes usage rows in multi-row INSERTs, one transaction per batch.
func seedUsage(b *testing.B, f *fixture, consumers int, fns []string, hours int) {
	const perStmt = 500
	var sb strings.Builder
	args := make([]any, 0, perStmt*8)
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		q := "INSERT INTO usage_hourly (hour_start, consumer_id, key_id, function_id, version, calls, billable_calls, compute_ms, errors) VALUES " +
			strings.TrimSuffix(sb.String(), ",")
		if err := f.db.Exec(q, args...).Error; err != nil {
			b.Fatalf("seed usage: %v", err)
		}
		sb.Reset()
		args, n = args[:0], 0
	}
	for c := range consumers {
		consumer := fmt.Sprintf("acc_bench%06d", c)
		for fi, fn := range fns {
			for h := range hours {
				calls := int64(1 + (c*7+fi*13+h*3)%97)
				sb.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, 0),")
				args = append(args, jan.Add(time.Duration(h)*time.Hour).Unix(), consumer, "key_bench", fn, 1+h%2, calls, calls, calls*37)
				n++
				if n == perStmt {
					flush()
				}
			}
		}
	}
	flush()
}
