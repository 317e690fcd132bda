package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/admission"
	"github.com/sluice-gateway/sluice/config"
	"github.com/sluice-gateway/sluice/ratelimit"
	"github.com/sluice-gateway/sluice/ratelimit/memory"
	rlredis "github.com/sluice-gateway/sluice/ratelimit/redis"
)

// rateLimits builds the rate-limit admitter, or nil when no rule is set.
// The returned close func releases the limiter's resources.
func rateLimits(ctx context.Context, cfg config.RateLimits, log *slog.Logger, onReject func(string)) (*admission.RateLimits, func(), error) {
	// Built even with no rules: endpoints' AI Gateway settings may set
	// limits at run time.
	var (
		lim     ratelimit.Limiter
		closeFn func()
	)
	switch cfg.Backend {
	case "redis":
		opts, err := goredis.ParseURL(cfg.Redis.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("rate_limits.redis.url: %w", err)
		}
		// Bound how long an unreachable Redis can hold a request: one
		// attempt, short timeouts, then the fail-open/closed answer.
		t := cfg.Redis.Timeout.D()
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = t, t, t
		opts.MaxRetries = -1
		opts.DialerRetries = 1
		opts.PoolSize = 64
		c := goredis.NewClient(opts)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := c.Ping(pctx).Err(); err != nil {
			log.Warn("redis rate limiter not reachable at start", "fail_open", *cfg.Redis.FailOpen, "err", err)
		}
		cancel()
		lim = rlredis.New(c, rlredis.Options{Prefix: cfg.Redis.Prefix, FailOpen: *cfg.Redis.FailOpen})
		closeFn = func() { c.Close() }
	default:
		m := memory.New(memory.Options{})
		lim, closeFn = m, func() { m.Close() }
	}
	rules := make([]admission.RateRule, len(cfg.Rules))
	for i, r := range cfg.Rules {
		rules[i] = admission.RateRule{Scope: r.Scope(), Principal: r.Principal, Endpoint: r.Endpoint, RPM: r.RPM, TPM: r.TPM}
	}
	return &admission.RateLimits{Limiter: lim, Rules: rules, Logger: log, OnReject: onReject}, closeFn, nil
}
