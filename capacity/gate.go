// Package capacity admits calls into a served entity's declared capacity
// (provisioned throughput, a custom model's concurrency) and accounts for
// what that capacity costs: an hourly charge owed whether it is used or
// not, attributed to the teams that used it.
//
//	l, ok := capacity.LimitsFor(t.Capacity, t.WorkloadSize)
//	if ok {
//		target.Gate = capacity.NewGate(l, nil)
//	}
package capacity

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/proxy"
)

// Bucket levels are kept in nano-tokens so that a continuous refill of
// TokensPerSecond is exact per nanosecond.
const nano = int64(time.Second)

// Bounds that keep the nano-token arithmetic inside int64.
const (
	maxTokens = 1 << 31 // per call and per second
	minLevel  = -(1 << 62)
)

// defaultHold is the assumed length of a call before any has finished,
// for Retry-After estimates.
const defaultHold = time.Second

// Limits are a gate's capacity and queue bounds.
type Limits struct {
	// Concurrency is the most calls in flight; 0 is no limit.
	Concurrency int64
	// TokensPerSecond refills a token bucket holding at most one second's
	// tokens; 0 is no limit.
	TokensPerSecond int64
	// MaxQueue is the most calls waiting for room; 0 refuses at once a
	// call that does not fit.
	MaxQueue int
	// MaxQueueWait is the longest a call waits for room; 0 refuses at
	// once a call that does not fit.
	MaxQueueWait time.Duration
}

// LimitsFor returns the limits of a target's declared capacity, taking
// the concurrency from the workload size when the capacity sets none. ok
// is false when neither declares a limit. Unset queue bounds get the
// config defaults (64 calls, 10s).
func LimitsFor(c *config.Capacity, workloadSize string) (l Limits, ok bool) {
	l = Limits{MaxQueue: 64, MaxQueueWait: 10 * time.Second}
	if c != nil {
		l.Concurrency, l.TokensPerSecond = c.Concurrency, c.TokensPerSecond
		if c.MaxQueue > 0 {
			l.MaxQueue = c.MaxQueue
		}
		if c.MaxQueueWait > 0 {
			l.MaxQueueWait = time.Duration(c.MaxQueueWait)
		}
	}
	if l.Concurrency <= 0 {
		l.Concurrency = config.WorkloadConcurrency(workloadSize)
	}
	return l, l.Concurrency > 0 || l.TokensPerSecond > 0
}

// Gate admits calls while they fit a declared capacity: at most
// Concurrency in flight, and tokens drawn from a bucket refilled
// continuously at TokensPerSecond that holds one second's worth. A call
// asking for more than the bucket holds is admitted when it is full and
// leaves it in debt, so a huge call waits its turn but is never starved.
//
// Calls that do not fit wait in arrival order: a waiting call is never
// overtaken, even by a smaller one that would fit. A call is refused with
// 429 when MaxQueue calls are waiting already, when the tokens queued
// ahead of it need longer than MaxQueueWait to refill, or when it has
// waited MaxQueueWait.
type Gate struct {
	l   Limits
	now func() time.Time

	mu       sync.Mutex
	inFlight int64
	level    int64 // nano-tokens; negative is debt
	last     time.Time
	queue    list.List // of *waiter, oldest first
	queued   int64     // tokens asked for by the queue
	timer    *time.Timer
	hold     time.Duration // moving average of call lengths
	holds    int64

	// queuedHook, if set (by tests), is called with the queue's length
	// each time a call joins it, with the lock held.
	queuedHook func(n int)
}

type waiter struct {
	tokens   int64
	ready    chan struct{} // closed on admission
	admitted bool
	at       time.Time // admission time
	elem     *list.Element
}

var _ proxy.Gate = (*Gate)(nil)

// NewGate returns a gate for l. now is the token bucket's clock; nil uses
// time.Now. Waiting uses real timers whatever the clock.
func NewGate(l Limits, now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	l.Concurrency = max(l.Concurrency, 0)
	l.TokensPerSecond = min(max(l.TokensPerSecond, 0), maxTokens)
	g := &Gate{l: l, now: now}
	g.last = now()
	g.level = g.full()
	return g
}

