package proxy

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
)

// ServedModelHeader names the served entity that answered, as Databricks
// Model Serving does.
const ServedModelHeader = "served-model-name"

// candidates orders the call's targets for its attempts: the admitters'
// order, or the endpoint's own order for Ordered endpoints, with the
// first attempt drawn by the endpoint's traffic split.
func (c *call) candidates() []*Target {
	ts := c.adm.Targets
	ep := c.ep
	index := func(t *Target) int {
		for i, x := range ep.Targets {
			if x == t {
				return i
			}
		}
		return len(ep.Targets)
	}
	if ep.Ordered || len(ep.Split) == len(ep.Targets) && len(ep.Split) > 0 {
		ts = slices.Clone(ts)
	}
	if ep.Ordered {
		slices.SortStableFunc(ts, func(a, b *Target) int { return index(a) - index(b) })
	}
	if len(ep.Split) == len(ep.Targets) && len(ts) > 1 {
		total := 0
		for _, t := range ts {
			if i := index(t); i < len(ep.Split) {
				total += ep.Split[i]
			}
		}
		if total > 0 {
			rnd := c.p.o.Random
			if rnd == nil {
				rnd = rand.Float64
			}
			x := rnd() * float64(total)
			pick := 0
			for j, t := range ts {
				i := index(t)
				if i >= len(ep.Split) || ep.Split[i] == 0 {
					continue
				}
				pick = j
				x -= float64(ep.Split[i])
				if x < 0 {
					break
				}
			}
			if pick > 0 {
				first := ts[pick]
				copy(ts[1:pick+1], ts[:pick])
				ts[0] = first
			}
		}
	}
	if !ep.Fallback && len(ts) > 1 {
		ts = ts[:1]
	}
	return ts
}

// forwardAll makes the call's attempts: each candidate in turn until one
// answers, while nothing has reached the client yet and the failure is
// one another upstream may not have (connection failure, timeout, 429,
// 5xx, a full capacity gate).
func (c *call) forwardAll() error {
	cands := c.candidates()
	var (
		last      error
		skipped   []*Target
		prevState = c.rec
	)
	for _, t := range cands {
		if last != nil {
			// A fallback attempt starts from a clean slate.
			c.resetAttempt(prevState)
		}
		// Capacity first: a guard's half-open probe must not wait in a
		// gate's queue.
		var (
			release func(int64)
			err     error
		)
		if t.Gate != nil {
			release, err = t.Gate.Acquire(c.r.Context(), c.adm.PromptTokens()+c.adm.WorstCaseOutput())
			if err != nil && c.r.Context().Err() != nil {
				return &apierr.Error{Status: 499, Msg: "client closed the request", Class: sluice.ErrClassClientDisconnect, Err: err}
			}
		}
		if err == nil && t.Guard != nil && !t.Guard.Allow() {
			if release != nil {
				release(0)
			}
			c.attempts = append(c.attempts, t.EntityName()+":open")
			skipped = append(skipped, t)
			continue
		}
		c.tgt, c.logged = t, false
		c.rec.Upstream, c.rec.ServedEntity = t.Upstream.Name, t.EntityName()
		if err == nil {
			c.rec.Attempts++
			c.w.Header().Set(ServedModelHeader, t.EntityName())
			if err = c.attempt(t, release); err == nil || c.committed || c.wroteHeader {
				return err
			}
		}
		last = err
		if !c.retryable(err) {
			return err
		}
		e := apierr.As(err)
		c.attempts = append(c.attempts, attemptEntry(t.EntityName(), e.Status, e.Class))
		c.logged = true
	}
	if last != nil {
		// Every candidate failed: the last failure is the answer, and
		// every attempt is logged already.
		return last
	}
	// Every candidate's breaker is open or its health check failing.
	c.tgt = nil
	e := &apierr.Error{Status: 503, Type: "server_error", Code: "upstream_unavailable", Class: sluice.ErrClassUpstreamError,
		Msg: "Every upstream of '" + c.ep.Name + "' is failing and paused; retry later."}
	var wait time.Duration
	for _, t := range skipped {
		if d := t.Guard.RetryAfter(); d > 0 && (wait == 0 || d < wait) {
			wait = d
		}
	}
	e.RetryAfter = max(wait, time.Second)
	if len(skipped) > 0 {
		c.rec.ServedEntity = skipped[len(skipped)-1].EntityName()
	}
	return e
}

