package capacity

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/apierr"
	"github.com/sluice-gateway/sluice/config"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

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

// testGate is a gate whose test knows when each waiter has joined the
// queue.
type testGate struct {
	*Gate
	t      *testing.T
	joined chan int
}

func newTestGate(t *testing.T, l Limits, now func() time.Time) *testGate {
	g := &testGate{Gate: NewGate(l, now), t: t, joined: make(chan int, 100)}
	g.queuedHook = func(n int) { g.joined <- n }
	return g
}

type result struct {
	id      int
	release func(int64)
	err     error
}

// acquireAsync starts an Acquire and returns once it is queued.
func (g *testGate) acquireAsync(ctx context.Context, id int, tokens int64, out chan<- result) {
	g.t.Helper()
	go func() {
		rel, err := g.Acquire(ctx, tokens)
		out <- result{id, rel, err}
	}()
	<-g.joined
}

func mustAcquire(t *testing.T, g interface {
	Acquire(context.Context, int64) (func(int64), error)
}, tokens int64) func(int64) {
	t.Helper()
	rel, err := g.Acquire(context.Background(), tokens)
	if err != nil {
		t.Fatalf("Acquire(%d): %v", tokens, err)
	}
	return rel
}

func want429(t *testing.T, err error) *apierr.Error {
	t.Helper()
	var e *apierr.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want a 429 *apierr.Error", err)
	}
	if e.Status != 429 || e.Code != "capacity_exceeded" || e.Class != sluice.ErrClassRateLimited || e.RetryAfter <= 0 {
		t.Fatalf("refusal = %+v", e)
	}
	return e
}

func TestGateConcurrencyAdmitsUpToCapacity(t *testing.T) {
	g := newTestGate(t, Limits{Concurrency: 3, MaxQueue: 10, MaxQueueWait: time.Hour}, nil)
	var rels []func(int64)
	for range 3 {
		rels = append(rels, mustAcquire(t, g, 100))
	}
	out := make(chan result, 1)
	g.acquireAsync(context.Background(), 4, 100, out)
	if g.InFlight() != 3 || g.Queued() != 1 {
		t.Fatalf("in flight %d, queued %d; want 3 and 1", g.InFlight(), g.Queued())
	}
	rels[0](100)
	r := <-out
	if r.err != nil {
		t.Fatalf("the 4th call was refused after a release: %v", r.err)
	}
	if g.InFlight() != 3 || g.Queued() != 0 {
		t.Fatalf("in flight %d, queued %d; want 3 and 0", g.InFlight(), g.Queued())
	}
	// A second release of the same call changes nothing.
	rels[0](100)
	if g.InFlight() != 3 {
		t.Fatalf("a double release freed a slot: in flight %d", g.InFlight())
	}
	r.release(1)
	rels[1](1)
	rels[2](1)
	if g.InFlight() != 0 {
		t.Fatalf("in flight %d after every release", g.InFlight())
	}
}

func TestGateFIFO(t *testing.T) {
	g := newTestGate(t, Limits{Concurrency: 1, MaxQueue: 10, MaxQueueWait: time.Hour}, nil)
	rel := mustAcquire(t, g, 1)
	out := make(chan result, 5)
	for i := range 5 {
		g.acquireAsync(context.Background(), i, 1, out)
	}
	// Each release admits the oldest waiter.
	for want := range 5 {
		rel(1)
		r := <-out
		if r.err != nil || r.id != want {
			t.Fatalf("admitted %d (%v), want %d", r.id, r.err, want)
		}
		rel = r.release
	}
	rel(1)
}

func TestGateBigCallIsNotOvertaken(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC))
	g := newTestGate(t, Limits{TokensPerSecond: 100, MaxQueue: 10, MaxQueueWait: time.Hour}, clk.Now)
	mustAcquire(t, g, 100)
	out := make(chan result, 3)
	g.acquireAsync(context.Background(), 0, 80, out)
	g.acquireAsync(context.Background(), 1, 10, out)
	clk.Advance(500 * time.Millisecond) // 50 tokens: enough for the small call only
	g.wake()
	if g.Queued() != 2 {
		t.Fatalf("queued %d: the small call overtook the big one", g.Queued())
	}
	// A newcomer that would fit queues behind them too.
	go func() {
		rel, err := g.Acquire(context.Background(), 10)
		out <- result{2, rel, err}
	}()
	select {
	case n := <-g.joined:
		if n != 3 {
			t.Fatalf("newcomer joined a queue of %d", n)
		}
	case r := <-out:
		t.Fatalf("newcomer %d admitted ahead of the queue (%v)", r.id, r.err)
	}
	clk.Advance(400 * time.Millisecond) // 90: the big call, then the small one
	g.wake()
	admitted := map[int]bool{}
	for range 2 {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		admitted[r.id] = true
	}
	if !admitted[0] || !admitted[1] || g.Queued() != 1 {
		t.Fatalf("admitted %v, queued %d; want calls 0 and 1 in, the newcomer waiting", admitted, g.Queued())
	}
	clk.Advance(100 * time.Millisecond)
	g.wake()
	if r := <-out; r.id != 2 || r.err != nil {
		t.Fatalf("admitted %d (%v), want the newcomer", r.id, r.err)
	}
}

