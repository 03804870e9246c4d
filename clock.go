package fnmarket

import (
	"sync"
	"time"
)

// Clock tells the time wherever time decides money or windows, so tests can
// move it across month boundaries.
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, in UTC.
type SystemClock struct{}

// Now returns the current UTC time.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// TestClock is a settable clock for tests.
type TestClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewTestClock returns a clock stopped at t.
func NewTestClock(t time.Time) *TestClock { return &TestClock{t: t.UTC()} }

// Now returns the clock's time.
func (c *TestClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *TestClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t.UTC()
	c.mu.Unlock()
}

// Advance moves the clock forward by d.
func (c *TestClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
