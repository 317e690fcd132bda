package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

func TestServingConformance(t *testing.T) {
	storetest.RunServing(t, func(t *testing.T) sluice.ServingStore {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

func TestCapacityConformance(t *testing.T) {
	storetest.RunCapacity(t, func(t *testing.T) storetest.CapacityStore {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

func TestInferenceLogConformance(t *testing.T) {
	storetest.RunInferenceLog(t, func(t *testing.T) sluice.InferenceLogStore {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

// EntityUsage over a short range reads it through the time index rather
// than the whole ledger, and InferenceLog reads an endpoint's rows from
// its index in order, without sorting them.
func TestServingQueryPlans(t *testing.T) {
	st := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	ctx := context.Background()
	plan := func(q string, args []any) string {
		t.Helper()
		rows, err := st.reader.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var b strings.Builder
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			b.WriteString(detail + "\n")
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	from := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)

	if p := plan(entityUsageQuery(from, to)); !strings.Contains(p, "USING INDEX usage_time (requested_at>? AND requested_at<?)") {
		t.Errorf("EntityUsage does not read its range through usage_time:\n%s", p)
	}
	if p := plan(inferenceLogQuery("chat", from, to, 10)); !strings.Contains(p, "USING INDEX inference_log_endpoint") || strings.Contains(p, "TEMP B-TREE") {
		t.Errorf("InferenceLog does not read the endpoint index in order:\n%s", p)
	}
}