func TestGateBoundedQueue(t *testing.T) {
	g := newTestGate(t, Limits{Concurrency: 1, MaxQueue: 2, MaxQueueWait: time.Hour}, nil)
	rel := mustAcquire(t, g, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan result, 2)
	g.acquireAsync(ctx, 0, 1, out)
	g.acquireAsync(ctx, 1, 1, out)
	_, err := g.Acquire(context.Background(), 1)
	e := want429(t, err)
	// Three calls ahead of it, each about a second (no call has ended yet).
	if e.RetryAfter != 3*time.Second {
		t.Fatalf("RetryAfter = %v, want 3s", e.RetryAfter)
	}
	if g.Queued() != 2 {
		t.Fatalf("queued %d after a refusal", g.Queued())
	}
	rel(1)
	(<-out).release(1)
	(<-out).release(1)
}

func TestGateNoQueue(t *testing.T) {
	g := NewGate(Limits{Concurrency: 1}, nil)
	rel := mustAcquire(t, g, 1)
	_, err := g.Acquire(context.Background(), 1)
	want429(t, err)
	rel(1)
	mustAcquire(t, g, 1)
}

func TestGateMaxQueueWait(t *testing.T) {
	g := newTestGate(t, Limits{Concurrency: 1, MaxQueue: 2, MaxQueueWait: time.Millisecond}, nil)
	rel := mustAcquire(t, g, 1)
	out := make(chan result, 1)
	g.acquireAsync(context.Background(), 0, 1, out)
	r := <-out
	want429(t, r.err)
	if g.Queued() != 0 || g.InFlight() != 1 {
		t.Fatalf("queued %d, in flight %d after a timed-out wait", g.Queued(), g.InFlight())
	}
	rel(1)
	mustAcquire(t, g, 1)
}

func TestGateCancelWhileQueued(t *testing.T) {
	g := newTestGate(t, Limits{Concurrency: 1, MaxQueue: 5, MaxQueueWait: time.Hour}, nil)
	rel := mustAcquire(t, g, 1)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan result, 2)
	g.acquireAsync(ctx, 0, 1, out)
	g.acquireAsync(context.Background(), 1, 1, out)
	cancel()
	if r := <-out; r.id != 0 || !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled waiter: %d %v", r.id, r.err)
	}
	if g.Queued() != 1 {
		t.Fatalf("queued %d after a cancel, want 1", g.Queued())
	}
	rel(1)
	if r := <-out; r.id != 1 || r.err != nil {
		t.Fatalf("next waiter: %d %v", r.id, r.err)
	}
	if g.InFlight() != 1 || g.Queued() != 0 {
		t.Fatalf("in flight %d, queued %d", g.InFlight(), g.Queued())
	}
	// A cancelled context is refused before queueing.
	if _, err := g.Acquire(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a cancelled context: %v", err)
	}
}

func TestGateTokenBucket(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC))
	// No queue: a call that does not fit is refused at once, so each step
	// shows the bucket's level exactly.
	g := NewGate(Limits{TokensPerSecond: 100}, clk.Now)
	fits := func(tokens int64) bool {
		t.Helper()
		rel, err := g.Acquire(context.Background(), tokens)
		if err != nil {
			want429(t, err)
			return false
		}
		rel(tokens)
		return true
	}
	// Full at start: 100 tokens, not 101.
	if !fits(100) || fits(1) {
		t.Fatal("a new bucket does not hold exactly one second of tokens")
	}
	clk.Advance(250 * time.Millisecond) // refilled 25
	if fits(26) || !fits(25) || fits(1) {
		t.Fatal("refill is not continuous at 100 tokens per second")
	}
	clk.Advance(time.Hour) // refill stops at the burst
	if fits(101) == false {
		// A call above the burst is admitted on a full bucket...
		t.Fatal("a call larger than the bucket was refused on a full bucket")
	}
	// ...and leaves it in debt: 100 - 101 = -1.
	clk.Advance(10 * time.Millisecond) // +1 → 0
	if fits(1) {
		t.Fatal("debt was not carried")
	}
	clk.Advance(10 * time.Millisecond) // 1
	if !fits(1) {
		t.Fatal("debt was not repaid by the refill")
	}

	// Release corrects the estimate: a refund when fewer were used...
	clk.Advance(time.Hour)
	rel := mustAcquire(t, g, 100)
	rel(30)
	if fits(71) || !fits(70) {
		t.Fatal("release did not refund the unused 70 tokens")
	}
	// ...and an extra debit when more were.
	clk.Advance(time.Hour)
	rel = mustAcquire(t, g, 10)
	rel(60)
	if fits(41) || !fits(40) {
		t.Fatal("release did not debit the 50 extra tokens")
	}
	// A failed call (0 used) is refunded whole, but never above the burst.
	clk.Advance(time.Hour)
	rel = mustAcquire(t, g, 100)
	clk.Advance(time.Hour)
	rel(0)
	if fits(101) != true || fits(1) {
		t.Fatal("a refund overfilled the bucket")
	}
}

