package metering

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fnmarket/fnmarket"
)

// confirmerRig is a confirmer on its own: a database and Redis markers the
// test sets, a stopped clock, and what it settled and handed back as lost.
type confirmerRig struct {
	mu      sync.Mutex
	clock   *fnmarket.TestClock
	inDB    map[string]bool
	marker  map[string]bool
	dbErr   error
	lookups int // markers looked up
	settled []string
	lost    []string
	closed  bool
	c       *confirmer
}

const rigGrace = 30 * time.Second

func newConfirmerRig(maxBytes int64) *confirmerRig {
	r := &confirmerRig{clock: fnmarket.NewTestClock(testStart), inDB: map[string]bool{}, marker: map[string]bool{}}
	r.c = newConfirmer(confirmerConfig{
		mu: &r.mu,
		confirmed: func(_ context.Context, ids []string) (map[string]bool, error) {
			if r.dbErr != nil {
				return nil, r.dbErr
			}
			done := map[string]bool{}
			for _, id := range ids {
				if r.inDB[id] {
					done[id] = true
				}
			}
			return done, nil
		},
		markers: func(_ context.Context, fs []*flush) ([]bool, error) {
			present := make([]bool, len(fs))
			for i, f := range fs {
				r.lookups++
				present[i] = r.marker[f.id]
			}
			return present, nil
		},
		settled: func(ids []string) { r.settled = append(r.settled, ids...) },
		lost: func(fs []*flush) {
			for _, f := range fs {
				r.lost = append(r.lost, f.id)
			}
		},
		closed:     func() bool { return r.closed },
		clock:      r.clock,
		grace:      rigGrace,
		appliedTTL: 7 * 24 * time.Hour,
		maxBytes:   maxBytes,
		log:        quietLogger(),
	})
	return r
}

// ack hands the confirmer a flush of n calls, acknowledged now, whose marker
// Redis holds.
func (r *confirmerRig) ack(id string, n int) *flush {
	agg := newAggregate()
	for i := range n {
		agg.addSpooled(spooledOf(genCall(i)))
	}
	f := &flush{id: id, agg: agg, ackedAt: r.clock.Now()}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.marker[id] = true
	r.c.addLocked(f)
	return f
}

func (r *confirmerRig) pass(t *testing.T) {
	t.Helper()
	if err := r.c.confirmOnce(context.Background(), true); err != nil {
		t.Fatal(err)
	}
}

func TestConfirmerSettlesWhatTheDatabaseHolds(t *testing.T) {
	t.Parallel()
	r := newConfirmerRig(1 << 20)
	r.ack("f1", 3)
	r.ack("f2", 4)
	r.ack("f3", 5)
	if got := r.c.unconfirmedCalls(); got != 12 {
		t.Fatalf("unconfirmed calls = %d, want 12", got)
	}
	r.inDB["f1"], r.inDB["f3"] = true, true
	r.pass(t)
	if want := []string{"f1", "f3"}; !slices.Equal(r.settled, want) {
		t.Fatalf("settled %v, want %v", r.settled, want)
	}
	if got := r.c.unconfirmedCalls(); got != 4 {
		t.Fatalf("unconfirmed calls = %d, want 4", got)
	}
	if len(r.c.flushes) != 1 || r.c.flushes[0].id != "f2" || r.c.bytes != r.c.flushes[0].size {
		t.Fatalf("kept %d flushes, %d bytes; want f2 alone", len(r.c.flushes), r.c.bytes)
	}

	r.dbErr = errors.New("database unreachable")
	if err := r.c.confirmOnce(context.Background(), true); err == nil {
		t.Fatal("confirmOnce hid a database failure")
	}
	if got := r.c.unconfirmedCalls(); got != 4 {
		t.Fatalf("a failed lookup changed unconfirmed calls to %d", got)
	}
}

