package wasm

import (
	"bufio"
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/fnmarket/fnmarket"
)

// Defaults for the process-wide bounds on wasm work.
const (
	// DefaultMemoryBudgetFraction is the share of the machine's memory (or
	// of the cgroup's limit, when lower) that calls in flight may reserve
	// when Config.MemoryBudgetBytes is zero.
	DefaultMemoryBudgetFraction = 0.25
	// DefaultAdmissionWait is how long a call waits for room before it is
	// turned away.
	DefaultAdmissionWait = time.Second
	// fallbackMachineMemory is assumed when the machine's memory cannot be
	// read (not Linux).
	fallbackMachineMemory = 4 << 30
)

// DefaultMaxConcurrency is Config.MaxConcurrency when left zero: one call
// per CPU the Go scheduler uses (GOMAXPROCS). Wasm calls are CPU work: more
// at once only share the CPUs more thinly, each call taking longer, while
// their memory adds up.
func DefaultMaxConcurrency() int { return max(runtime.GOMAXPROCS(0), 1) }

// DefaultMemoryBudget is Config.MemoryBudgetBytes when left zero: a quarter
// of the machine's memory, or of the cgroup's memory limit when that is
// lower.
func DefaultMemoryBudget() int64 {
	return int64(float64(machineMemory()) * DefaultMemoryBudgetFraction)
}

// machineMemory is the memory this process may use: the machine's, or its
// cgroup's limit when lower.
func machineMemory() int64 {
	total := int64(fallbackMachineMemory)
	if f, err := os.Open("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if rest, ok := strings.CutPrefix(s.Text(), "MemTotal:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil && kb > 0 {
					total = kb << 10
				}
				break
			}
		}
		_ = f.Close()
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(p); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < total {
				total = n
			}
		}
	}
	return total
}

// admission bounds wasm work across the process: at most MaxConcurrency
// calls run at once, and the memory limits of the calls running add up to
// at most MemoryBudgetBytes. Each call reserves its whole memory limit (the
// most it could grow to) for as long as it runs, so the bound holds whatever
// the modules do.
type admission struct {
	inside atomic.Int64 // calls admitted and not yet gone
	calls  *semaphore.Weighted
	pages  *semaphore.Weighted // the budget, in 64 KiB pages
	wait   time.Duration
	budget uint32 // pages
}

func newAdmission(cfg Config) *admission {
	budget := uint32(min(cfg.MemoryBudgetBytes/pageBytes, 1<<31))
	return &admission{
		calls:  semaphore.NewWeighted(int64(cfg.MaxConcurrency)),
		pages:  semaphore.NewWeighted(int64(budget)),
		wait:   cfg.AdmissionWait,
		budget: budget,
	}
}

// ErrBusy is the error (an *fnmarket.Error with code EUNAVAILABLE) Run
// returns when the process-wide bounds left no room for the call within
// Config.AdmissionWait; the call did not run.
var ErrBusy = &fnmarket.Error{Code: fnmarket.EUNAVAILABLE, Message: "WebAssembly functions are at capacity on this server; retry shortly"}

// enter waits up to the admission wait for room for one call with a memory
// limit of pages, and returns the func that gives the room back. While the
// memory budget is full it first closes idle reused instances (evict). It
// returns ErrBusy when there was no room in time, or ctx's error when ctx
// ended first.
func (a *admission) enter(ctx context.Context, pages uint32, evict func() bool) (func(), error) {
	until := a.until()
	leave, err := a.enterCall(ctx, until)
	if err != nil {
		return nil, err
	}
	give, err := a.reservePages(ctx, until, pages, evict)
	if err != nil {
		leave()
		return nil, err
	}
	return func() { give(); leave() }, nil
}

// until is the end of the admission wait of a call arriving now.
func (a *admission) until() time.Time { return time.Now().Add(a.wait) }

// enterCall waits until until for a concurrency slot, for a call on a
// reused instance (whose memory is reserved by reservePages).
func (a *admission) enterCall(ctx context.Context, until time.Time) (func(), error) {
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	if err := a.calls.Acquire(wctx, 1); err != nil {
		return nil, a.busy(ctx, err)
	}
	a.inside.Add(1)
	return func() { a.inside.Add(-1); a.calls.Release(1) }, nil
}

// reservePages reserves pages of the memory budget for a reused instance's
// life, calling evict (which closes an idle instance, reporting false when
// there is none) while the budget is full, then waiting until until. The
// func it returns gives the pages back.
func (a *admission) reservePages(ctx context.Context, until time.Time, pages uint32, evict func() bool) (func(), error) {
	for !a.pages.TryAcquire(int64(pages)) {
		if evict() {
			continue
		}
		wctx, cancel := context.WithDeadline(ctx, until)
		err := a.pages.Acquire(wctx, int64(pages))
		cancel()
		if err != nil {
			return nil, a.busy(ctx, err)
		}
		break
	}
	var once sync.Once
	return func() { once.Do(func() { a.pages.Release(int64(pages)) }) }, nil
}

// running is how many calls hold room now.
func (a *admission) running() int { return int(a.inside.Load()) }

func (a *admission) busy(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrBusy
	}
	return err
}
