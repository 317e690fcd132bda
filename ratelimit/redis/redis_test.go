package redis

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/ratelimit"
	"github.com/sluice-gateway/sluice/ratelimit/internal/gcra"
	"github.com/sluice-gateway/sluice/ratelimit/ratelimittest"
)

// testClient connects to SLUICE_TEST_REDIS or skips the test.
func testClient(tb testing.TB) *goredis.Client {
	tb.Helper()
	url := os.Getenv("SLUICE_TEST_REDIS")
	if url == "" {
		tb.Skip("SLUICE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0); skipping Redis tests")
	}
	opts, err := goredis.ParseURL(url)
	if err != nil {
		tb.Fatalf("SLUICE_TEST_REDIS: %v", err)
	}
	c := goredis.NewClient(opts)
	tb.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("redis at SLUICE_TEST_REDIS: %v", err)
	}
	return c
}

// uniquePrefix isolates one test's keys from every other run.
func uniquePrefix(tb testing.TB) string {
	return "sluice-test:" + tb.Name() + ":" + rand.Text()[:10] + ":"
}

// cleanup deletes every key under prefix when the test ends.
func cleanup(tb testing.TB, c *goredis.Client, prefix string) {
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
}

func TestConformance(t *testing.T) {
	c := testClient(t)
	ratelimittest.Run(t, func(t *testing.T, now func() time.Time) ratelimit.Limiter {
		prefix := uniquePrefix(t)
		cleanup(t, c, prefix)
		return New(c, Options{Prefix: prefix, Now: now})
	})
}

