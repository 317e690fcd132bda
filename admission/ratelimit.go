// Package admission holds the proxy's admission steps for money and load:
// rate limits and budget reservations. Each is a proxy.Admitter.
package admission

import (
	"context"
	"log/slog"
	"strings"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/ratelimit"
)

// RateRule is one configured limit.
type RateRule struct {
	Scope     string // key, team, endpoint, user
	Principal string // one principal, or "" for each separately
	Endpoint  string // one endpoint, or "" for all
	RPM, TPM  int64
}

// RateLimits admits a call only if every rule that applies to it has room.
type RateLimits struct {
	Limiter ratelimit.Limiter
	Rules   []RateRule
	Logger  *slog.Logger
	// OnReject is called with the refusing limit, as "<scope>/rpm" or
	// "<scope>/tpm", for metrics.
	OnReject func(limit string)
}

var _ proxy.Admitter = (*RateLimits)(nil)

func principal(scope string, a *proxy.Admission) string {
	switch scope {
	case "key":
		return a.Key.ID
	case "team":
		return a.Key.Team
	case "endpoint":
		return a.Endpoint.Name
	case "user":
		return a.User
	}
	return ""
}

// Admit implements proxy.Admitter.
func (rl *RateLimits) Admit(ctx context.Context, a *proxy.Admission) (func(*sluice.UsageRecord), error) {
	var reqs []ratelimit.Request
	needTokens := false
	for _, r := range rl.Rules {
		if r.Endpoint != "" && r.Endpoint != a.Endpoint.Name {
			continue
		}
		p := principal(r.Scope, a)
		if p == "" || (r.Principal != "" && r.Principal != p) {
			continue
		}
		key := r.Scope + ":" + p
		if r.Endpoint != "" {
			key += "@" + r.Endpoint
		}
		reqs = append(reqs, ratelimit.Request{Key: key, RPM: r.RPM, TPM: r.TPM})
		needTokens = needTokens || r.TPM > 0
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	var tokens int64
	if needTokens {
		tokens = a.PromptTokens() + a.WorstCaseOutput()
		for i := range reqs {
			if reqs[i].TPM > 0 {
				reqs[i].Tokens = tokens
			}
		}
	}
	d, err := rl.Limiter.Admit(ctx, reqs)
	if err != nil && rl.Logger != nil {
		rl.Logger.Warn("rate limiter unavailable", "allowed", d.Allowed, "err", err)
	}
	if a.Header == nil {
		a.Header = make(map[string][]string)
	}
	d.WriteHeaders(a.Header)
	if !d.Allowed {
		scope, dim := limitLabel(d.Limit)
		if rl.OnReject != nil {
			rl.OnReject(scope + "/" + dim)
		}
		what := "requests"
		if dim == "tpm" {
			what = "tokens"
		}
		msg := "Rate limit reached for " + scope + " " + strings.TrimPrefix(subject(d.Limit), scope+":") + " on " + what + " per minute."
		if d.TooLarge {
			msg = "The request asks for more tokens per minute than the " + scope + " limit allows; lower max_tokens or the prompt."
		} else if d.Limit == "" {
			msg = "The rate limiter is unavailable and is configured to refuse requests."
		} else {
			msg += " Retry after " + d.RetryAfter.Round(1e6).String() + "."
		}
		return nil, &apierr.Error{Status: 429, Type: what, Code: "rate_limit_exceeded", Msg: msg,
			Class: sluice.ErrClassRateLimited, RetryAfter: d.RetryAfter, Err: err}
	}
	if !needTokens {
		return nil, nil
	}
	return func(rec *sluice.UsageRecord) {
		// A failed call has no tokens: the whole reservation is refunded.
		if err := rl.Limiter.Correct(context.WithoutCancel(ctx), reqs, rec.TotalTokens); err != nil && rl.Logger != nil {
			rl.Logger.Warn("rate limit correction failed", "request_id", rec.RequestID, "err", err)
		}
	}, nil
}

// limitLabel splits "team:x@ep/tpm" into ("team", "tpm").
func limitLabel(limit string) (scope, dim string) {
	i := strings.LastIndexByte(limit, '/')
	if i < 0 {
		return "limiter", "unavailable"
	}
	dim = limit[i+1:]
	scope, _, _ = strings.Cut(limit[:i], ":")
	return scope, dim
}

func subject(limit string) string {
	if i := strings.LastIndexByte(limit, '/'); i >= 0 {
		return limit[:i]
	}
	return limit
}
