// Package ratelimittest is the conformance suite every ratelimit.Limiter
// must pass. Time is injected, so nothing sleeps:
//
//	func TestConformance(t *testing.T) {
//		ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
//			l := memory.New(memory.Options{Now: now})
//			t.Cleanup(func() { l.Close() })
//			return l
//		})
//	}
package ratelimittest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/ratelimit"
)

// NewFunc returns a fresh Limiter, with no buckets, reading time from now.
// Implementations sharing a store should isolate each t (a key prefix).
type NewFunc func(t *testing.T, now func() time.Time) ratelimit.Limiter

// clock is a manual clock starting at a fixed instant.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one test's limiter and clock.
type env struct {
	t   *testing.T
	l   ratelimit.Limiter
	clk *clock
}

func newEnv(t *testing.T, newLimiter NewFunc) *env {
	clk := &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	return &env{t: t, l: newLimiter(t, clk.Now), clk: clk}
}

func (e *env) admit(reqs ...ratelimit.Request) ratelimit.Decision {
	e.t.Helper()
	d, err := e.l.Admit(context.Background(), reqs)
	if err != nil {
		e.t.Fatalf("Admit(%+v): %v", reqs, err)
	}
	return d
}

func (e *env) mustAllow(reqs ...ratelimit.Request) ratelimit.Decision {
	e.t.Helper()
	d := e.admit(reqs...)
	if !d.Allowed {
		e.t.Fatalf("Admit(%+v) refused: %+v", reqs, d)
	}
	return d
}

func (e *env) mustRefuse(limit string, retry time.Duration, reqs ...ratelimit.Request) ratelimit.Decision {
	e.t.Helper()
	d := e.admit(reqs...)
	if d.Allowed || d.Limit != limit || d.RetryAfter != retry {
		e.t.Fatalf("Admit(%+v) = %+v; want refused by %q, retry after %v", reqs, d, limit, retry)
	}
	return d
}

func (e *env) correct(actual int64, reqs ...ratelimit.Request) {
	e.t.Helper()
	if err := e.l.Correct(context.Background(), reqs, actual); err != nil {
		e.t.Fatalf("Correct(%+v, %d): %v", reqs, actual, err)
	}
}

func rpm(key string, n int64) ratelimit.Request { return ratelimit.Request{Key: key, RPM: n} }
func tpm(key string, n, tokens int64) ratelimit.Request {
	return ratelimit.Request{Key: key, TPM: n, Tokens: tokens}
}

// Run runs the conformance suite against the Limiters newLimiter returns.
func Run(t *testing.T, newLimiter NewFunc) {
	tests := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"RPMBoundary", testRPMBoundary},
		{"RPMUnevenInterval", testRPMUnevenInterval},
		{"WindowReset", testWindowReset},
		{"TPMRefund", testTPMRefund},
		{"TPMOverage", testTPMOverage},
		{"TooLarge", testTooLarge},
		{"MultiBucketAtomic", testMultiBucketAtomic},
		{"RetryAfterLongestWait", testRetryAfterLongestWait},
		{"Headers", testHeaders},
		{"Unlimited", testUnlimited},
		{"KeysIndependent", testKeysIndependent},
		{"SameKeyTwice", testSameKeyTwice},
		{"LimitChange", testLimitChange},
		{"Invalid", testInvalid},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newEnv(t, newLimiter)) })
	}
}

// testRPMBoundary: a burst of exactly RPM, then one request every 60/RPM
// seconds, to the millisecond.
func testRPMBoundary(t *testing.T, e *env) {
	k := rpm("key:a", 3)
	for i := 0; i < 3; i++ {
		e.mustAllow(k)
	}
	e.mustRefuse("key:a/rpm", 20*time.Second, k)
	e.clk.Advance(20*time.Second - time.Millisecond)
	e.mustRefuse("key:a/rpm", time.Millisecond, k)
	e.clk.Advance(time.Millisecond)
	e.mustAllow(k)
	e.mustRefuse("key:a/rpm", 20*time.Second, k)
}

// testRPMUnevenInterval: with RPM 7 the interval is 8571.43 ms; the next
// request is admitted at 8572 ms, never earlier.
func testRPMUnevenInterval(t *testing.T, e *env) {
	k := rpm("key:a", 7)
	for i := 0; i < 7; i++ {
		e.mustAllow(k)
	}
	e.mustRefuse("key:a/rpm", 8572*time.Millisecond, k)
	e.clk.Advance(8571 * time.Millisecond)
	e.mustRefuse("key:a/rpm", time.Millisecond, k)
	e.clk.Advance(time.Millisecond)
	e.mustAllow(k)
	// Over ten minutes of one attempt a second, exactly 70 more get in.
	admitted := 0
	for i := 0; i < 600; i++ {
		e.clk.Advance(time.Second)
		if e.admit(k).Allowed {
			admitted++
		}
	}
	if admitted != 70 {
		t.Errorf("admitted %d in 600 s at 7 RPM, want 70", admitted)
	}
}

