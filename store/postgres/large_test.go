package postgres

import (
	"context"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// TestLargeLedger measures reports over a large synthetic ledger (see
// storetest.LargeLedgerEnv) in a schema of its own, dropped afterwards.
// The records are loaded with COPY straight into the usage table and the
// rollup is then built with the migration's backfill statement.
func TestLargeLedger(t *testing.T) {
	n := storetest.LargeLedgerSize(t)
	st := openTest(t, storetest.PostgresDSN(t))
	ctx := context.Background()
	syn := storetest.NewSynthetic(n)

	start := time.Now()
	next, stop := iter.Pull(syn.All())
	defer stop()
	const perCopy = 500_000
	for left := n; left > 0; left -= perCopy {
		src := &recordSource{next: next, left: min(left, perCopy)}
		if _, err := st.pool.CopyFrom(ctx, pgx.Identifier{"usage"}, strings.Fields(strings.ReplaceAll(usageColumns, ",", " ")), src); err != nil {
			t.Fatal(err)
		}
	}
	loaded := time.Since(start)
	start = time.Now()
	if _, err := st.pool.Exec(ctx, `DELETE FROM usage_daily; `+backfillDailySQL); err != nil {
		t.Fatal(err)
	}
	backfilled := time.Since(start)
	start = time.Now()
	// What autovacuum does after a load; done here so the timings do not
	// depend on when it runs. VACUUM cannot run in a transaction block.
	for _, table := range []string{"usage", "usage_daily"} {
		if _, err := st.pool.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
			t.Fatal(err)
		}
	}
	analyzed := time.Since(start)
	var rollupRows int64
	var size string
	if err := st.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM usage_daily),
		pg_size_pretty(pg_total_relation_size('usage') + pg_total_relation_size('usage_daily'))`).Scan(&rollupRows, &size); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL: loaded %d records in %v (%.0f/s), rollup backfill %v → %d rollup rows, vacuum analyze %v; tables and indexes %s",
		n, loaded.Round(time.Second), float64(n)/loaded.Seconds(), backfilled.Round(time.Second), rollupRows, analyzed.Round(time.Second), size)

	storetest.TimeLargeReports(t, syn, st.UsageReport, func(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error) {
		return st.report(ctx, q, rawPlan(q))
	})
}

// recordSource feeds up to left records from next to COPY.
type recordSource struct {
	next func() (*sluice.UsageRecord, bool)
	left int
	r    *sluice.UsageRecord
}

func (s *recordSource) Next() bool {
	if s.left == 0 {
		return false
	}
	r, ok := s.next()
	s.r, s.left = r, s.left-1
	return ok
}

func (s *recordSource) Values() ([]any, error) {
	r := s.r
	return []any{r.RequestID, r.Time, r.KeyID, r.Team, r.User, r.Endpoint, string(r.API), r.Upstream,
		r.UpstreamModel, r.PromptTokens, r.CompletionTokens, r.TotalTokens, string(r.UsageSource), r.CostMicros,
		r.PriceVersion, int32(r.Status), r.ErrorClass, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Stream, r.ClientAddr,
		r.ClientRequestID, r.UsageContext, r.ServedEntity, int32(r.Attempts), r.AttemptLog}, nil
}

func (s *recordSource) Err() error { return nil }
