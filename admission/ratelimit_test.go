package admission_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/admission"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/ratelimit/memory"
)

// clock is a settable time source for the limiter.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// limitEnv is a RateLimits on a memory limiter with an injected clock.
type limitEnv struct {
	t       *testing.T
	clock   *clock
	rl      *admission.RateLimits
	rejects []string
}

func newLimitEnv(t *testing.T, rules ...admission.RateRule) *limitEnv {
	t.Helper()
	e := &limitEnv{t: t, clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	lim := memory.New(memory.Options{Now: e.clock.Now, SweepInterval: -1})
	t.Cleanup(func() { lim.Close() })
	e.rl = &admission.RateLimits{Limiter: lim, Rules: rules, OnReject: func(l string) { e.rejects = append(e.rejects, l) }}
	return e
}

// gatewayEndpoint is an endpoint with the given AI Gateway rate limits.
func gatewayEndpoint(name string, limits ...sluice.AIRateLimit) *proxy.Endpoint {
	for i := range limits {
		limits[i].RenewalPeriod = "minute"
	}
	return &proxy.Endpoint{Name: name, MaxOutputTokens: 100, Targets: []*proxy.Target{{Upstream: &proxy.Upstream{Name: "up"}, Model: "gpt-4o-mini"}},
		Gateway: &sluice.AIGateway{RateLimits: limits}}
}

type caller struct {
	key, team, user string
	maxTokens       int64
}

// admit runs one admission and returns its done func, response headers
// and error.
func (e *limitEnv) admit(ep *proxy.Endpoint, c caller) (func(*sluice.UsageRecord), http.Header, error) {
	e.t.Helper()
	a := &proxy.Admission{
		Key:      &sluice.Key{ID: c.key, Team: c.team},
		Endpoint: ep, API: sluice.APIChat, Model: ep.Name, User: c.user, MaxTokens: c.maxTokens,
		Body:    []byte(`{"model":"` + ep.Name + `","messages":[{"role":"user","content":"hi"}]}`),
		Targets: ep.Targets, Record: &sluice.UsageRecord{RequestID: "r"},
	}
	done, err := e.rl.Admit(context.Background(), a)
	return done, a.Header, err
}

// allowed admits n calls that must all pass.
func (e *limitEnv) allowed(n int, ep *proxy.Endpoint, c caller) {
	e.t.Helper()
	for i := range n {
		if _, _, err := e.admit(ep, c); err != nil {
			e.t.Fatalf("call %d of %+v refused: %v", i+1, c, err)
		}
	}
}

// refused admits one call that must be refused with a 429 and returns it.
func (e *limitEnv) refused(ep *proxy.Endpoint, c caller) (*apierr.Error, http.Header) {
	e.t.Helper()
	_, h, err := e.admit(ep, c)
	var ae *apierr.Error
	if !errors.As(err, &ae) || ae.Status != 429 || ae.Code != "rate_limit_exceeded" || ae.Class != sluice.ErrClassRateLimited {
		e.t.Fatalf("call of %+v: got %v, want a 429 rate_limit_exceeded", c, err)
	}
	return ae, h
}

func TestGatewayUserLimit(t *testing.T) {
	e := newLimitEnv(t)
	ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "user", Calls: 2})
	alice := caller{key: "k1", team: "fin", user: "alice"}
	e.allowed(2, ep, alice)
	ae, h := e.refused(ep, alice)
	if !strings.Contains(ae.Msg, "user alice on model 'chat'") || !strings.Contains(ae.Msg, "requests per minute") {
		t.Errorf("message %q does not name the user and the model", ae.Msg)
	}
	if h.Get("X-Ratelimit-Limit-Requests") != "2" || h.Get("X-Ratelimit-Remaining-Requests") != "0" || h.Get("Retry-After") != "30" {
		t.Errorf("headers %v: want limit 2, remaining 0, Retry-After 30", h)
	}
	if ae.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter = %v, want 30s", ae.RetryAfter)
	}
	// Every user has a bucket of their own, whichever key they come with.
	e.allowed(2, ep, caller{key: "k1", team: "fin", user: "bob"})
	e.refused(ep, caller{key: "k2", team: "ops", user: "alice"})
	// A call with no end user is not held to user limits.
	e.allowed(5, ep, caller{key: "k1", team: "fin"})
	// The bucket refills at calls per minute.
	e.clock.Add(30 * time.Second)
	e.allowed(1, ep, alice)
	e.refused(ep, alice)
	if want := []string{"gateway_user/rpm", "gateway_user/rpm", "gateway_user/rpm"}; strings.Join(e.rejects, ",") != strings.Join(want, ",") {
		t.Errorf("OnReject got %v, want %v", e.rejects, want)
	}
}