// testWindowReset: an exhausted bucket is full again one minute later.
func testWindowReset(t *testing.T, e *env) {
	k := rpm("key:a", 5)
	for i := 0; i < 5; i++ {
		e.mustAllow(k)
	}
	e.mustRefuse("key:a/rpm", 12*time.Second, k)
	e.clk.Advance(time.Minute)
	d := e.mustAllow(k)
	if d.RemainingRequests != 4 || d.ResetRequests != 12*time.Second {
		t.Errorf("after reset: %+v; want 4 remaining, reset 12s", d)
	}
	for i := 0; i < 4; i++ {
		e.mustAllow(k)
	}
	e.mustRefuse("key:a/rpm", 12*time.Second, k)
}

// testTPMRefund: a reservation corrected down returns the difference.
func testTPMRefund(t *testing.T, e *env) {
	d := e.mustAllow(tpm("key:a", 1000, 800))
	if d.RemainingTokens != 200 {
		t.Errorf("remaining after reserving 800 of 1000: %d", d.RemainingTokens)
	}
	// 800 + 300 - 1000 = 100 tokens over: 100 × 60 ms.
	e.mustRefuse("key:a/tpm", 6*time.Second, tpm("key:a", 1000, 300))
	e.correct(100, tpm("key:a", 1000, 800))
	d = e.mustAllow(tpm("key:a", 1000, 300))
	if d.RemainingTokens != 600 || d.ResetTokens != 24*time.Second {
		t.Errorf("after refund: %+v; want 600 remaining, reset 24s", d)
	}
}

// testTPMOverage: usage above the reservation is charged and can push the
// bucket past its limit.
func testTPMOverage(t *testing.T, e *env) {
	e.mustAllow(tpm("key:a", 1000, 100))
	e.correct(1500, tpm("key:a", 1000, 100))
	// Level 1500 tokens; one more needs 501 to drain: 30.06 s.
	d := e.mustRefuse("key:a/tpm", 30060*time.Millisecond, tpm("key:a", 1000, 1))
	if d.RemainingTokens != 0 || d.ResetTokens != 90*time.Second {
		t.Errorf("in debt: %+v; want 0 remaining, reset 90s", d)
	}
	e.clk.Advance(30060 * time.Millisecond)
	e.mustAllow(tpm("key:a", 1000, 1))
	// A refund larger than the level only empties the bucket.
	e.correct(0, tpm("key:a", 1000, 5000))
	d = e.mustAllow(tpm("key:a", 1000, 1000))
	if d.RemainingTokens != 0 {
		t.Errorf("after emptying refund: %+v", d)
	}
}

// testTooLarge: a request above the TPM is refused for good and takes
// nothing.
func testTooLarge(t *testing.T, e *env) {
	d := e.admit(rpm("key:a", 10), tpm("team:t", 1000, 1001))
	if d.Allowed || !d.TooLarge || d.Limit != "team:t/tpm" || d.RetryAfter != 0 {
		t.Fatalf("oversized request: %+v", d)
	}
	d = e.mustAllow(rpm("key:a", 10), tpm("team:t", 1000, 1000))
	if d.RemainingRequests != 9 || d.RemainingTokens != 0 {
		t.Errorf("the refused request took something: %+v", d)
	}
}

// testMultiBucketAtomic: when one bucket is full, no bucket is taken.
func testMultiBucketAtomic(t *testing.T, e *env) {
	key, team := rpm("key:a", 10), rpm("team:t", 2)
	endpoint := tpm("endpoint:e", 100, 50)
	e.mustAllow(team)
	e.mustAllow(team)
	for i := 0; i < 5; i++ {
		e.mustRefuse("team:t/rpm", 30*time.Second, key, team, endpoint)
	}
	// The refusing bucket may be last too.
	e.mustRefuse("team:t/rpm", 30*time.Second, endpoint, key, team)
	if d := e.mustAllow(key); d.RemainingRequests != 9 {
		t.Errorf("key bucket after refusals: %+v; want 9 remaining", d)
	}
	if d := e.mustAllow(tpm("endpoint:e", 100, 100)); d.RemainingTokens != 0 {
		t.Errorf("endpoint bucket after refusals: %+v; want all 100 tokens free", d)
	}
	// And an admission takes from every bucket.
	e.clk.Advance(time.Minute)
	e.mustAllow(key, team, endpoint)
	e.mustAllow(key, team, endpoint)
	e.mustRefuse("team:t/rpm", 30*time.Second, key, team, tpm("endpoint:e", 100, 0))
	d := e.mustAllow(key, tpm("endpoint:e", 100, 0))
	if d.RemainingRequests != 7 || d.RemainingTokens != 0 {
		t.Errorf("after two admissions of three buckets: %+v; want 7 requests and 0 tokens left", d)
	}
}

