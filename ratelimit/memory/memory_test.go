package memory

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/ratelimit"
	"github.com/sluice-gateway/sluice/ratelimit/ratelimittest"
)

func TestConformance(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
		l := New(Options{Now: now})
		t.Cleanup(func() { l.Close() })
		return l
	})
}

// fakeClock is a manual clock for the tests below.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time { return c.t }

func TestSweepDropsOnlyDrainedBuckets(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := New(Options{Now: clk.Now, SweepInterval: -1})
	defer l.Close()
	ctx := context.Background()
	// key:a drains in 20 s (RPM 3, one taken); key:b in 60 s (TPM 10, all taken).
	if _, err := l.Admit(ctx, []ratelimit.Request{{Key: "key:a", RPM: 3}, {Key: "key:b", TPM: 10, Tokens: 10}}); err != nil {
		t.Fatal(err)
	}
	// Unlimited buckets hold no state at all.
	if _, err := l.Admit(ctx, []ratelimit.Request{{Key: "key:free", Tokens: 5}}); err != nil {
		t.Fatal(err)
	}
	if n := l.Len(); n != 2 {
		t.Fatalf("Len() = %d, want 2", n)
	}
	clk.t = clk.t.Add(20*time.Second - time.Millisecond)
	if n := l.Sweep(); n != 0 {
		t.Errorf("Sweep() before anything drained = %d", n)
	}
	clk.t = clk.t.Add(time.Millisecond)
	if n := l.Sweep(); n != 1 || l.Len() != 1 {
		t.Errorf("Sweep() at 20 s = %d, Len() = %d; want key:a dropped", n, l.Len())
	}
	// Dropping a drained bucket changes nothing: key:b is still full.
	d, err := l.Admit(ctx, []ratelimit.Request{{Key: "key:b", TPM: 10, Tokens: 10}})
	if err != nil || d.Allowed || d.RetryAfter != 40*time.Second {
		t.Errorf("key:b after sweep: %+v, %v", d, err)
	}
	clk.t = clk.t.Add(40 * time.Second)
	if n := l.Sweep(); n != 1 || l.Len() != 0 {
		t.Errorf("Sweep() at 60 s = %d, Len() = %d", n, l.Len())
	}
	// A refund to zero deletes the bucket at once.
	reqs := []ratelimit.Request{{Key: "key:c", TPM: 100, Tokens: 50}}
	if _, err := l.Admit(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	if err := l.Correct(ctx, reqs, 0); err != nil {
		t.Fatal(err)
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len() after a full refund = %d", n)
	}
}

func TestSweeperStopsOnClose(t *testing.T) {
	l := New(Options{SweepInterval: time.Millisecond})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	select {
	case <-l.done:
	default:
		t.Fatal("sweeper still running after Close")
	}
	// Still usable without the sweeper.
	if d, err := l.Admit(context.Background(), []ratelimit.Request{{Key: "k", RPM: 1}}); err != nil || !d.Allowed {
		t.Fatalf("Admit after Close: %+v, %v", d, err)
	}
}

func TestManyBucketsAndShards(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	l := New(Options{Now: clk.Now, Shards: 3, SweepInterval: -1}) // rounded up to 4
	if len(l.shards) != 4 {
		t.Fatalf("%d shards, want 4", len(l.shards))
	}
	var reqs []ratelimit.Request
	for i := 0; i < 20; i++ { // more than stackBuckets, several per shard
		reqs = append(reqs, ratelimit.Request{Key: "k" + string(rune('a'+i)), RPM: 2})
	}
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if d, err := l.Admit(ctx, reqs); err != nil || !d.Allowed {
			t.Fatalf("Admit %d: %+v, %v", i, d, err)
		}
	}
	if d, _ := l.Admit(ctx, reqs); d.Allowed {
		t.Fatal("third admission of RPM 2 buckets allowed")
	}
	if err := l.Correct(ctx, reqs, 0); err != nil {
		t.Fatal(err)
	}
}

func TestAdmitAllocations(t *testing.T) {
	l := New(Options{SweepInterval: -1})
	reqs := []ratelimit.Request{
		{Key: "key:abc", RPM: 1e9, TPM: 1e11, Tokens: 100},
		{Key: "team:x", RPM: 1e9, TPM: 1e11, Tokens: 100},
		{Key: "endpoint:y", TPM: 1e11, Tokens: 100},
	}
	ctx := context.Background()
	l.Admit(ctx, reqs) // create the buckets
	allocs := testing.AllocsPerRun(1000, func() {
		if d, err := l.Admit(ctx, reqs); err != nil || !d.Allowed {
			t.Fatalf("%+v, %v", d, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Admit of 3 existing buckets allocates %.1f times, want 0", allocs)
	}
}

// BenchmarkAdmit measures one admission of three buckets (key, team,
// endpoint) that exist already, with the real clock.
func BenchmarkAdmit(b *testing.B) {
	l := New(Options{SweepInterval: -1})
	reqs := []ratelimit.Request{
		{Key: "key:abc", RPM: 1e9, TPM: 1e11, Tokens: 100},
		{Key: "team:x", RPM: 1e9, TPM: 1e11, Tokens: 100},
		{Key: "endpoint:y", TPM: 1e11, Tokens: 100},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := l.Admit(ctx, reqs); !d.Allowed {
			b.Fatal("refused")
		}
	}
}

// BenchmarkAdmitParallel runs admissions from all CPUs, each goroutine with
// its own key and all sharing one team bucket.
func BenchmarkAdmitParallel(b *testing.B) {
	l := New(Options{SweepInterval: -1})
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		reqs := []ratelimit.Request{
			{Key: "key:" + strconv.FormatInt(n.Add(1), 10), RPM: 1e9, TPM: 1e11, Tokens: 100},
			{Key: "team:x", RPM: 1e9, TPM: 1e11, Tokens: 100},
			{Key: "endpoint:y", TPM: 1e11, Tokens: 100},
		}
		for pb.Next() {
			if d, _ := l.Admit(ctx, reqs); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
}
