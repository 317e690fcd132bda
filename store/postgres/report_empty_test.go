package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// TestEmptyReportAcrossPartialDays: a report with no grouping over a range
// with whole days and partial-day edges, and no records, has no rows (not
// one row of NULL sums).
func TestEmptyReportAcrossPartialDays(t *testing.T) {
	st := openTest(t, storetest.PostgresDSN(t))
	from := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	rows, err := st.UsageReport(context.Background(), sluice.UsageQuery{From: from, To: from.Add(72 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Fatalf("rows = %+v, want none", rows)
	}
}
