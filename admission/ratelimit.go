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

// RateLimits admits a call only if every rule that applies to it has room:
// the configured Rules and the calling endpoint's AI Gateway rate limits
// (proxy.Endpoint.Gateway). It works with no Rules, for endpoints whose
// only limits are their AI Gateway settings.
//
// AI Gateway limits map onto Sluice as sluice.RateScope says: key user is
// the end user (Admission.User), user_group the key's team,
// service_principal the key, endpoint the endpoint; calls is RPM, tokens
// TPM. A limit with no principal gives each principal its own bucket (the
// per-user default); one with a principal applies to that principal only.
// As in Databricks, custom limits override defaults: a call whose user or
// key has a limit of its own is held to those limits only; else, if its
// team has one, to the team's; else to the default user,
// service_principal and user_group limits. Endpoint limits always apply.
// Several limits on one bucket combine into the strictest RPM and TPM.
// A call with no end user is not subject to user limits. AI Gateway
// buckets are named "gw:<endpoint>:<scope>:<principal>", apart from the
// configured rules' buckets.
type RateLimits struct {
	// Limiter holds the buckets; it must be set.
	Limiter ratelimit.Limiter
	Rules   []RateRule
	Logger  *slog.Logger
	// OnReject is called with the refusing limit, for metrics: a rule's
	// as "<scope>/rpm" or "<scope>/tpm", an AI Gateway limit's as
	// "gateway_<scope>/rpm" or "gateway_<scope>/tpm".
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
	if g := a.Endpoint.Gateway; g != nil && len(g.RateLimits) > 0 {
		n := len(reqs)
		reqs = gatewayRequests(g.RateLimits, a, reqs)
		for _, r := range reqs[n:] {
			needTokens = needTokens || r.TPM > 0
		}
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
		l := describe(d.Limit)
		if rl.OnReject != nil {
			rl.OnReject(l.metric)
		}
		scope, what := l.scope, "requests"
		if l.dim == "tpm" {
			what = "tokens"
		}
		msg := "Rate limit reached for " + scope + " " + l.who + " on " + what + " per minute."
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

// Levels of AI Gateway limits: a call is held to the most specific level
// that has a limit for it (endpoint limits aside).
const (
	levelDefault    = iota // no principal: each principal's own bucket
	levelGroup             // user_group with the key's team
	levelIndividual        // user or service_principal naming the caller
)

// level is r's level, and whether it names a principal other than the
// caller's (then it does not apply). Endpoint limits have no level (-1).
func level(r *sluice.AIRateLimit, a *proxy.Admission) (int, bool) {
	if r.Key == "endpoint" {
		return -1, r.Principal == "" || r.Principal == a.Endpoint.Name
	}
	if r.Principal == "" {
		return levelDefault, true
	}
	if r.Principal != principal(sluice.RateScope(r.Key), a) {
		return 0, false
	}
	if r.Key == "user_group" {
		return levelGroup, true
	}
	return levelIndividual, true
}

// gatewayRequests appends to reqs the buckets of the AI Gateway limits
// that apply to a, one per bucket with the strictest of its limits.
func gatewayRequests(limits []sluice.AIRateLimit, a *proxy.Admission, reqs []ratelimit.Request) []ratelimit.Request {
	top := levelDefault
	for i := range limits {
		if lv, ok := level(&limits[i], a); ok {
			top = max(top, lv)
		}
	}
	n := len(reqs)
	for i := range limits {
		r := &limits[i]
		lv, ok := level(r, a)
		if !ok || lv >= 0 && lv != top {
			continue
		}
		scope := sluice.RateScope(r.Key)
		p := principal(scope, a)
		if p == "" {
			continue // no end user: user limits cannot tell callers apart
		}
		key := gatewayPrefix + a.Endpoint.Name + ":" + scope + ":" + p
		j := n
		for j < len(reqs) && reqs[j].Key != key {
			j++
		}
		if j == len(reqs) {
			reqs = append(reqs, ratelimit.Request{Key: key})
		}
		reqs[j].RPM = strictest(reqs[j].RPM, r.Calls)
		reqs[j].TPM = strictest(reqs[j].TPM, r.Tokens)
	}
	return reqs
}

// gatewayPrefix starts the bucket keys of AI Gateway limits; configured
// rules' keys start with their scope, never "gw".
const gatewayPrefix = "gw:"

// strictest combines two limits where 0 means none.
func strictest(a, b int64) int64 {
	if a == 0 || b > 0 && b < a {
		return b
	}
	return a
}

// limitDesc is a refusing limit as shown to clients and metrics.
type limitDesc struct {
	metric string // "team/tpm", "gateway_user/rpm"
	scope  string // key, team, endpoint, user
	who    string // the principal, and where the limit holds
	dim    string // rpm or tpm
}

// describe reads a Decision.Limit: "team:x@ep/tpm" for a configured rule,
// "gw:ep:team:x/tpm" for an AI Gateway limit, "" for none.
func describe(limit string) limitDesc {
	i := strings.LastIndexByte(limit, '/')
	if i < 0 {
		return limitDesc{metric: "limiter/unavailable", scope: "limiter", dim: "unavailable"}
	}
	d := limitDesc{dim: limit[i+1:]}
	if rest, ok := strings.CutPrefix(limit[:i], gatewayPrefix); ok {
		ep, rest, _ := strings.Cut(rest, ":")
		d.scope, d.who, _ = strings.Cut(rest, ":")
		if d.scope != "endpoint" {
			d.who += " on model '" + ep + "'"
		}
		d.metric = "gateway_" + d.scope + "/" + d.dim
		return d
	}
	d.scope, d.who, _ = strings.Cut(limit[:i], ":")
	d.metric = d.scope + "/" + d.dim
	return d
}