// testRetryAfterLongestWait: with several buckets refusing, RetryAfter is
// the longest wait and Limit names that bucket.
func testRetryAfterLongestWait(t *testing.T, e *env) {
	a, b := rpm("key:a", 60), rpm("team:t", 2) // 1 s and 30 s intervals
	for i := 0; i < 2; i++ {
		e.mustAllow(a, b)
	}
	for i := 0; i < 58; i++ {
		e.mustAllow(a)
	}
	e.mustRefuse("team:t/rpm", 30*time.Second, a, b)
	e.mustRefuse("team:t/rpm", 30*time.Second, b, a)
	e.clk.Advance(29 * time.Second)
	e.mustRefuse("team:t/rpm", time.Second, a, b)
	// Tokens can be the longer wait: 600 over at 1000 TPM is 36 s.
	e.clk.Advance(time.Second)
	e.mustAllow(tpm("user:u", 1000, 1000))
	e.mustRefuse("user:u/tpm", 36*time.Second, a, b, tpm("user:u", 1000, 600))
}

// testHeaders: the headers describe the most constraining bucket of each
// dimension, including the request just admitted.
func testHeaders(t *testing.T, e *env) {
	if d := e.mustAllow(rpm("key:a", 100)); d.LimitTokens != 0 || d.LimitRequests != 100 ||
		d.RemainingRequests != 99 || d.ResetRequests != 600*time.Millisecond {
		t.Errorf("one bucket: %+v", d)
	}
	for i := 0; i < 8; i++ {
		e.mustAllow(rpm("team:t", 10))
	}
	d := e.mustAllow(rpm("key:a", 100), rpm("team:t", 10), tpm("endpoint:e", 1000, 100), tpm("user:u", 5000, 100))
	want := ratelimit.Decision{
		Allowed:       true,
		LimitRequests: 10, RemainingRequests: 1, ResetRequests: 54 * time.Second,
		LimitTokens: 1000, RemainingTokens: 900, ResetTokens: 6 * time.Second,
	}
	if d != want {
		t.Errorf("headers:\n got %+v\nwant %+v", d, want)
	}
	// A refusal reports the state without the refused request.
	e.mustAllow(rpm("team:t", 10))
	d = e.mustRefuse("team:t/rpm", 6*time.Second, rpm("team:t", 10), tpm("endpoint:e", 1000, 100))
	if d.RemainingRequests != 0 || d.ResetRequests != 60*time.Second || d.RemainingTokens != 900 {
		t.Errorf("refusal headers: %+v", d)
	}
	// Equal remaining: the bucket that takes longer to reset wins, in
	// either order. After this admission x:a (RPM 2) holds 1 request and
	// resets in 30 s; x:b (RPM 4) holds 3 and resets in 45 s.
	for _, pair := range [][]ratelimit.Request{
		{rpm("x:a", 2), rpm("x:b", 4)},
		{rpm("y:b", 4), rpm("y:a", 2)},
	} {
		for _, r := range pair {
			if r.RPM == 4 {
				e.mustAllow(r)
				e.mustAllow(r)
			}
		}
		d = e.mustAllow(pair...)
		if d.LimitRequests != 4 || d.RemainingRequests != 1 || d.ResetRequests != 45*time.Second {
			t.Errorf("tie-break %+v: %+v; want the RPM 4 bucket, 1 remaining, reset 45s", pair, d)
		}
	}
}