func TestGateTokenWaitersAdmittedAsTheBucketRefills(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC))
	g := newTestGate(t, Limits{TokensPerSecond: 100, MaxQueue: 10, MaxQueueWait: time.Hour}, clk.Now)
	mustAcquire(t, g, 60)
	out := make(chan result, 3)
	g.acquireAsync(context.Background(), 0, 60, out)  // needs 20 more: 200ms
	g.acquireAsync(context.Background(), 1, 250, out) // then a full bucket, leaving 150 of debt
	g.acquireAsync(context.Background(), 2, 10, out)  // then 160 more: 1.6s
	steps := []struct {
		advance time.Duration
		admits  int
	}{
		{199 * time.Millisecond, -1}, {time.Millisecond, 0},
		{999 * time.Millisecond, -1}, {time.Millisecond, 1},
		{1599 * time.Millisecond, -1}, {time.Millisecond, 2},
	}
	queued := 3
	for _, s := range steps {
		clk.Advance(s.advance)
		g.wake()
		if s.admits >= 0 {
			queued--
			if r := <-out; r.id != s.admits || r.err != nil {
				t.Fatalf("admitted %d (%v), want %d", r.id, r.err, s.admits)
			}
		}
		if g.Queued() != queued {
			t.Fatalf("queued %d after %v, want %d", g.Queued(), s.advance, queued)
		}
	}
}

func TestGateTokenWaitBeyondLimitRefusedAtOnce(t *testing.T) {
	clk := newClock(time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC))
	g := newTestGate(t, Limits{TokensPerSecond: 100, MaxQueue: 10, MaxQueueWait: time.Second}, clk.Now)
	mustAcquire(t, g, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan result, 1)
	g.acquireAsync(ctx, 0, 100, out) // 1s away: may wait
	_, err := g.Acquire(context.Background(), 50)
	if e := want429(t, err); e.RetryAfter != 2*time.Second {
		t.Fatalf("RetryAfter = %v, want 2s (150 tokens at 100/s, rounded up)", e.RetryAfter)
	}
	cancel()
	<-out
}

// TestGateRealTimer drives the refill timer on the real clock: the waiter
// is admitted without anyone releasing or waking the gate.
func TestGateRealTimer(t *testing.T) {
	g := NewGate(Limits{TokensPerSecond: 1000, MaxQueue: 1, MaxQueueWait: time.Minute}, nil)
	mustAcquire(t, g, 1000)
	rel := mustAcquire(t, g, 5)
	rel(5)
}

func TestLimitsFor(t *testing.T) {
	if _, ok := LimitsFor(nil, ""); ok {
		t.Fatal("no capacity gave limits")
	}
	l, ok := LimitsFor(nil, "Medium")
	if !ok || l != (Limits{Concurrency: 16, MaxQueue: 64, MaxQueueWait: 10 * time.Second}) {
		t.Fatalf("Medium: %+v", l)
	}
	l, ok = LimitsFor(&config.Capacity{TokensPerSecond: 500, MaxQueue: 3, MaxQueueWait: config.Duration(time.Second)}, "Small")
	if !ok || l != (Limits{Concurrency: 4, TokensPerSecond: 500, MaxQueue: 3, MaxQueueWait: time.Second}) {
		t.Fatalf("capacity: %+v", l)
	}
}

func BenchmarkGateAcquireRelease(b *testing.B) {
	for _, bc := range []struct {
		name string
		l    Limits
	}{
		{"concurrency", Limits{Concurrency: 1 << 20, MaxQueue: 64, MaxQueueWait: time.Second}},
		{"tokens", Limits{TokensPerSecond: 1 << 30, MaxQueue: 64, MaxQueueWait: time.Second}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := NewGate(bc.l, nil)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				rel, err := g.Acquire(ctx, 1000)
				if err != nil {
					b.Fatal(err)
				}
				rel(900)
			}
		})
	}
}
