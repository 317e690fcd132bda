package resilience

import (
	"time"

	"github.com/sluice-gateway/sluice/proxy"
)

type guard struct {
	b *Breaker
	c *Checker
}

// NewGuard combines a breaker and a health check, either of which may be
// nil, into a target's guard: an attempt is allowed when the health check
// passes and the breaker allows it; outcomes go to the breaker.
func NewGuard(b *Breaker, c *Checker) proxy.Guard {
	return &guard{b: b, c: c}
}

func (g *guard) Allow() bool {
	// Health first, so an unhealthy upstream does not use up the
	// breaker's half-open probe.
	if g.c != nil && !g.c.Healthy() {
		return false
	}
	return g.b == nil || g.b.Allow()
}

func (g *guard) Report(ok bool) {
	if g.b != nil {
		g.b.Report(ok)
	}
}

// RetryAfter is the breaker's wait, or at least one check interval while
// the health check fails.
func (g *guard) RetryAfter() time.Duration {
	var d time.Duration
	if g.b != nil {
		d = g.b.RetryAfter()
	}
	if g.c != nil && !g.c.Healthy() {
		d = max(d, g.c.Interval)
	}
	return d
}
