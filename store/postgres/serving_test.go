package postgres

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// sessionZone has a fractional offset from UTC (+05:45): a store that
// bucketed by hour or day in the session's time zone would be caught.
const sessionZone = "Asia/Kathmandu"

// openInZone opens a store in a schema of its own whose connections run
// in sessionZone.
func openInZone(t *testing.T) *Store {
	t.Helper()
	u, err := url.Parse(storetest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("timezone", sessionZone)
	u.RawQuery = q.Encode()
	st := openTest(t, u.String())
	var zone string
	if err := st.pool.QueryRow(context.Background(), "SHOW timezone").Scan(&zone); err != nil || zone != sessionZone {
		t.Fatalf("session time zone = %q, %v; want %q", zone, err, sessionZone)
	}
	return st
}

func TestServingConformance(t *testing.T) {
	storetest.RunServing(t, func(t *testing.T) sluice.ServingStore { return openInZone(t) })
}

func TestCapacityConformance(t *testing.T) {
	storetest.RunCapacity(t, func(t *testing.T) storetest.CapacityStore { return openInZone(t) })
}

func TestInferenceLogConformance(t *testing.T) {
	storetest.RunInferenceLog(t, func(t *testing.T) sluice.InferenceLogStore { return openInZone(t) })
}

// EntityUsage can read a short range through the time index rather than
// the whole ledger, and InferenceLog can read an endpoint's rows from its
// index in order, without sorting them. (Sequential scans are disabled:
// on the tiny tables of a test the planner would rightly prefer them.)
func TestServingQueryPlans(t *testing.T) {
	st := openTest(t, storetest.PostgresDSN(t))
	ctx := context.Background()
	from := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	plan := func(q string, args []any) string {
		t.Helper()
		var lines []string
		err := pgx.BeginFunc(ctx, st.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
			rows, _ := tx.Query(ctx, "EXPLAIN "+q, args...)
			var err error
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	if p := plan(entityUsageQuery(from, to)); !strings.Contains(p, "usage_time") {
		t.Errorf("EntityUsage does not read its range through usage_time:\n%s", p)
	}
	if p := plan(inferenceLogQuery("chat", from, to, 10)); !strings.Contains(p, "Index Scan Backward using inference_log_endpoint") || strings.Contains(p, "Sort") {
		t.Errorf("InferenceLog does not read the endpoint index in order:\n%s", p)
	}
}
