package metering

// keyMonth names one API key's month.
type keyMonth struct{ KeyID, Month string }

// inFlight is what this process recorded that Redis has not yet
// acknowledged: how many calls (the Meter's backlog), the spend per key and
// month and the billable calls per function and month, which the Limiter
// adds to what Redis reports (PendingUsage). The Meter guards it with mu.
type inFlight struct {
	calls   int64
	spend   map[keyMonth]int64
	fnCalls map[fcKey]int64
}

func newInFlight() inFlight {
	return inFlight{spend: map[keyMonth]int64{}, fnCalls: map[fcKey]int64{}}
}

// add counts a's calls as not yet in Redis.
func (p *inFlight) add(a *aggregate) { p.change(a, 1) }

// remove counts a's calls as in Redis.
func (p *inFlight) remove(a *aggregate) { p.change(a, -1) }

func (p *inFlight) change(a *aggregate, sign int64) {
	p.calls += sign * a.n
	for k, v := range a.spend {
		km := keyMonth{KeyID: k.KeyID, Month: k.Month}
		if p.spend[km] += sign * v; p.spend[km] == 0 {
			delete(p.spend, km)
		}
	}
	for k, v := range a.calls {
		if p.fnCalls[k] += sign * v; p.fnCalls[k] == 0 {
			delete(p.fnCalls, k)
		}
	}
}