// Limits returns the gate's limits.
func (g *Gate) Limits() Limits { return g.l }

// InFlight returns the number of admitted calls not yet released.
func (g *Gate) InFlight() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inFlight
}

// Queued returns the number of calls waiting for room.
func (g *Gate) Queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queue.Len()
}

// Acquire implements proxy.Gate. tokens is the call's estimated total
// tokens; release corrects the bucket by the difference between it and
// the tokens used.
func (g *Gate) Acquire(ctx context.Context, tokens int64) (release func(used int64), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tokens = clampTokens(tokens)
	g.mu.Lock()
	now := g.now()
	g.refill(now)
	if g.queue.Len() == 0 && g.fits(tokens) {
		g.take(tokens)
		g.mu.Unlock()
		return g.releaser(tokens, now), nil
	}
	if g.queue.Len() >= g.l.MaxQueue || g.l.MaxQueueWait <= 0 {
		reason := "calls do not wait for it"
		if g.l.MaxQueue > 0 && g.l.MaxQueueWait > 0 {
			reason = fmt.Sprintf("%d calls are waiting already", g.queue.Len())
		}
		e := g.refusal(tokens, reason)
		g.mu.Unlock()
		return nil, e
	}
	if g.tokenWait(tokens) > g.l.MaxQueueWait {
		e := g.refusal(tokens, "the tokens asked for ahead of this call need longer than the queue wait limit")
		g.mu.Unlock()
		return nil, e
	}
	w := &waiter{tokens: tokens, ready: make(chan struct{})}
	w.elem = g.queue.PushBack(w)
	g.queued += tokens
	if g.queuedHook != nil {
		g.queuedHook(g.queue.Len())
	}
	g.dispatch(now)
	g.mu.Unlock()

	timer := time.NewTimer(g.l.MaxQueueWait)
	defer timer.Stop()
	expired := false
	select {
	case <-w.ready:
		return g.releaser(w.tokens, w.at), nil
	case <-ctx.Done():
	case <-timer.C:
		expired = true
	}
	g.mu.Lock()
	if w.admitted {
		// Admitted while giving up.
		g.mu.Unlock()
		rel := g.releaser(w.tokens, w.at)
		if expired {
			return rel, nil
		}
		rel(0)
		return nil, ctx.Err()
	}
	g.queue.Remove(w.elem)
	g.queued -= w.tokens
	g.dispatch(g.now()) // the calls behind it may fit now
	if !expired {
		g.mu.Unlock()
		return nil, ctx.Err()
	}
	e := g.refusal(tokens, "the call waited "+g.l.MaxQueueWait.String())
	g.mu.Unlock()
	return nil, e
}

func clampTokens(t int64) int64 { return min(max(t, 0), maxTokens) }

// full is the bucket's size in nano-tokens.
func (g *Gate) full() int64 { return g.l.TokensPerSecond * nano }

// refill adds the tokens accrued since the last refill.
func (g *Gate) refill(now time.Time) {
	if g.l.TokensPerSecond == 0 {
		return
	}
	el := now.Sub(g.last)
	if el <= 0 {
		if el < 0 {
			g.last = now // the clock went back: count from here
		}
		return
	}
	g.last = now
	full := g.full()
	if g.level >= full {
		return
	}
	if need := full - g.level; int64(el) >= need/g.l.TokensPerSecond+1 {
		g.level = full
	} else {
		g.level = min(g.level+int64(el)*g.l.TokensPerSecond, full)
	}
}

// want is the bucket level a call of tokens needs: its tokens, or a full
// bucket for a call larger than the bucket.
func (g *Gate) want(tokens int64) int64 { return min(tokens, g.l.TokensPerSecond) * nano }

func (g *Gate) fits(tokens int64) bool {
	if g.l.Concurrency > 0 && g.inFlight >= g.l.Concurrency {
		return false
	}
	return g.l.TokensPerSecond == 0 || g.level >= g.want(tokens)
}

