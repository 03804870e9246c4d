package metering

// inFlight is what this process recorded that Redis has not yet
// acknowledged: how many calls (the Meter's backlog). The Meter guards it
// with mu.
type inFlight struct {
	calls int64
}

func newInFlight() inFlight { return inFlight{} }

// add counts a's calls as not yet in Redis.
func (p *inFlight) add(a *aggregate) { p.calls += a.n }

// remove counts a's calls as in Redis.
func (p *inFlight) remove(a *aggregate) { p.calls -= a.n }
