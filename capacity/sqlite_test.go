package capacity_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/capacity"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// TestAccrueAndReportOnSQLite runs the accruer and the report on a real
// SQLite ledger: two accruers (a restart, or two replicas) charge each
// hour once, and the report splits each hour among the teams exactly.
func TestAccrueAndReportOnSQLite(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "sluice.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	day := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	hour := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }

	var recs []sluice.UsageRecord
	add := func(h, minute int, team string, tokens int64, latency time.Duration) {
		recs = append(recs, sluice.UsageRecord{
			RequestID: fmt.Sprintf("req-%d", len(recs)), Time: hour(h).Add(time.Duration(minute) * time.Minute),
			KeyID: "k-" + team, Team: team, Endpoint: "chat", API: sluice.APIChat, Upstream: "dbx",
			ServedEntity: "llama-pt", PromptTokens: tokens / 2, CompletionTokens: tokens - tokens/2, TotalTokens: tokens,
			Status: 200, Latency: latency, Attempts: 1,
		})
	}
	add(10, 5, "a", 100, time.Second)
	add(10, 50, "b", 100, time.Second)
	add(10, 59, "c", 100, 2*time.Second)
	add(12, 0, "a", 7, time.Second)
	add(12, 30, "b", 3, time.Second)
	add(13, 1, "a", 5000, time.Second) // the running hour: not charged yet
	if err := st.InsertUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}

	ent := capacity.Entity{Endpoint: "chat", ServedEntity: "llama-pt", HourlyMicros: 1_000_001, TokensPerSecond: 10, Since: hour(10).Add(20 * time.Minute)}
	for _, now := range []time.Time{hour(13).Add(10 * time.Minute), hour(13).Add(40 * time.Minute)} {
		a := &capacity.Accruer{Store: st, Entities: func() []capacity.Entity { return []capacity.Entity{ent} }}
		if _, err := a.AccrueOnce(ctx, now); err != nil {
			t.Fatal(err)
		}
	}
	charges, err := st.CapacityCharges(ctx, day, day.Add(24*time.Hour))
	if err != nil || len(charges) != 3 {
		t.Fatalf("%d charges (%v), want hours 10, 11 and 12 once each", len(charges), err)
	}

	res, err := capacity.Report(ctx, st, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entities) != 1 {
		t.Fatalf("%d entities", len(res.Entities))
	}
	e := res.Entities[0]
	if e.Hours != 3 || e.CostMicros != 3_000_003 || e.Tokens != 310 || e.Requests != 5 || e.BusyMillis != 6000 {
		t.Fatalf("entity = %+v", e)
	}
	got := map[string]int64{}
	var sum int64
	for _, tm := range e.Teams {
		got[tm.Team] = tm.CostMicros
		sum += tm.CostMicros
	}
	// Hour 10: 1,000,001 three ways (the remainders to a and b); hour 11
	// idle; hour 12: 7:3.
	want := map[string]int64{"a": 333_334 + 700_001, "b": 333_334 + 300_000, "c": 333_333, "": 1_000_001}
	if fmt.Sprint(got) != fmt.Sprint(want) || sum != e.CostMicros {
		t.Fatalf("team shares %v (sum %d), want %v (sum %d)", got, sum, want, e.CostMicros)
	}
}