// TestRoundTrips checks one round trip per Admit and per Correct, and the
// EVAL fallback when the server has not cached the script.
func TestRoundTrips(t *testing.T) {
	c := testClient(t)
	prefix := uniquePrefix(t)
	cleanup(t, c, prefix)
	l := New(c, Options{Prefix: prefix})
	// Scripts no server has seen: the first call of each falls back to EVAL.
	l.admit = newScript(admitSrc + "\n-- " + prefix)
	l.correct = newScript(correctSrc + "\n-- " + prefix)
	ctx := context.Background()
	reqs := []ratelimit.Request{{Key: "key:a", RPM: 10}, {Key: "team:t", TPM: 100, Tokens: 10}, {Key: "endpoint:e", RPM: 5}}
	if d, err := l.Admit(ctx, reqs); err != nil || !d.Allowed {
		t.Fatalf("Admit: %+v, %v", d, err)
	}
	if got := l.RoundTrips(); got != 2 {
		t.Errorf("round trips for the first Admit = %d, want 2 (EVALSHA, then EVAL)", got)
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Admit(ctx, reqs); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.RoundTrips(); got != 5 {
		t.Errorf("round trips after 4 Admits = %d, want 5", got)
	}
	for i := 0; i < 2; i++ {
		if err := l.Correct(ctx, reqs, 4); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.RoundTrips(); got != 8 {
		t.Errorf("round trips after 2 Corrects = %d, want 8", got)
	}
}

// TestServerClockAndTTL runs with the Redis server's clock and checks that
// buckets carry a TTL of their drain time.
func TestServerClockAndTTL(t *testing.T) {
	c := testClient(t)
	prefix := uniquePrefix(t)
	cleanup(t, c, prefix)
	l := New(c, Options{Prefix: prefix})
	ctx := context.Background()
	r := []ratelimit.Request{{Key: "key:a", RPM: 2, TPM: 1000, Tokens: 500}}
	d, err := l.Admit(ctx, r)
	if err != nil || !d.Allowed || d.RemainingRequests != 1 || d.RemainingTokens != 500 {
		t.Fatalf("Admit: %+v, %v", d, err)
	}
	// Requests and tokens drain in 30 s: the key expires after that and
	// the slack.
	ttl, err := c.PTTL(ctx, prefix+"key:a").Result()
	if want := 30*time.Second + expirySlack; err != nil || ttl <= want-5*time.Second || ttl > want {
		t.Errorf("PTTL = %v, %v; want just under %v", ttl, err, want)
	}
	if d, _ := l.Admit(ctx, r); d.Allowed != true || d.RemainingRequests != 0 {
		t.Errorf("second Admit: %+v", d)
	}
	d, err = l.Admit(ctx, r)
	if err != nil || d.Allowed || d.Limit != "key:a/rpm" || d.RetryAfter <= 25*time.Second || d.RetryAfter > 30*time.Second {
		t.Errorf("third Admit: %+v, %v; want refused for about 30s", d, err)
	}
	// Unlimited buckets leave no key behind.
	if _, err := l.Admit(ctx, []ratelimit.Request{{Key: "key:free", Tokens: 9}}); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Exists(ctx, prefix+"key:free").Result(); n != 0 {
		t.Error("an unlimited bucket was stored")
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUnavailable(t *testing.T) {
	c := goredis.NewClient(&goredis.Options{
		Addr:          deadAddr(t),
		DialTimeout:   200 * time.Millisecond,
		MaxRetries:    -1, // no command retries
		DialerRetries: 1,  // and one dial attempt (the default is 5, 100 ms apart)
	})
	defer c.Close()
	reqs := []ratelimit.Request{{Key: "key:a", RPM: 1}}
	ctx := context.Background()
	for _, failOpen := range []bool{true, false} {
		t.Run("FailOpen="+strconv.FormatBool(failOpen), func(t *testing.T) {
			l := New(c, Options{FailOpen: failOpen})
			for i := 0; i < 3; i++ { // the limiter's own limits play no part
				d, err := l.Admit(ctx, reqs)
				if !errors.Is(err, ratelimit.ErrUnavailable) {
					t.Fatalf("Admit error = %v, want ErrUnavailable", err)
				}
				if d.Allowed != failOpen {
					t.Fatalf("Admit with Redis down: Allowed = %v, want %v", d.Allowed, failOpen)
				}
			}
			if err := l.Correct(ctx, reqs, 5); !errors.Is(err, ratelimit.ErrUnavailable) {
				t.Errorf("Correct error = %v, want ErrUnavailable", err)
			}
			if got := l.RoundTrips(); got != 4 {
				t.Errorf("RoundTrips() = %d, want 4", got)
			}
			// Invalid requests are rejected before Redis is tried.
			if _, err := l.Admit(ctx, []ratelimit.Request{{}}); !errors.Is(err, ratelimit.ErrInvalid) {
				t.Errorf("invalid Admit error = %v", err)
			}
		})
	}
}

// TestScriptsMirrorGCRA checks that the Lua script uses the constants of
// the Go arithmetic it mirrors.
func TestScriptsMirrorGCRA(t *testing.T) {
	for _, want := range []string{
		"local SLACK = " + strconv.FormatInt(expirySlack.Milliseconds(), 10) + " ",
		"local W = " + strconv.Itoa(gcra.Window) + "\n",
		"local MAXLEVEL = " + strconv.FormatInt(gcra.MaxLevel, 10) + " ",
	} {
		if !strings.Contains(common, want) {
			t.Errorf("script lacks %q", want)
		}
	}
}

// BenchmarkAdmit measures one Admit of three buckets against
// SLUICE_TEST_REDIS and reports round trips per request.
func BenchmarkAdmit(b *testing.B) {
	c := testClient(b)
	prefix := uniquePrefix(b)
	cleanup(b, c, prefix)
	l := New(c, Options{Prefix: prefix})
	reqs := []ratelimit.Request{
		{Key: "key:abc", RPM: 1e9, TPM: 1e11, Tokens: 100},
		{Key: "team:x", RPM: 1e9, TPM: 1e11, Tokens: 100},
		{Key: "endpoint:y", TPM: 1e11, Tokens: 100},
	}
	ctx := context.Background()
	if _, err := l.Admit(ctx, reqs); err != nil { // load the script
		b.Fatal(err)
	}
	start := l.RoundTrips()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if d, err := l.Admit(ctx, reqs); err != nil || !d.Allowed {
			b.Fatalf("%+v, %v", d, err)
		}
		n++
	}
	b.ReportMetric(float64(l.RoundTrips()-start)/float64(n), "roundtrips/op")
}
