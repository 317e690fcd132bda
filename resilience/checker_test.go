package resilience

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/config"
)

// upstream is a loopback server whose health answer the test flips.
type upstream struct {
	srv    *httptest.Server
	status atomic.Int64
	hits   chan string // paths requested
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{hits: make(chan string, 100)}
	u.status.Store(200)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case u.hits <- r.URL.RequestURI():
		default:
		}
		code := int(u.status.Load())
		if code == 302 {
			http.Redirect(w, r, "http://192.0.2.1/health", http.StatusFound)
			return
		}
		w.WriteHeader(code)
		w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// pinnedTransport dials only addr and records every dial, so a test can
// prove the checker reached nothing else.
type pinnedTransport struct {
	*http.Transport
	mu    sync.Mutex
	dials []string
}

func pinned(t *testing.T, addr string) *pinnedTransport {
	p := &pinnedTransport{}
	p.Transport = &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			p.mu.Lock()
			p.dials = append(p.dials, a)
			p.mu.Unlock()
			if a != addr {
				t.Errorf("checker dialled %s, want only %s", a, addr)
				return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError("refused by test")}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
	}
	t.Cleanup(p.CloseIdleConnections)
	return p
}

func (p *pinnedTransport) dialled() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dials...)
}

func healthCheck(unhealthy, healthy int) *config.HealthCheck {
	return &config.HealthCheck{Path: "/health?deep=1", Interval: config.Duration(time.Hour),
		Timeout: config.Duration(5 * time.Second), UnhealthyThreshold: unhealthy, HealthyThreshold: healthy}
}

func TestCheckerThresholds(t *testing.T) {
	up := newUpstream(t)
	rt := pinned(t, up.srv.Listener.Addr().String())
	var changes []string
	// The base URL's path, query and credentials are not part of the probe.
	c, err := NewChecker(up.srv.URL+"/serving-endpoints/x?q=1", healthCheck(2, 2), rt)
	if err != nil {
		t.Fatal(err)
	}
	c.OnChange = func(s string) { changes = append(changes, s) }
	ctx := context.Background()
	if c.Status() != StatusUnknown || !c.Healthy() {
		t.Fatalf("before any probe: %s healthy=%v, want UNKNOWN and healthy", c.Status(), c.Healthy())
	}
	step := func(code int, wantStatus string, wantHealthy bool) {
		t.Helper()
		up.status.Store(int64(code))
		err := c.Check(ctx)
		if (err == nil) != (code == 200) {
			t.Fatalf("Check with %d returned %v", code, err)
		}
		if c.Status() != wantStatus || c.Healthy() != wantHealthy {
			t.Fatalf("after %d: %s healthy=%v, want %s healthy=%v", code, c.Status(), c.Healthy(), wantStatus, wantHealthy)
		}
	}
	step(200, StatusUnknown, true) // 1 of 2 successes
	step(200, StatusHealthy, true)
	step(503, StatusHealthy, true) // 1 of 2 failures
	step(200, StatusHealthy, true) // resets the failures
	step(503, StatusHealthy, true)
	step(503, StatusUnhealthy, false)
	if c.LastError() == nil || !strings.Contains(c.LastError().Error(), "503") {
		t.Fatalf("LastError = %v", c.LastError())
	}
	step(200, StatusUnhealthy, false) // 1 of 2 successes
	step(503, StatusUnhealthy, false) // resets the successes
	step(200, StatusUnhealthy, false)
	step(200, StatusHealthy, true)
	if c.LastError() != nil {
		t.Fatalf("LastError = %v after a success", c.LastError())
	}
	want := []string{StatusHealthy, StatusUnhealthy, StatusHealthy}
	if strings.Join(changes, ",") != strings.Join(want, ",") {
		t.Fatalf("changes = %v, want %v", changes, want)
	}
	close(up.hits)
	for p := range up.hits {
		if p != "/health?deep=1" {
			t.Fatalf("probed %q, want /health?deep=1", p)
		}
	}
}