// testUnlimited: zero limits never refuse and report no limit.
func testUnlimited(t *testing.T, e *env) {
	for i := 0; i < 500; i++ {
		d := e.mustAllow(ratelimit.Request{Key: "key:a", Tokens: 1 << 30})
		if d.LimitRequests != 0 || d.LimitTokens != 0 {
			t.Fatalf("unlimited bucket reported limits: %+v", d)
		}
	}
	// A limited dimension on the same key is unaffected by the other.
	d := e.mustAllow(ratelimit.Request{Key: "key:a", TPM: 100, Tokens: 10})
	if d.LimitRequests != 0 || d.RemainingTokens != 90 {
		t.Errorf("TPM-only bucket: %+v", d)
	}
	e.correct(20, ratelimit.Request{Key: "key:a", Tokens: 10}) // no TPM: nothing to settle
}

func testKeysIndependent(t *testing.T, e *env) {
	e.mustAllow(rpm("key:a", 1))
	e.mustRefuse("key:a/rpm", time.Minute, rpm("key:a", 1))
	e.mustAllow(rpm("key:b", 1))
	e.mustAllow(rpm("team:a", 1))
}

// testSameKeyTwice: a bucket listed twice is taken twice, atomically.
func testSameKeyTwice(t *testing.T, e *env) {
	k := rpm("key:a", 3)
	d := e.mustAllow(k, k)
	if d.RemainingRequests != 1 {
		t.Errorf("after taking one bucket twice: %+v", d)
	}
	e.mustRefuse("key:a/rpm", 20*time.Second, k, k)
	e.mustAllow(k)
}

// testLimitChange: a new limit applies at once to the existing level.
func testLimitChange(t *testing.T, e *env) {
	for i := 0; i < 5; i++ {
		e.mustAllow(rpm("key:a", 10))
	}
	// Five taken: at RPM 5 the bucket is full; at 20 it has 15 left.
	e.mustRefuse("key:a/rpm", 12*time.Second, rpm("key:a", 5))
	if d := e.mustAllow(rpm("key:a", 20)); d.RemainingRequests != 14 {
		t.Errorf("after raising the limit: %+v", d)
	}
}

func testInvalid(t *testing.T, e *env) {
	ctx := context.Background()
	for _, reqs := range [][]ratelimit.Request{
		{{Key: "", RPM: 1}},
		{{Key: "key:a", RPM: -1}},
		{{Key: "key:a", TPM: -1}},
		{{Key: "key:a", Tokens: -1}},
		{{Key: "key:a", TPM: ratelimit.MaxLimit + 1}},
		{rpm("key:ok", 1), {Key: "", RPM: 1}},
	} {
		if _, err := e.l.Admit(ctx, reqs); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("Admit(%+v) error = %v, want ErrInvalid", reqs, err)
		}
		if err := e.l.Correct(ctx, reqs, 1); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("Correct(%+v) error = %v, want ErrInvalid", reqs, err)
		}
	}
	// Nothing was taken by the invalid calls.
	if d := e.mustAllow(rpm("key:ok", 1)); d.RemainingRequests != 0 {
		t.Errorf("invalid call took from a bucket: %+v", d)
	}
	if err := e.l.Correct(ctx, []ratelimit.Request{tpm("key:a", 10, 1)}, -1); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("Correct with negative actual tokens: %v", err)
	}
	if d := e.mustAllow(); !d.Allowed || d.LimitRequests != 0 {
		t.Errorf("Admit with no buckets: %+v", d)
	}
}

// testConcurrent: parallel admissions never admit more than the limits.
func testConcurrent(t *testing.T, e *env) {
	const workers, attempts = 8, 25
	shared := rpm("team:t", 50)
	tokens := tpm("endpoint:e", 1000, 30) // room for 33
	var admitted, tokenAdmitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := rpm("key:"+string(rune('a'+w)), 1000)
			for i := 0; i < attempts; i++ {
				d, err := e.l.Admit(context.Background(), []ratelimit.Request{own, shared})
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
				d, err = e.l.Admit(context.Background(), []ratelimit.Request{tokens, own})
				if err != nil {
					errs <- err
					return
				}
				if d.Allowed {
					tokenAdmitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := admitted.Load(); got != 50 {
		t.Errorf("admitted %d of %d concurrent requests at RPM 50, want exactly 50", got, workers*attempts)
	}
	if got := tokenAdmitted.Load(); got != 33 {
		t.Errorf("admitted %d requests of 30 tokens at TPM 1000, want exactly 33", got)
	}
	// Every worker's own bucket was taken once per admission.
	var own int64
	for w := 0; w < workers; w++ {
		d := e.mustAllow(rpm("key:"+string(rune('a'+w)), 1000))
		own += 999 - d.RemainingRequests
	}
	if want := admitted.Load() + tokenAdmitted.Load(); own != want {
		t.Errorf("worker buckets hold %d requests, want %d", own, want)
	}
}
