// Package resilience keeps calls away from upstreams that are failing: a
// circuit breaker that opens after consecutive failed attempts, and an
// active health check that polls an upstream's health path. NewGuard
// combines them into the proxy.Guard a target carries.
//
//	b := resilience.NewBreaker(u.CircuitBreaker)
//	c, _ := resilience.NewChecker(u.BaseURL, u.HealthCheck, transport)
//	go c.Run(ctx)
//	target.Guard = resilience.NewGuard(b, c)
package resilience

import (
	"sync"
	"time"

	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/proxy"
)

// Breaker states, as OnChange and State report them.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

// probeWait is what RetryAfter reports while a half-open breaker's probe
// is in flight: its outcome usually arrives within it.
const probeWait = time.Second

// Breaker is a circuit breaker. Closed, it allows every attempt; after
// Failures consecutive failed reports it opens and refuses attempts for
// Cooldown; then it half-opens and allows one probe at a time. A successful
// probe closes it; a failed one opens it for a fresh Cooldown.
//
// A probe that never reports (its caller lost) is given up after Cooldown,
// and another probe is allowed, so the breaker cannot stay half-open for
// ever.
//
// Set the fields before the first call; the methods are safe for
// concurrent use.
type Breaker struct {
	// Failures is the number of consecutive failed reports that opens the
	// breaker. 0 disables it: it allows every attempt.
	Failures int
	Cooldown time.Duration
	// Now is the clock; nil uses time.Now.
	Now func() time.Time
	// OnChange, if set, is called with the new state on every transition,
	// in order. It runs with the breaker's lock held: it must be quick and
	// must not call the Breaker.
	OnChange func(state string)

	mu         sync.Mutex
	state      string // "" is closed
	fails      int    // consecutive failures while closed
	until      time.Time
	probing    bool
	probeStart time.Time
}

var _ proxy.Guard = (*Breaker)(nil)

// NewBreaker returns a breaker with c's settings (config defaults applied).
// A nil or disabled c gives a breaker that always allows.
func NewBreaker(c *config.CircuitBreaker) *Breaker {
	if c == nil || c.Disabled {
		return &Breaker{}
	}
	return &Breaker{Failures: c.Failures, Cooldown: time.Duration(c.Cooldown)}
}

func (b *Breaker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Breaker) set(state string) {
	if b.state == state || (b.state == "" && state == StateClosed) {
		return
	}
	b.state = state
	if b.OnChange != nil {
		b.OnChange(state)
	}
}

// State returns closed, open or half_open. An open breaker whose cooldown
// has passed reports half_open.
func (b *Breaker) State() string {
	if b.Failures <= 0 {
		return StateClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.state == "":
		return StateClosed
	case b.state == StateOpen && !b.now().Before(b.until):
		return StateHalfOpen
	}
	return b.state
}

// Allow reports whether an attempt may be made now. Once the cooldown has
// passed, exactly one caller is allowed through as the probe; the others
// are refused until it reports.
func (b *Breaker) Allow() bool {
	if b.Failures <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case "", StateClosed:
		return true
	case StateOpen:
		now := b.now()
		if now.Before(b.until) {
			return false
		}
		b.set(StateHalfOpen)
		b.probing, b.probeStart = true, now
		return true
	default: // half-open
		now := b.now()
		if b.probing && now.Sub(b.probeStart) < b.Cooldown {
			return false
		}
		b.probing, b.probeStart = true, now
		return true
	}
}

// Report records the outcome of an attempt Allow admitted. While open, or
// half-open with no probe out, reports are of attempts admitted before
// the breaker opened and are ignored.
func (b *Breaker) Report(ok bool) {
	if b.Failures <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case "", StateClosed:
		if ok {
			b.fails = 0
			return
		}
		b.fails++
		if b.fails >= b.Failures {
			b.open()
		}
	case StateHalfOpen:
		if !b.probing {
			return
		}
		b.probing = false
		if ok {
			b.fails = 0
			b.set(StateClosed)
		} else {
			b.open()
		}
	}
}

func (b *Breaker) open() {
	b.fails, b.probing = 0, false
	b.until = b.now().Add(b.Cooldown)
	b.set(StateOpen)
}

// RetryAfter is the cooldown left while open; while a half-open probe is
// in flight, a short wait for its outcome; otherwise 0.
func (b *Breaker) RetryAfter() time.Duration {
	if b.Failures <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	switch b.state {
	case StateOpen:
		return max(b.until.Sub(now), 0)
	case StateHalfOpen:
		if b.probing {
			return min(probeWait, max(b.probeStart.Add(b.Cooldown).Sub(now), 0))
		}
	}
	return 0
}