func TestCheckerStartUnhealthy(t *testing.T) {
	up := newUpstream(t)
	c, err := NewChecker(up.srv.URL, healthCheck(1, 1), pinned(t, up.srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	c.StartUnhealthy = true
	if c.Healthy() || c.Status() != StatusUnknown {
		t.Fatal("a checker that starts unhealthy is healthy before its first probe")
	}
	up.status.Store(503)
	c.Check(context.Background())
	if c.Healthy() || c.Status() != StatusUnhealthy {
		t.Fatalf("status %s after a failed probe", c.Status())
	}
	up.status.Store(204)
	if err := c.Check(context.Background()); err != nil || !c.Healthy() || c.Status() != StatusHealthy {
		t.Fatalf("status %s after a 204 (err %v)", c.Status(), err)
	}
}

func TestCheckerDialsOnlyTheUpstream(t *testing.T) {
	up := newUpstream(t)
	addr := up.srv.Listener.Addr().String()
	rt := pinned(t, addr)
	c, err := NewChecker(up.srv.URL, healthCheck(1, 1), rt)
	if err != nil {
		t.Fatal(err)
	}
	// A redirect elsewhere is a failure, not a hop.
	up.status.Store(302)
	if err := c.Check(context.Background()); err == nil || c.Healthy() {
		t.Fatal("a redirect counted as healthy")
	}
	// A server that is gone is a failure.
	up.srv.Close()
	rt.CloseIdleConnections()
	if err := c.Check(context.Background()); err == nil || c.Healthy() {
		t.Fatal("a closed server counted as healthy")
	}
	dials := rt.dialled()
	if len(dials) == 0 {
		t.Fatal("no dials recorded")
	}
	for _, d := range dials {
		if d != addr {
			t.Fatalf("dialled %s", d)
		}
	}
}

func TestCheckerTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	hc := healthCheck(1, 1)
	hc.Timeout = config.Duration(20 * time.Millisecond)
	c, err := NewChecker(srv.URL, hc, pinned(t, srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(context.Background()); err == nil || c.Healthy() {
		t.Fatal("a probe that timed out counted as healthy")
	}
}

func TestCheckerCancelledProbeIsNotCounted(t *testing.T) {
	up := newUpstream(t)
	c, err := NewChecker(up.srv.URL, healthCheck(1, 1), pinned(t, up.srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Check(ctx); err == nil {
		t.Fatal("a cancelled probe succeeded")
	}
	if c.Status() != StatusUnknown {
		t.Fatalf("status %s after a cancelled probe, want UNKNOWN", c.Status())
	}
}

func TestCheckerRunProbesAtOnceAndStops(t *testing.T) {
	up := newUpstream(t)
	c, err := NewChecker(up.srv.URL, healthCheck(1, 1), pinned(t, up.srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	changed := make(chan string, 10)
	c.OnChange = func(s string) { changed <- s }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	// The first probe goes out at once; the next only after an hour.
	if s := <-changed; s != StatusHealthy {
		t.Fatalf("status %s after Run's first probe", s)
	}
	cancel()
	<-done
	if len(up.hits) != 1 {
		t.Fatalf("%d probes within one interval, want 1", len(up.hits))
	}
}

func TestNewChecker(t *testing.T) {
	rt := http.DefaultTransport
	if c, err := NewChecker("http://127.0.0.1:1", nil, rt); c != nil || err != nil {
		t.Fatalf("nil health check: %v %v", c, err)
	}
	for _, base := range []string{"", "127.0.0.1:8080", "ftp://127.0.0.1/", "http:///x"} {
		if _, err := NewChecker(base, healthCheck(1, 1), rt); err == nil {
			t.Errorf("base URL %q accepted", base)
		}
	}
	if _, err := NewChecker("http://127.0.0.1:1", healthCheck(1, 1), nil); err == nil {
		t.Error("no transport accepted")
	}
	c, err := NewChecker("https://user:pw@127.0.0.1:8443/api/v1", healthCheck(1, 1), rt)
	if err != nil || c.URL != "https://127.0.0.1:8443/health?deep=1" {
		t.Fatalf("URL = %q (%v)", c.URL, err)
	}
}

func TestGuard(t *testing.T) {
	up := newUpstream(t)
	c, err := NewChecker(up.srv.URL, healthCheck(1, 1), pinned(t, up.srv.Listener.Addr().String()))
	if err != nil {
		t.Fatal(err)
	}
	b, clk, _ := newTestBreaker(1, time.Minute)
	g := NewGuard(b, c)
	if !g.Allow() || g.RetryAfter() != 0 {
		t.Fatal("healthy closed guard refused")
	}
	g.Report(false)
	if g.Allow() || g.RetryAfter() != time.Minute {
		t.Fatalf("open breaker: RetryAfter %v", g.RetryAfter())
	}
	clk.Advance(time.Minute)
	up.status.Store(500)
	c.Check(context.Background())
	// Unhealthy: refused, and the breaker's probe is not used up.
	if g.Allow() || g.RetryAfter() != time.Hour {
		t.Fatalf("unhealthy guard: RetryAfter %v, want the check interval", g.RetryAfter())
	}
	up.status.Store(200)
	c.Check(context.Background())
	if !g.Allow() {
		t.Fatal("the probe was used up while unhealthy")
	}
	g.Report(true)
	if !g.Allow() {
		t.Fatal("recovered guard refused")
	}
	if g := NewGuard(nil, nil); !g.Allow() || g.RetryAfter() != 0 {
		t.Fatal("empty guard refused")
	}
}