func (g *Gate) take(tokens int64) {
	g.inFlight++
	if g.l.TokensPerSecond > 0 {
		g.level = max(g.level-tokens*nano, minLevel)
	}
}

// dispatch admits waiting calls, oldest first, while they fit; when the
// oldest is short only of tokens it sets a timer for when they will be
// there.
func (g *Gate) dispatch(now time.Time) {
	if g.queue.Len() == 0 {
		return
	}
	g.refill(now)
	for e := g.queue.Front(); e != nil; e = g.queue.Front() {
		w := e.Value.(*waiter)
		if !g.fits(w.tokens) {
			if g.l.Concurrency == 0 || g.inFlight < g.l.Concurrency {
				g.wakeIn(g.headWait(w.tokens))
			}
			return
		}
		g.queue.Remove(e)
		g.queued -= w.tokens
		g.take(w.tokens)
		w.admitted, w.at = true, now
		close(w.ready)
	}
}

// headWait is how long until the bucket holds what a call of tokens needs.
func (g *Gate) headWait(tokens int64) time.Duration {
	need := g.want(tokens) - g.level
	if need <= 0 {
		return 0
	}
	return time.Duration((need + g.l.TokensPerSecond - 1) / g.l.TokensPerSecond)
}

func (g *Gate) wakeIn(d time.Duration) {
	if g.timer == nil {
		g.timer = time.AfterFunc(d, g.wake)
		return
	}
	g.timer.Reset(d)
}

func (g *Gate) wake() {
	g.mu.Lock()
	g.dispatch(g.now())
	g.mu.Unlock()
}

func (g *Gate) releaser(tokens int64, at time.Time) func(used int64) {
	var done atomic.Bool
	return func(used int64) {
		if !done.CompareAndSwap(false, true) {
			return
		}
		used = clampTokens(used)
		g.mu.Lock()
		defer g.mu.Unlock()
		now := g.now()
		g.inFlight--
		if d := now.Sub(at); d >= 0 {
			// A moving average over about the last 16 calls.
			g.holds++
			g.hold += (d - g.hold) / time.Duration(min(g.holds, 16))
		}
		if g.l.TokensPerSecond > 0 {
			g.refill(now)
			g.level = min(max(g.level+(tokens-used)*nano, minLevel), g.full())
		}
		g.dispatch(now)
	}
}

// tokenWait estimates how long a call of tokens joining the queue now
// would wait for the bucket: the time to refill the queue's tokens and its
// own.
func (g *Gate) tokenWait(tokens int64) time.Duration {
	if g.l.TokensPerSecond == 0 {
		return 0
	}
	need := float64(g.queued) + float64(g.want(tokens)/nano) - float64(g.level)/float64(nano)
	if need <= 0 {
		return 0
	}
	return seconds(need / float64(g.l.TokensPerSecond))
}

// concurrencyWait estimates how long a call joining the queue now would
// wait for a slot, from the average call length.
func (g *Gate) concurrencyWait() time.Duration {
	c := g.l.Concurrency
	if c == 0 || (g.inFlight < c && g.queue.Len() == 0) {
		return 0
	}
	hold := g.hold
	if g.holds == 0 {
		hold = defaultHold
	}
	return seconds(float64(g.queue.Len()+1) * hold.Seconds() / float64(c))
}

func seconds(s float64) time.Duration {
	return time.Duration(min(s, time.Hour.Seconds()) * float64(time.Second))
}

// refusal is the 429 for a call of tokens that cannot wait, with an
// estimate of when one like it would be admitted.
func (g *Gate) refusal(tokens int64, reason string) *apierr.Error {
	ra := (max(g.tokenWait(tokens), g.concurrencyWait(), time.Second) + time.Second - 1).Truncate(time.Second)
	return &apierr.Error{Status: 429, Type: "requests", Code: "capacity_exceeded", Class: sluice.ErrClassRateLimited,
		Msg:        "The model's provisioned capacity is fully in use: " + reason + ". Retry after " + ra.String() + ".",
		RetryAfter: ra}
}