func TestGatewayTeamKeyAndEndpointLimits(t *testing.T) {
	t.Run("user_group is the key's team", func(t *testing.T) {
		e := newLimitEnv(t)
		ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "user_group", Calls: 2})
		e.allowed(1, ep, caller{key: "k1", team: "fin"})
		e.allowed(1, ep, caller{key: "k2", team: "fin", user: "u"})
		ae, _ := e.refused(ep, caller{key: "k3", team: "fin"})
		if !strings.Contains(ae.Msg, "team fin on model 'chat'") {
			t.Errorf("message %q does not name the team", ae.Msg)
		}
		e.allowed(2, ep, caller{key: "k4", team: "ops"})
	})
	t.Run("service_principal is the key", func(t *testing.T) {
		e := newLimitEnv(t)
		ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "service_principal", Calls: 1})
		e.allowed(1, ep, caller{key: "k1", team: "fin", user: "a"})
		ae, _ := e.refused(ep, caller{key: "k1", team: "fin", user: "b"})
		if !strings.Contains(ae.Msg, "key k1 on model 'chat'") {
			t.Errorf("message %q does not name the key", ae.Msg)
		}
		e.allowed(1, ep, caller{key: "k2", team: "fin"})
		if e.rejects[0] != "gateway_key/rpm" {
			t.Errorf("OnReject got %v", e.rejects)
		}
	})
	t.Run("endpoint is shared by every caller of that endpoint only", func(t *testing.T) {
		e := newLimitEnv(t)
		chat := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "endpoint", Calls: 2})
		other := gatewayEndpoint("other", sluice.AIRateLimit{Key: "endpoint", Calls: 2})
		e.allowed(1, chat, caller{key: "k1", team: "fin"})
		e.allowed(1, chat, caller{key: "k2", team: "ops", user: "z"})
		ae, _ := e.refused(chat, caller{key: "k3", team: "x"})
		if !strings.Contains(ae.Msg, "endpoint chat on requests") {
			t.Errorf("message %q does not name the endpoint", ae.Msg)
		}
		e.allowed(2, other, caller{key: "k1", team: "fin"})
	})
}

func TestGatewayPrincipals(t *testing.T) {
	t.Run("a principal's limit applies to that principal only", func(t *testing.T) {
		e := newLimitEnv(t)
		ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "user", Principal: "alice", Calls: 1})
		e.allowed(1, ep, caller{key: "k", team: "t", user: "alice"})
		e.refused(ep, caller{key: "k", team: "t", user: "alice"})
		e.allowed(5, ep, caller{key: "k", team: "t", user: "bob"})
	})
	t.Run("custom limits override the defaults", func(t *testing.T) {
		e := newLimitEnv(t)
		ep := gatewayEndpoint("chat",
			sluice.AIRateLimit{Key: "user", Calls: 1},                                  // default per user
			sluice.AIRateLimit{Key: "user", Principal: "vip", Calls: 3},                // one user
			sluice.AIRateLimit{Key: "user_group", Principal: "fin", Calls: 2},          // one team, shared
			sluice.AIRateLimit{Key: "service_principal", Principal: "batch", Calls: 4}, // one key
		)
		e.allowed(1, ep, caller{key: "k", team: "ops", user: "u1"})
		e.refused(ep, caller{key: "k", team: "ops", user: "u1"})
		// vip's own limit, not the default nor its team's.
		e.allowed(3, ep, caller{key: "k", team: "fin", user: "vip"})
		e.refused(ep, caller{key: "k", team: "fin", user: "vip"})
		// fin's other users share the team's 2, instead of 1 each.
		e.allowed(1, ep, caller{key: "k", team: "fin", user: "f1"})
		e.allowed(1, ep, caller{key: "k", team: "fin", user: "f2"})
		e.refused(ep, caller{key: "k", team: "fin", user: "f3"})
		// The batch key has its own limit, whatever user it names.
		e.allowed(4, ep, caller{key: "batch", team: "fin", user: "f1"})
		e.refused(ep, caller{key: "batch", team: "ops"})
	})
	t.Run("limits on one bucket combine into the strictest", func(t *testing.T) {
		e := newLimitEnv(t)
		ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "user", Calls: 5}, sluice.AIRateLimit{Key: "user", Calls: 2})
		e.allowed(2, ep, caller{key: "k", team: "t", user: "a"})
		e.refused(ep, caller{key: "k", team: "t", user: "a"})
	})
}