// attempt makes one attempt on t, then releases its capacity and reports
// the outcome to its guard, also when the relay aborts the response.
func (c *call) attempt(t *Target, release func(int64)) (err error) {
	c.upStatus = 0
	defer func() {
		v := recover()
		if release != nil {
			release(c.rec.TotalTokens)
		}
		if t.Guard != nil {
			ok, known := c.health(err)
			if v != nil {
				// The relay cut the response: the upstream broke off.
				ok, known = c.rec.ErrorClass == "" || c.rec.ErrorClass == sluice.ErrClassClientDisconnect, c.rec.ErrorClass != sluice.ErrClassClientDisconnect
			}
			if known {
				// (Nothing learned, as when the client left: no report; a
				// half-open probe that never reports is replaced after a
				// cool-down.)
				t.Guard.Report(ok)
			}
		}
		if v != nil {
			panic(v)
		}
	}()
	return c.forward()
}

// health says whether the attempt's outcome speaks for the upstream's
// health: a connection failure, timeout, reset or 5xx is a failure; any
// answer below 500 is a success; a client that left says nothing.
func (c *call) health(err error) (ok, known bool) {
	if err == nil {
		return true, true
	}
	e := apierr.As(err)
	switch e.Class {
	case sluice.ErrClassClientDisconnect, sluice.ErrClassInternal:
		return false, false
	case sluice.ErrClassUpstreamError, sluice.ErrClassUpstreamTimeout, sluice.ErrClassUpstreamReset:
		return false, true
	}
	if c.upStatus >= 500 {
		return false, true
	}
	return true, c.upStatus != 0 || c.committed
}

// retryable says whether another target may succeed where this attempt
// failed.
func (c *call) retryable(err error) bool {
	if c.r.Context().Err() != nil {
		return false
	}
	e := apierr.As(err)
	switch e.Class {
	case sluice.ErrClassUpstreamError, sluice.ErrClassUpstreamTimeout, sluice.ErrClassUpstreamReset, sluice.ErrClassUpstreamRate:
		return true
	case sluice.ErrClassUpstreamStatus:
		// 5xx, and 401/403 (this upstream's credentials), but not a
		// verdict on the request itself.
		return c.upStatus >= 500 || c.upStatus == http.StatusUnauthorized || c.upStatus == http.StatusForbidden
	case sluice.ErrClassRateLimited:
		return e.Code == "capacity_exceeded"
	}
	return false
}

// resetAttempt clears what a failed attempt left on the record.
func (c *call) resetAttempt(prev sluice.UsageRecord) {
	c.rec.PromptTokens, c.rec.CompletionTokens, c.rec.TotalTokens = prev.PromptTokens, prev.CompletionTokens, prev.TotalTokens
	c.rec.UsageSource, c.rec.CostMicros, c.rec.PriceVersion = prev.UsageSource, prev.CostMicros, prev.PriceVersion
	c.rec.UpstreamModel, c.rec.TTFT = prev.UpstreamModel, prev.TTFT
	c.capture = c.capture[:0]
	h := c.w.Header()
	for _, k := range []string{"Retry-After", "Content-Type", "Content-Length"} {
		h.Del(k)
	}
}

func attemptEntry(entity string, status int, class string) string {
	s := entity + ":" + strconv.Itoa(status)
	if class != "" {
		s += ":" + class
	}
	return s
}

// attemptLog is the record's AttemptLog: the failed attempts and the
// final one.
func (c *call) attemptLog() string {
	if c.tgt == nil && len(c.attempts) == 0 {
		return ""
	}
	parts := c.attempts
	if c.tgt != nil && !c.logged {
		parts = append(parts[:len(parts):len(parts)], attemptEntry(c.tgt.EntityName(), c.rec.Status, c.rec.ErrorClass))
	}
	return strings.Join(parts, ";")
}
