package resilience

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/config"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBreaker(failures int, cooldown time.Duration) (*Breaker, *clock, *[]string) {
	clk := newClock()
	var changes []string
	b := NewBreaker(&config.CircuitBreaker{Failures: failures, Cooldown: config.Duration(cooldown)})
	b.Now = clk.Now
	b.OnChange = func(s string) { changes = append(changes, s) }
	return b, clk, &changes
}

func TestBreakerOpensAfterConsecutiveFailures(t *testing.T) {
	b, _, changes := newTestBreaker(3, 30*time.Second)
	// A success in between resets the count.
	for _, ok := range []bool{false, false, true, false, false} {
		if !b.Allow() {
			t.Fatal("closed breaker refused an attempt")
		}
		b.Report(ok)
	}
	if b.State() != StateClosed || !b.Allow() {
		t.Fatalf("state %s after 2 consecutive failures, want closed", b.State())
	}
	b.Report(false)
	if b.State() != StateOpen || b.Allow() {
		t.Fatalf("state %s after 3 consecutive failures, want open and refusing", b.State())
	}
	if got := b.RetryAfter(); got != 30*time.Second {
		t.Fatalf("RetryAfter = %v, want the whole cooldown", got)
	}
	if !slices.Equal(*changes, []string{StateOpen}) {
		t.Fatalf("changes = %v", *changes)
	}
}

func TestBreakerStaysOpenUntilCooldown(t *testing.T) {
	b, clk, _ := newTestBreaker(1, 30*time.Second)
	b.Report(false)
	clk.Advance(30*time.Second - time.Nanosecond)
	if b.Allow() {
		t.Fatal("allowed before the cooldown ended")
	}
	if got := b.RetryAfter(); got != time.Nanosecond {
		t.Fatalf("RetryAfter = %v, want 1ns", got)
	}
	// Late reports of attempts admitted before it opened change nothing.
	b.Report(true)
	b.Report(false)
	if b.Allow() || b.State() != StateOpen {
		t.Fatal("a stale report moved an open breaker")
	}
	clk.Advance(time.Nanosecond)
	if b.State() != StateHalfOpen {
		t.Fatalf("state %s after the cooldown, want half_open", b.State())
	}
	if !b.Allow() {
		t.Fatal("no probe allowed after the cooldown")
	}
	if b.Allow() {
		t.Fatal("a second probe was allowed while the first is out")
	}
	if got := b.RetryAfter(); got <= 0 {
		t.Fatalf("RetryAfter = %v with a probe out, want > 0", got)
	}
}

func TestBreakerHalfOpenAllowsOneOfManyConcurrentCalls(t *testing.T) {
	b, clk, _ := newTestBreaker(2, time.Minute)
	b.Report(false)
	b.Report(false)
	clk.Advance(time.Minute)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-start
			if b.Allow() {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 1 {
		t.Fatalf("%d of 50 concurrent calls allowed while half-open, want exactly 1", n)
	}
}

func TestBreakerProbeFailureReopensAndSuccessCloses(t *testing.T) {
	b, clk, changes := newTestBreaker(2, time.Minute)
	b.Report(false)
	b.Report(false)
	clk.Advance(time.Minute)
	if !b.Allow() {
		t.Fatal("probe refused")
	}
	clk.Advance(5 * time.Second)
	b.Report(false)
	if b.State() != StateOpen || b.Allow() {
		t.Fatalf("state %s after a failed probe, want open", b.State())
	}
	if got := b.RetryAfter(); got != time.Minute {
		t.Fatalf("RetryAfter = %v after a failed probe, want a fresh cooldown of 1m", got)
	}
	clk.Advance(time.Minute)
	if !b.Allow() {
		t.Fatal("second probe refused")
	}
	b.Report(true)
	if b.State() != StateClosed || b.RetryAfter() != 0 {
		t.Fatalf("state %s after a good probe, want closed", b.State())
	}
	for range 10 {
		if !b.Allow() {
			t.Fatal("closed breaker refused")
		}
	}
	// Closed again, it needs the full count of failures to reopen.
	b.Report(false)
	if b.State() != StateClosed {
		t.Fatal("one failure after recovery reopened a breaker needing two")
	}
	want := []string{StateOpen, StateHalfOpen, StateOpen, StateHalfOpen, StateClosed}
	if !slices.Equal(*changes, want) {
		t.Fatalf("changes = %v, want %v", *changes, want)
	}
}

func TestBreakerLostProbeIsReplaced(t *testing.T) {
	b, clk, _ := newTestBreaker(1, time.Minute)
	b.Report(false)
	clk.Advance(time.Minute)
	if !b.Allow() {
		t.Fatal("probe refused")
	}
	clk.Advance(time.Minute - time.Nanosecond)
	if b.Allow() {
		t.Fatal("second probe allowed while the first may still report")
	}
	clk.Advance(time.Nanosecond)
	if !b.Allow() {
		t.Fatal("a probe that never reported blocks the breaker for ever")
	}
}

func TestBreakerDisabled(t *testing.T) {
	for _, b := range []*Breaker{NewBreaker(nil), NewBreaker(&config.CircuitBreaker{Disabled: true, Failures: 1, Cooldown: config.Duration(time.Hour)})} {
		for range 100 {
			b.Report(false)
		}
		if !b.Allow() || b.RetryAfter() != 0 || b.State() != StateClosed {
			t.Fatal("a disabled breaker refused")
		}
	}
}

func BenchmarkBreakerAllow(b *testing.B) {
	br := NewBreaker(&config.CircuitBreaker{Failures: 5, Cooldown: config.Duration(30 * time.Second)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if br.Allow() {
				br.Report(true)
			}
		}
	})
}