func TestGatewayTokenLimit(t *testing.T) {
	e := newLimitEnv(t)
	ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "user", Tokens: 1000})
	alice := caller{key: "k", team: "t", user: "alice", maxTokens: 400}
	done, h, err := e.admit(ep, alice)
	if err != nil || done == nil {
		t.Fatalf("first call: done=%v err=%v; want a correction func", done != nil, err)
	}
	if h.Get("X-Ratelimit-Limit-Tokens") != "1000" {
		t.Errorf("headers %v: want a tokens limit of 1000", h)
	}
	reserved := 1000 - mustInt(t, h.Get("X-Ratelimit-Remaining-Tokens"))
	if reserved <= 400 || reserved > 450 {
		t.Fatalf("reserved %d tokens, want the prompt plus max_tokens 400", reserved)
	}
	if _, _, err := e.admit(ep, alice); err != nil {
		t.Fatalf("second call: %v", err)
	}
	ae, _ := e.refused(ep, alice)
	if ae.Type != "tokens" || !strings.Contains(ae.Msg, "tokens per minute") || e.rejects[0] != "gateway_user/tpm" {
		t.Errorf("refusal %q (type %s, metric %v): want a tokens refusal", ae.Msg, ae.Type, e.rejects)
	}
	// The first call used 10 tokens: the correction refunds the rest.
	done(&sluice.UsageRecord{RequestID: "r", TotalTokens: 10})
	if _, _, err := e.admit(ep, alice); err != nil {
		t.Fatalf("after the refund: %v", err)
	}
	// A call asking for more than the limit can never fit.
	ae, _ = e.refused(ep, caller{key: "k", team: "t", user: "bob", maxTokens: 5000})
	if !strings.Contains(ae.Msg, "more tokens per minute than the user limit allows") || ae.RetryAfter != 0 {
		t.Errorf("too large: %q retry %v", ae.Msg, ae.RetryAfter)
	}
}

func TestGatewayBucketsApartFromRules(t *testing.T) {
	e := newLimitEnv(t, admission.RateRule{Scope: "team", RPM: 3})
	ep := gatewayEndpoint("chat", sluice.AIRateLimit{Key: "user_group", Calls: 1})
	fin := caller{key: "k", team: "fin"}
	e.allowed(1, ep, fin)
	// The AI Gateway's team bucket is full; the rule's is not.
	ae, _ := e.refused(ep, fin)
	if e.rejects[0] != "gateway_team/rpm" || !strings.Contains(ae.Msg, "model 'chat'") {
		t.Errorf("refused by %v (%q), want the AI Gateway limit", e.rejects, ae.Msg)
	}
	// An endpoint without AI Gateway limits has only the rule: the
	// refused call took nothing, so 2 of the rule's 3 remain.
	plain := &proxy.Endpoint{Name: "plain", Targets: ep.Targets}
	e.allowed(2, plain, fin)
	e.refused(plain, fin)
	if e.rejects[1] != "team/rpm" {
		t.Errorf("refused by %v, want the team rule", e.rejects)
	}
}

func TestRateLimitsWithoutRules(t *testing.T) {
	e := newLimitEnv(t)
	ep := &proxy.Endpoint{Name: "chat", Targets: gatewayEndpoint("chat").Targets}
	done, h, err := e.admit(ep, caller{key: "k", team: "t", user: "u"})
	if done != nil || err != nil || len(h) != 0 {
		t.Fatalf("no rules, no AI Gateway: done=%v headers=%v err=%v; want nothing", done != nil, h, err)
	}
	ep.Gateway = &sluice.AIGateway{}
	if done, _, err := e.admit(ep, caller{key: "k", team: "t"}); done != nil || err != nil {
		t.Fatalf("empty AI Gateway: done=%v err=%v", done != nil, err)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
