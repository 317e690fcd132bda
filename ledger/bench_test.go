package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/postgres"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// Benchmarks measure what a request pays for its usage record: each
// parallel committer calls Commit and waits until the record is durable.
// They report rows/s and the commit wait at p50 and p99.
//
//	go test -run '^$' -bench . -benchtime 3s ./ledger/
//	SLUICE_TEST_POSTGRES=postgres://... go test -run '^$' -bench Postgres ./ledger/

// parallelism are the levels of concurrency measured: b.SetParallelism(p)
// runs p×GOMAXPROCS committers.
var parallelism = []int{1, 8, 32}

func committers(p int) string { return fmt.Sprintf("committers=%d", p*runtime.GOMAXPROCS(0)) }

func openSQLite(b *testing.B, mode string) sluice.UsageStore {
	st, err := sqlite.Open(filepath.Join(b.TempDir(), "ledger.db"), sqlite.Options{Synchronous: mode, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func openPostgres(b *testing.B) sluice.UsageStore {
	st, err := postgres.Open(context.Background(), storetest.PostgresDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func BenchmarkWriterSQLite(b *testing.B) {
	for _, mode := range []string{sqlite.SyncNormal, sqlite.SyncFull} {
		for _, p := range parallelism {
			b.Run("sync="+mode+"/"+committers(p), func(b *testing.B) {
				benchWriter(b, openSQLite(b, mode), p)
			})
		}
	}
}

func BenchmarkWriterPostgres(b *testing.B) {
	for _, p := range parallelism {
		b.Run(committers(p), func(b *testing.B) {
			benchWriter(b, openPostgres(b), p)
		})
	}
}

// The per-row baselines insert each record in its own transaction, as a
// gateway without group commit would.
func BenchmarkPerRowSQLite(b *testing.B) {
	for _, p := range parallelism {
		b.Run("sync=normal/"+committers(p), func(b *testing.B) {
			st := openSQLite(b, sqlite.SyncNormal)
			benchCommit(b, p, func(r sluice.UsageRecord) error {
				return st.InsertUsage(context.Background(), []sluice.UsageRecord{r})
			})
		})
	}
}

func BenchmarkPerRowPostgres(b *testing.B) {
	for _, p := range parallelism {
		b.Run(committers(p), func(b *testing.B) {
			st := openPostgres(b)
			benchCommit(b, p, func(r sluice.UsageRecord) error {
				return st.InsertUsage(context.Background(), []sluice.UsageRecord{r})
			})
		})
	}
}

func benchWriter(b *testing.B, st sluice.UsageStore, p int) {
	var commits, rows atomic.Int64
	w := New(st, Options{Logger: quiet, OnCommit: func(n int, _ time.Duration) {
		commits.Add(1)
		rows.Add(int64(n))
	}})
	benchCommit(b, p, func(r sluice.UsageRecord) error {
		return w.Commit(context.Background(), r)
	})
	if err := w.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	if c := commits.Load(); c > 0 {
		b.ReportMetric(float64(rows.Load())/float64(c), "rows/commit")
	}
}

// benchCommit runs commit for b.N distinct records from parallel
// goroutines and reports throughput and the latency of each call.
func benchCommit(b *testing.B, p int, commit func(sluice.UsageRecord) error) {
	var (
		seq   atomic.Int64
		mu    sync.Mutex
		waits []time.Duration
	)
	prefix := fmt.Sprintf("bench-%d-", time.Now().UnixNano())
	b.SetParallelism(p)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var local []time.Duration
		for pb.Next() {
			r := benchRecord(prefix + fmt.Sprint(seq.Add(1)))
			start := time.Now()
			if err := commit(r); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(start))
		}
		mu.Lock()
		waits = append(waits, local...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(waits) == 0 {
		return
	}
	slices.Sort(waits)
	pct := func(p float64) float64 {
		return float64(waits[int(p*float64(len(waits)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(waits))/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op") // rows/s says the same, less confusingly
}

func benchRecord(id string) sluice.UsageRecord {
	return sluice.UsageRecord{
		RequestID:        id,
		Time:             time.Now(),
		KeyID:            "k_bench",
		Team:             "bench",
		User:             "user-1",
		Endpoint:         "gpt-fast",
		API:              sluice.APIChat,
		Upstream:         "openai",
		UpstreamModel:    "gpt-4o-mini",
		PromptTokens:     812,
		CompletionTokens: 230,
		TotalTokens:      1042,
		UsageSource:      sluice.UsageUpstream,
		CostMicros:       291,
		PriceVersion:     "2026-02-15",
		Status:           200,
		Latency:          1200 * time.Millisecond,
		TTFT:             180 * time.Millisecond,
		Stream:           true,
		ClientAddr:       "127.0.0.1:50123",
	}
}
