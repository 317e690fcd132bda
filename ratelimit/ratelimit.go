// Package ratelimit defines the requests-per-minute and tokens-per-minute
// limits Sluice applies before a request reaches an upstream.
//
// One HTTP request is checked against several buckets at once (its key,
// its team, the endpoint, the end user); a Limiter admits it only if every
// bucket has room, and then takes from all of them, atomically. Tokens are
// reserved from an estimate at admission and corrected to the real usage
// when the response is done.
//
// # Algorithm
//
// Every bucket is a GCRA meter (the "virtual scheduling" form of a leaky
// bucket) kept in exact integer arithmetic. A bucket with limit L per
// minute has a level measured in unit·milliseconds: taking n units adds
// n×60,000, the level drains by L every millisecond, and a request fits
// while the level stays at or below L×60,000. So:
//
//   - a full bucket admits a burst of exactly L, and then one more unit
//     every 60,000/L ms (rounded up to the next millisecond, never down);
//   - an idle bucket is back to L after at most 60 s (the "window reset");
//   - over any interval of d ms at most L + L×d/60,000 units are admitted.
//
// The state is one level per dimension and a timestamp per key, so a check
// costs a few integer operations. Time has millisecond resolution. Limits,
// token counts and estimates are capped at MaxLimit so that every
// intermediate value stays below 2^53 and is exact in Redis Lua too.
//
// Implementations live in subpackages: memory (one process) and redis
// (shared by replicas). ratelimittest holds the conformance suite both
// pass.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// MaxLimit is the largest RPM, TPM or token count a Request may carry.
const MaxLimit = 100_000_000_000

// Request names one bucket an HTTP request must fit in.
type Request struct {
	// Key identifies the bucket, e.g. "key:abc", "team:x", "endpoint:y",
	// "user:z". Requests with the same Key share one bucket.
	Key string
	// RPM and TPM are the bucket's limits per minute; 0 means unlimited.
	// They are passed on every call so a configuration change applies at
	// once; a bucket's level carries over to the new limits.
	RPM, TPM int64
	// Tokens is the number of tokens to reserve: an estimate of the
	// request's prompt plus its maximum completion.
	Tokens int64
}

// Decision is a Limiter's answer. Besides Allowed it describes, for each
// dimension, the most constraining bucket (the one with the fewest units
// remaining; on a tie, the one that takes longer to reset), which is what
// OpenAI's x-ratelimit-* headers report. After an admission the figures
// include the request just admitted; after a refusal nothing was taken.
type Decision struct {
	Allowed bool
	// Limit names the bucket that refused, as "<key>/rpm" or "<key>/tpm";
	// empty when Allowed. When several refuse it names the one with the
	// longest wait.
	Limit string
	// RetryAfter is how long to wait before the same request could be
	// admitted, if nothing else is taken meanwhile. Zero when Allowed or
	// when TooLarge.
	RetryAfter time.Duration
	// TooLarge means the request asks for more tokens than the refusing
	// bucket's TPM: waiting cannot help.
	TooLarge bool

	// LimitRequests is the RPM of the most constraining request bucket,
	// 0 if no bucket limits requests; likewise LimitTokens for TPM.
	LimitRequests     int64
	RemainingRequests int64
	ResetRequests     time.Duration // until that bucket is full again
	LimitTokens       int64
	RemainingTokens   int64
	ResetTokens       time.Duration
}

// Limiter checks and takes rate-limit buckets.
type Limiter interface {
	// Admit checks every bucket in reqs and, only if all have room, takes
	// one request and Request.Tokens tokens from each: all or none, as one
	// atomic step with respect to every other Admit and Correct. A bucket
	// listed twice is taken twice.
	//
	// A non-nil error means the limiter could not decide (invalid requests
	// wrap ErrInvalid; an unreachable store wraps ErrUnavailable). The
	// Decision returned with ErrUnavailable is the implementation's
	// configured fail-open or fail-closed answer: callers act on
	// Decision.Allowed and log the error.
	Admit(ctx context.Context, reqs []Request) (Decision, error)

	// Correct settles the tokens reserved by an admitted Admit: for every
	// request with a TPM it adds actualTokens minus Request.Tokens to the
	// bucket, refunding an overestimate or charging an overage (which can
	// leave the bucket above its limit, delaying later requests). Pass the
	// same reqs that were admitted, once. Requests and RPM are unaffected.
	Correct(ctx context.Context, reqs []Request, actualTokens int64) error
}

// Sentinel errors; check with errors.Is.
var (
	// ErrInvalid means the requests passed to a Limiter are malformed.
	ErrInvalid = errors.New("invalid rate limit request")
	// ErrUnavailable means the limiter's shared store could not be reached.
	ErrUnavailable = errors.New("rate limiter unavailable")
)

// Validate checks reqs as every Limiter does before touching a bucket.
func Validate(reqs []Request) error {
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.Key == "":
			return fmt.Errorf("%w: request %d has no key", ErrInvalid, i)
		case r.RPM < 0 || r.TPM < 0 || r.Tokens < 0:
			return fmt.Errorf("%w: %s: negative limit or token count", ErrInvalid, r.Key)
		case r.RPM > MaxLimit || r.TPM > MaxLimit || r.Tokens > MaxLimit:
			return fmt.Errorf("%w: %s: limit or token count above %d", ErrInvalid, r.Key, int64(MaxLimit))
		}
	}
	return nil
}

// ValidateActual checks Correct's actualTokens.
func ValidateActual(actualTokens int64) error {
	if actualTokens < 0 || actualTokens > MaxLimit {
		return fmt.Errorf("%w: actual tokens %d out of range", ErrInvalid, actualTokens)
	}
	return nil
}

// WriteHeaders sets OpenAI's rate-limit headers from d on h:
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} for each dimension
// that has a limit, and on a refusal Retry-After (whole seconds, rounded
// up) and retry-after-ms, which OpenAI's client libraries honour.
func (d Decision) WriteHeaders(h http.Header) {
	if d.LimitRequests > 0 {
		h.Set("X-Ratelimit-Limit-Requests", strconv.FormatInt(d.LimitRequests, 10))
		h.Set("X-Ratelimit-Remaining-Requests", strconv.FormatInt(d.RemainingRequests, 10))
		h.Set("X-Ratelimit-Reset-Requests", d.ResetRequests.String())
	}
	if d.LimitTokens > 0 {
		h.Set("X-Ratelimit-Limit-Tokens", strconv.FormatInt(d.LimitTokens, 10))
		h.Set("X-Ratelimit-Remaining-Tokens", strconv.FormatInt(d.RemainingTokens, 10))
		h.Set("X-Ratelimit-Reset-Tokens", d.ResetTokens.String())
	}
	if !d.Allowed && d.RetryAfter > 0 {
		secs := (d.RetryAfter + time.Second - 1) / time.Second
		h.Set("Retry-After", strconv.FormatInt(int64(secs), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(d.RetryAfter.Milliseconds(), 10))
	}
}