// TestConfirmerLossDetection steps the clock through the two graces a flush
// must wait before it is taken for lost: RedisLossGrace after its ack its
// marker is looked up; RedisLossGrace after the marker was found missing,
// if the database still lacks it, it is lost.
func TestConfirmerLossDetection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		markerLost bool
		rolledUp   bool // the database gets the flush after its marker was found missing
		wantLost   bool
	}{
		{name: "marker kept", wantLost: false},
		{name: "marker lost, flush never in the database", markerLost: true, wantLost: true},
		{name: "marker lost, a roll-up commits it within the grace", markerLost: true, rolledUp: true, wantLost: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newConfirmerRig(1 << 20)
			r.ack("f1", 2)
			if tc.markerLost {
				delete(r.marker, "f1")
			}
			r.clock.Advance(rigGrace - time.Second)
			r.pass(t)
			if r.lookups != 0 {
				t.Fatalf("marker looked up %d times before the grace", r.lookups)
			}
			r.clock.Advance(time.Second)
			r.pass(t)
			if r.lookups != 1 {
				t.Fatalf("marker looked up %d times at the grace, want 1", r.lookups)
			}
			// Found missing (or not): nothing is lost before a second grace.
			r.clock.Advance(rigGrace - time.Second)
			r.pass(t)
			if len(r.lost) != 0 {
				t.Fatalf("lost %v before the second grace", r.lost)
			}
			if tc.rolledUp {
				r.inDB["f1"] = true
			}
			r.clock.Advance(time.Second)
			r.pass(t)
			if got := len(r.lost) == 1; got != tc.wantLost {
				t.Fatalf("lost %v, want lost: %v", r.lost, tc.wantLost)
			}
			wantLeft := int64(2)
			if tc.wantLost || tc.rolledUp {
				wantLeft = 0
			}
			if got := r.c.unconfirmedCalls(); got != wantLeft {
				t.Fatalf("unconfirmed calls = %d, want %d", got, wantLeft)
			}
			if !tc.markerLost && r.lookups != 2 {
				t.Fatalf("a kept marker was looked up %d times over two graces, want 2 (once per grace)", r.lookups)
			}
		})
	}
}

// TestConfirmerNeverTakesForLost: without detectLoss (at close), for a flush
// older than its marker's life, or once the meter is closed, nothing is
// taken for lost.
func TestConfirmerNeverTakesForLost(t *testing.T) {
	t.Parallel()
	t.Run("without detectLoss", func(t *testing.T) {
		t.Parallel()
		r := newConfirmerRig(1 << 20)
		r.ack("f1", 1)
		delete(r.marker, "f1")
		for range 4 {
			r.clock.Advance(rigGrace)
			if err := r.c.confirmOnce(context.Background(), false); err != nil {
				t.Fatal(err)
			}
		}
		if r.lookups != 0 || len(r.lost) != 0 {
			t.Fatalf("looked up %d markers, lost %v; want none", r.lookups, r.lost)
		}
	})
	t.Run("marker expired", func(t *testing.T) {
		t.Parallel()
		r := newConfirmerRig(1 << 20)
		r.ack("f1", 1)
		delete(r.marker, "f1")
		r.clock.Advance(r.c.cfg.appliedTTL - 2*rigGrace)
		for range 3 {
			r.pass(t)
			r.clock.Advance(rigGrace)
		}
		if r.lookups != 0 || len(r.lost) != 0 {
			t.Fatalf("looked up %d markers, lost %v; want none", r.lookups, r.lost)
		}
	})
	t.Run("closed", func(t *testing.T) {
		t.Parallel()
		r := newConfirmerRig(1 << 20)
		r.ack("f1", 1)
		r.inDB["f1"] = true
		r.closed = true
		r.pass(t)
		if len(r.settled) != 0 {
			t.Fatalf("a closed meter settled %v", r.settled)
		}
	})
}

func TestConfirmerBounded(t *testing.T) {
	t.Parallel()
	probe := newConfirmerRig(1 << 20)
	size := probe.ack("f0", 5).size
	r := newConfirmerRig(3 * size) // room for three flushes of this size
	for i := range 5 {
		r.ack(fmt.Sprintf("f%d", i), 5)
	}
	if want := []string{"f0", "f1"}; !slices.Equal(r.settled, want) {
		t.Fatalf("forgot %v, want the oldest %v", r.settled, want)
	}
	if r.c.forgotten != 2 || r.c.bytes > 3*size || r.c.unconfirmedCalls() != 15 {
		t.Fatalf("forgotten %d, %d bytes, %d calls; want 2, at most %d, 15", r.c.forgotten, r.c.bytes, r.c.unconfirmedCalls(), 3*size)
	}
	// One flush larger than the bound is still kept.
	big := newConfirmerRig(1)
	big.ack("f0", 5)
	if len(big.settled) != 0 || big.c.unconfirmedCalls() != 5 {
		t.Fatalf("the only flush was forgotten: %v", big.settled)
	}
}
