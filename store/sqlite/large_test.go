package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// TestLargeLedger measures reports over a large synthetic ledger (see
// storetest.LargeLedgerEnv). The records are loaded with multi-row
// INSERTs straight into the usage table and the rollup is then built with
// the migration's backfill statement.
func TestLargeLedger(t *testing.T) {
	n := storetest.LargeLedgerSize(t)
	dir := t.TempDir()
	st := openTest(t, filepath.Join(dir, "ledger.db"), Options{Logger: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	syn := storetest.NewSynthetic(n)

	start := time.Now()
	if err := bulkLoad(ctx, st, syn); err != nil {
		t.Fatal(err)
	}
	loaded := time.Since(start)
	start = time.Now()
	if err := st.write(ctx, 0, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM usage_daily; `+backfillDailySQL)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	backfilled := time.Since(start)
	var rollupRows int64
	if err := st.reader.QueryRow(`SELECT count(*) FROM usage_daily`).Scan(&rollupRows); err != nil {
		t.Fatal(err)
	}
	st.checkpoint()
	size := fileSizes(t, dir)
	t.Logf("SQLite: loaded %d records in %v (%.0f/s), rollup backfill %v → %d rollup rows; files %.1f GiB",
		n, loaded.Round(time.Second), float64(n)/loaded.Seconds(), backfilled.Round(time.Second), rollupRows, float64(size)/(1<<30))

	storetest.TimeLargeReports(t, syn, st.UsageReport, func(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error) {
		return st.report(ctx, q, rawPlan(q))
	})
}

// bulkLoad inserts the synthetic records with multi-row INSERTs, many per
// transaction, without the rollup (built afterwards).
func bulkLoad(ctx context.Context, st *Store, syn storetest.Synthetic) error {
	const (
		cols    = 26  // usageColumns
		perStmt = 300 // × cols, under SQLite's parameter limit
		perTx   = 200_000
	)
	insertRows := func(n int) string {
		row := "(" + placeholders(cols) + ")"
		return `INSERT INTO usage (` + usageColumns + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
	}
	args := make([]any, 0, perStmt*cols)
	var tx *sql.Tx
	var stmt *sql.Stmt
	inTx := 0
	commit := func() error {
		if tx == nil {
			return nil
		}
		stmt.Close()
		err := tx.Commit()
		tx, inTx = nil, 0
		st.checkpoint()
		return err
	}
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		var err error
		if tx == nil {
			if tx, err = st.writer.BeginTx(ctx, nil); err != nil {
				return err
			}
			if stmt, err = tx.PrepareContext(ctx, insertRows(perStmt)); err != nil {
				return err
			}
		}
		if len(args) == perStmt*cols {
			_, err = stmt.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertRows(len(args)/cols), args...)
		}
		inTx += len(args) / cols
		args = args[:0]
		if err == nil && inTx >= perTx {
			err = commit()
		}
		return err
	}
	var err error
	for r := range syn.All() {
		args = append(args, r.RequestID, micros(r.Time), r.KeyID, r.Team, r.User, r.Endpoint, string(r.API), r.Upstream,
			r.UpstreamModel, r.PromptTokens, r.CompletionTokens, r.TotalTokens, string(r.UsageSource), r.CostMicros,
			r.PriceVersion, r.Status, r.ErrorClass, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Stream, r.ClientAddr,
			r.ClientRequestID, r.UsageContext, r.ServedEntity, r.Attempts, r.AttemptLog)
		if len(args) == perStmt*cols {
			if err = flush(); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = commit()
	}
	if err != nil && tx != nil {
		tx.Rollback()
	}
	return err
}

func fileSizes(t *testing.T, dir string) int64 {
	var total int64
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	return total
}
