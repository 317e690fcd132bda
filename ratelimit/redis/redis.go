// Package redis is a ratelimit.Limiter whose buckets live in Redis, so
// that every gateway replica shares one set of limits.
//
// Each Admit and each Correct is one Lua script, run with EVALSHA (and
// EVAL once per server when the script is not cached yet): one round trip
// that checks and takes every bucket of the request atomically. Buckets are
// hashes named Prefix+Request.Key with a TTL of the time they take to
// drain, so idle keys disappear on their own.
//
// # Clock
//
// With Options.Now nil the script reads the Redis server's clock (TIME),
// so all replicas share one clock however far theirs drift; this is the
// production setting. With Now set, each call passes the caller's time
// instead: tests use that to inject a clock, and a fleet with synchronised
// clocks may use it too, but a replica whose clock runs ahead drains
// buckets early and lets more through. A clock stepping backwards never
// refills a bucket. Either way keys expire on the server's clock, a minute
// after their bucket has drained, so a caller clock lagging the server's
// by up to a minute loses no state.
//
// # Redis Cluster
//
// A script may only touch keys of one hash slot, and one request's buckets
// (key, team, endpoint, user) must be updated together, so on Redis Cluster
// put a hash tag in the prefix, e.g. "{sluice-rl}:". That places every
// bucket on one shard; a single Redis serves hundreds of thousands of
// scripts a second, far above one gateway's rate.
package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/ratelimit"
	"github.com/sluice-gateway/sluice/ratelimit/internal/gcra"
)

// Options configure a Limiter.
type Options struct {
	// Prefix is prepended to every bucket key. If empty, "sluice:rl:".
	Prefix string
	// FailOpen chooses what Admit answers when Redis cannot be reached:
	// true admits the request (availability over limits), false refuses
	// it (limits over availability). Either way Admit also returns an
	// error wrapping ratelimit.ErrUnavailable. How long it takes to find
	// Redis unreachable is the client's configuration: go-redis by default
	// retries commands 3 times and dials 5 times 100 ms apart, so size
	// DialTimeout, DialerRetries and MaxRetries for the latency you accept.
	FailOpen bool
	// Now, if set, supplies the time instead of the Redis server's clock;
	// see the package documentation for the trade-off.
	Now func() time.Time
}

// Limiter is a Redis-backed ratelimit.Limiter. It is safe for concurrent
// use.
type Limiter struct {
	c        goredis.Scripter
	prefix   string
	failOpen bool
	now      func() time.Time
	admit    script
	correct  script
	trips    atomic.Uint64
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns a Limiter using c, a *goredis.Client, *goredis.ClusterClient
// or any other Scripter.
func New(c goredis.Scripter, opts Options) *Limiter {
	if opts.Prefix == "" {
		opts.Prefix = "sluice:rl:"
	}
	return &Limiter{
		c:        c,
		prefix:   opts.Prefix,
		failOpen: opts.FailOpen,
		now:      opts.Now,
		admit:    newScript(admitSrc),
		correct:  newScript(correctSrc),
	}
}

// RoundTrips returns how many commands this Limiter has sent to Redis:
// one per Admit or Correct, plus one whenever a script had to be sent in
// full because the server did not have it cached. Retries inside the
// client, if it is configured to retry, are not counted.
func (l *Limiter) RoundTrips() uint64 { return l.trips.Load() }

// Admit implements ratelimit.Limiter.
func (l *Limiter) Admit(ctx context.Context, reqs []ratelimit.Request) (ratelimit.Decision, error) {
	if err := ratelimit.Validate(reqs); err != nil {
		return ratelimit.Decision{}, err
	}
	if len(reqs) == 0 {
		return ratelimit.Decision{Allowed: true}, nil
	}
	keys, args := l.command(reqs, func(r *ratelimit.Request) int64 { return r.Tokens })
	v, err := l.run(ctx, l.admit, keys, args)
	if err != nil {
		return ratelimit.Decision{Allowed: l.failOpen}, fmt.Errorf("%w: admit: %w", ratelimit.ErrUnavailable, err)
	}
	vals, ok := v.([]any)
	if !ok || len(vals) != 1+4*len(reqs) {
		return ratelimit.Decision{Allowed: l.failOpen}, fmt.Errorf("%w: admit: unexpected reply %v", ratelimit.ErrUnavailable, v)
	}
	n := make([]int64, len(vals))
	for i, x := range vals {
		if n[i], ok = x.(int64); !ok {
			return ratelimit.Decision{Allowed: l.failOpen}, fmt.Errorf("%w: admit: unexpected reply %v", ratelimit.ErrUnavailable, v)
		}
	}
	var agg gcra.Agg
	for i := range reqs {
		f := n[1+4*i:]
		agg.Add(&reqs[i], f[0], f[1], f[2], f[3])
	}
	d := agg.Decision()
	if d.Allowed != (n[0] == 1) {
		return ratelimit.Decision{Allowed: l.failOpen}, fmt.Errorf("%w: admit: inconsistent reply %v", ratelimit.ErrUnavailable, v)
	}
	return d, nil
}

// Correct implements ratelimit.Limiter. A Redis failure is returned as an
// error wrapping ratelimit.ErrUnavailable; the correction is then lost and
// the reservation stands until the bucket drains.
func (l *Limiter) Correct(ctx context.Context, reqs []ratelimit.Request, actualTokens int64) error {
	if err := ratelimit.Validate(reqs); err != nil {
		return err
	}
	if err := ratelimit.ValidateActual(actualTokens); err != nil {
		return err
	}
	if len(reqs) == 0 {
		return nil
	}
	keys, args := l.command(reqs, func(r *ratelimit.Request) int64 { return actualTokens - r.Tokens })
	if _, err := l.run(ctx, l.correct, keys, args); err != nil {
		return fmt.Errorf("%w: correct: %w", ratelimit.ErrUnavailable, err)
	}
	return nil
}

// command builds a script's keys and arguments: now, then RPM, TPM and
// units(r) per request.
func (l *Limiter) command(reqs []ratelimit.Request, units func(*ratelimit.Request) int64) ([]string, []any) {
	keys := make([]string, len(reqs))
	args := make([]any, 1, 1+3*len(reqs))
	args[0] = "-1"
	if l.now != nil {
		args[0] = strconv.FormatInt(l.now().UnixMilli(), 10)
	}
	for i := range reqs {
		r := &reqs[i]
		keys[i] = l.prefix + r.Key
		args = append(args, r.RPM, r.TPM, units(r))
	}
	return keys, args
}

// run sends s by SHA and, if the server does not know it, in full.
func (l *Limiter) run(ctx context.Context, s script, keys []string, args []any) (any, error) {
	l.trips.Add(1)
	v, err := l.c.EvalSha(ctx, s.sha, keys, args...).Result()
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		l.trips.Add(1)
		v, err = l.c.Eval(ctx, s.src, keys, args...).Result()
	}
	return v, err
}
