package proxy_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/resilience"
)

// TestBreakerOpensAndRecovers runs Sluice's circuit breaker, on an
// injected clock, in front of an upstream that fails and then recovers.
func TestBreakerOpensAndRecovers(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	a := newUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) bool {
		if failing.Load() {
			return status(500)(w, r)
		}
		return false
	})
	b := newUpstream(t, "b", nil)
	var mu sync.Mutex
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var states []string
	br := &resilience.Breaker{Failures: 2, Cooldown: 30 * time.Second, Now: clock,
		OnChange: func(s string) { states = append(states, s) }}
	ta, tb := target(t, "a", a), target(t, "b", b)
	ta.Guard = br
	ep := &proxy.Endpoint{Name: "ep", APIs: []sluice.API{sluice.APIChat}, Ordered: true, Fallback: true, Targets: []*proxy.Target{ta, tb}}
	srv, l := gateway(t, proxy.Options{}, ep)
	call := func() sluice.UsageRecord {
		t.Helper()
		if resp, body := post(t, srv.URL+"/v1/chat/completions", chat); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		return l.last(t)
	}

	// Two failures in a row open the breaker; b answers each time.
	for range 2 {
		if rec := call(); rec.AttemptLog != "a:502:upstream_status;b:200" {
			t.Fatalf("attempts %q", rec.AttemptLog)
		}
	}
	if br.State() != resilience.StateOpen {
		t.Fatalf("state %s after 2 failures", br.State())
	}
	// Open: a is not called at all.
	before := a.calls.Load()
	if rec := call(); rec.AttemptLog != "a:open;b:200" || a.calls.Load() != before {
		t.Fatalf("open breaker: %q, a called %d times", rec.AttemptLog, a.calls.Load()-before)
	}
	if d := br.RetryAfter(); d != 30*time.Second {
		t.Fatalf("retry after %v", d)
	}
	// The cool-down passes while a is still failing: the half-open probe
	// fails and the breaker opens again.
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	if rec := call(); rec.AttemptLog != "a:502:upstream_status;b:200" || br.State() != resilience.StateOpen {
		t.Fatalf("failed probe: %q, state %s", rec.AttemptLog, br.State())
	}
	// a recovers; after the next cool-down the probe succeeds and closes
	// the breaker, and a serves again.
	failing.Store(false)
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	for range 2 {
		if rec := call(); rec.AttemptLog != "a:200" || rec.ServedEntity != "a" {
			t.Fatalf("recovered: %q", rec.AttemptLog)
		}
	}
	if br.State() != resilience.StateClosed {
		t.Fatalf("state %s after recovery", br.State())
	}
	if want := "[open half_open open half_open closed]"; fmt.Sprint(states) != want {
		t.Fatalf("transitions %v, want %s", states, want)
	}
}
