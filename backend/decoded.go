package backend

import (
	"encoding/json"
	"fmt"
	"sync"
)

// maxDecoded bounds a Decoded cache; it is emptied when it reaches this.
const maxDecoded = 10_000

// Decoded remembers the decoded form of each spec a kind has seen, so a call
// on the hot path decodes no JSON. Specs are immutable (versions are), so an
// entry never goes stale. The zero value is ready to use.
type Decoded[T any] struct {
	mu sync.RWMutex
	m  map[string]T
}

// Of returns spec decoded into a T, from the cache when it was seen before.
func (c *Decoded[T]) Of(spec json.RawMessage) (T, error) {
	c.mu.RLock()
	v, ok := c.m[string(spec)]
	c.mu.RUnlock()
	if ok {
		return v, nil
	}
	if err := json.Unmarshal(spec, &v); err != nil {
		return v, fmt.Errorf("decode backend spec: %w", err)
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxDecoded {
		c.m = make(map[string]T)
	}
	c.m[string(spec)] = v
	c.mu.Unlock()
	return v, nil
}
