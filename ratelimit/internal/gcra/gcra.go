// Package gcra holds the integer GCRA arithmetic every ratelimit
// implementation shares, so that they agree to the millisecond. The Redis
// implementation's Lua script mirrors Drain, Need and Add line for line.
//
// A level is in unit·milliseconds: taking n units adds n×Window, and a
// bucket with limit L drains by L per millisecond and has room while its
// level is at most L×Window.
package gcra

import (
	"time"

	"github.com/sluice-gateway/sluice/ratelimit"
)

const (
	// Window is the rate-limit period in milliseconds.
	Window = 60_000
	// MaxLevel caps a level (an overage can push it past the limit) so
	// that it, and every product and sum the Lua script forms from it,
	// stays below 2^53 and exact as a Lua number.
	MaxLevel = 1 << 52
)

// Drain returns level after elapsed milliseconds at limit per Window. An
// unlimited bucket (limit 0) is always empty; time never runs backwards.
func Drain(level, limit, elapsed int64) int64 {
	if limit <= 0 || level <= 0 {
		return 0
	}
	if elapsed <= 0 {
		return level
	}
	if elapsed >= ceilDiv(level, limit) {
		return 0
	}
	return level - elapsed*limit
}

// Need reports whether units fit in a bucket at level: 0 if they fit, the
// milliseconds until they would fit otherwise, or -1 if units exceed the
// limit and never fit.
func Need(level, limit, units int64) int64 {
	if limit <= 0 {
		return 0
	}
	if units > limit {
		return -1
	}
	over := level - (limit-units)*Window
	if over <= 0 {
		return 0
	}
	return ceilDiv(over, limit)
}

// Add returns level plus units (which may be negative), kept within
// [0, MaxLevel].
func Add(level, units int64) int64 {
	return min(max(level+units*Window, 0), MaxLevel)
}

// Remaining is how many whole units fit in a bucket at level.
func Remaining(level, limit int64) int64 {
	if room := limit*Window - level; room > 0 {
		return room / Window
	}
	return 0
}

// Reset is how long until a bucket at level is empty.
func Reset(level, limit int64) time.Duration {
	if limit <= 0 {
		return 0
	}
	return time.Duration(ceilDiv(level, limit)) * time.Millisecond
}

// TTL is how long, in milliseconds, a key's state matters: until both of
// its levels have drained. It is at least 1.
func TTL(req, rpm, tok, tpm int64) int64 {
	t := int64(1)
	if rpm > 0 {
		t = max(t, ceilDiv(req, rpm))
	}
	if tpm > 0 {
		t = max(t, ceilDiv(tok, tpm))
	}
	return t
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a-1)/b + 1
}

// Agg folds per-bucket results into a Decision without allocating unless
// a bucket refuses.
type Agg struct {
	d                ratelimit.Decision
	haveReq, haveTok bool
	refused          bool
	worst            int64 // longest wait among refusals; -1 for too large
	worstKey         string
	worstDim         string
}

// Add records one bucket: r, its levels (after the take when every bucket
// fits, before it otherwise) and the Need results for its two dimensions.
func (a *Agg) Add(r *ratelimit.Request, levReq, levTok, needReq, needTok int64) {
	if r.RPM > 0 {
		rem, reset := Remaining(levReq, r.RPM), Reset(levReq, r.RPM)
		if !a.haveReq || rem < a.d.RemainingRequests || (rem == a.d.RemainingRequests && reset > a.d.ResetRequests) {
			a.haveReq = true
			a.d.LimitRequests, a.d.RemainingRequests, a.d.ResetRequests = r.RPM, rem, reset
		}
	}
	if r.TPM > 0 {
		rem, reset := Remaining(levTok, r.TPM), Reset(levTok, r.TPM)
		if !a.haveTok || rem < a.d.RemainingTokens || (rem == a.d.RemainingTokens && reset > a.d.ResetTokens) {
			a.haveTok = true
			a.d.LimitTokens, a.d.RemainingTokens, a.d.ResetTokens = r.TPM, rem, reset
		}
	}
	a.refuse(r.Key, "rpm", needReq)
	a.refuse(r.Key, "tpm", needTok)
}

func (a *Agg) refuse(key, dim string, need int64) {
	if need == 0 {
		return
	}
	if !a.refused || a.worst >= 0 && (need < 0 || need > a.worst) {
		a.refused, a.worst, a.worstKey, a.worstDim = true, need, key, dim
	}
}

// Decision returns the folded Decision.
func (a *Agg) Decision() ratelimit.Decision {
	d := a.d
	d.Allowed = !a.refused
	if a.refused {
		d.Limit = a.worstKey + "/" + a.worstDim
		if a.worst < 0 {
			d.TooLarge = true
		} else {
			d.RetryAfter = time.Duration(a.worst) * time.Millisecond
		}
	}
	return d
}
