package admission_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/admission"
	"github.com/sluice-gateway/sluice/auth"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/pricing"
	"github.com/sluice-gateway/sluice/proxy"
	"github.com/sluice-gateway/sluice/ratelimit"
	"github.com/sluice-gateway/sluice/ratelimit/memory"
	rlredis "github.com/sluice-gateway/sluice/ratelimit/redis"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/usage"
)

const benchBody = `{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"Summarise the quarterly numbers for the finance team, please."}]}`

type admissionPath struct {
	auth    *auth.Authenticator
	secret  string
	steps   []proxy.Admitter
	ep      *proxy.Endpoint
	counter *usage.Counter
	seq     atomic.Int64
}

// run performs one admission: key lookup, then every step.
func (p *admissionPath) run(ctx context.Context) error {
	k, err := p.auth.Authenticate(ctx, p.secret)
	if err != nil {
		return err
	}
	rec := &sluice.UsageRecord{RequestID: fmt.Sprintf("bench-%d", p.seq.Add(1))}
	a := &proxy.Admission{Key: k, Endpoint: p.ep, API: sluice.APIChat, Model: "chat", MaxTokens: 64,
		Body: []byte(benchBody), Targets: p.ep.Targets, Header: http.Header{}, Record: rec, Counter: p.counter}
	for _, s := range p.steps {
		if _, err := s.Admit(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// newPath builds the admission path on a SQLite store. budgets says
// whether a (generous) team budget applies, so each call reserves.
func newPath(b *testing.B, lim ratelimit.Limiter, budgets bool) *admissionPath {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "s.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	secret, k, _ := auth.NewKey("finance", "", false, nil, time.Time{}, time.Now())
	if err := st.CreateKey(ctx, k); err != nil {
		b.Fatal(err)
	}
	if budgets {
		if err := st.CreateBudget(ctx, sluice.Budget{ID: "fin", Scope: sluice.ScopeTeam, Subject: "finance",
			Period: sluice.PeriodMonth, LimitMicros: 1e15, Hard: true, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	a, err := auth.New(ctx, st, auth.Options{})
	if err != nil {
		b.Fatal(err)
	}
	counter := &usage.Counter{}
	counter.Preload()
	ep := &proxy.Endpoint{Name: "chat", MaxOutputTokens: 4096, Targets: []*proxy.Target{{
		Upstream: &proxy.Upstream{Name: "up"}, Model: "gpt-4o-mini", Priced: true,
		Price: pricing.Price{InputPer1M: 150_000, OutputPer1M: 600_000}}}}
	rl := &admission.RateLimits{Limiter: lim, Rules: []admission.RateRule{
		{Scope: "key", RPM: 1e9, TPM: 1e10}, {Scope: "team", RPM: 1e9, TPM: 1e10}, {Scope: "endpoint", RPM: 1e9}}}
	bl := &admission.Budgets{Manager: budget.New(st, budget.Options{}), Store: st}
	if err := bl.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	return &admissionPath{auth: a, secret: secret, steps: []proxy.Admitter{rl, bl}, ep: ep, counter: counter}
}

// BenchmarkAdmission measures key lookup + prompt token count + rate
// limits (3 buckets) + budget check. "no-budget" is a call no budget
// applies to (no store round trip); "budget-sqlite" reserves durably.
func BenchmarkAdmission(b *testing.B) {
	for _, withBudget := range []bool{false, true} {
		name := "memory/no-budget"
		if withBudget {
			name = "memory/budget-sqlite"
		}
		b.Run(name, func(b *testing.B) {
			lim := memory.New(memory.Options{})
			defer lim.Close()
			p := newPath(b, lim, withBudget)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := p.run(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("redis/no-budget", func(b *testing.B) {
		url := os.Getenv("SLUICE_TEST_REDIS")
		if url == "" {
			b.Skip("SLUICE_TEST_REDIS is not set")
		}
		opts, err := goredis.ParseURL(url)
		if err != nil {
			b.Fatal(err)
		}
		c := goredis.NewClient(opts)
		defer c.Close()
		lim := rlredis.New(c, rlredis.Options{Prefix: fmt.Sprintf("bench:%d:", time.Now().UnixNano())})
		p := newPath(b, lim, false)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := p.run(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(lim.RoundTrips())/float64(b.N), "roundtrips/op")
	})
}
