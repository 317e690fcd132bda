package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// insertUsage020SQL inserts a record as Sluice did before migration 030
// added the usage-tracking columns.
const insertUsage020SQL = `INSERT INTO usage (request_id, requested_at, key_id, team, end_user, endpoint, api, upstream,
	upstream_model, prompt_tokens, completion_tokens, total_tokens, usage_source, cost_micros,
	price_version, status, error_class, latency_us, ttft_us, stream, client_addr)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func TestBackfillMatchesMigration(t *testing.T) {
	b, err := migrations.ReadFile("migrations/020_teams.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), backfillDailySQL) {
		t.Error("migration 020 does not backfill the rollup with backfillDailySQL")
	}
}

// A ledger written before migration 020 gets its teams from its keys and
// its daily rollup from its records when a newer Sluice opens it, and
// keeps its records through the later migrations (030 adds columns to
// them).
func TestMigrationBackfillsTeamsAndRollup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	db, err := sql.Open("sqlite", dsn(path, nil))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := tx.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL DEFAULT 0)`)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.version < 20 {
			exec(m.sql)
			exec(`INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.version, m.name)
		}
	}
	created := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	for i, team := range []string{"ml", "ml", "finance", ""} {
		exec(`INSERT INTO keys (id, hash, name, team, admin, endpoints, created_at) VALUES (?, zeroblob(32), '', ?, 0, '[]', ?)`,
			string(rune('a'+i)), team, micros(created.Add(time.Duration(3-i)*time.Hour)))
	}
	syn := storetest.Synthetic{N: 3000, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Days: 3,
		Teams: 3, Endpoints: 4, Keys: 12, UsersPerTeam: 2, Seed: 7}
	for r := range syn.All() {
		exec(insertUsage020SQL, r.RequestID, micros(r.Time), r.KeyID, r.Team, r.User, r.Endpoint, string(r.API), r.Upstream,
			r.UpstreamModel, r.PromptTokens, r.CompletionTokens, r.TotalTokens, string(r.UsageSource), r.CostMicros,
			r.PriceVersion, r.Status, r.ErrorClass, r.Latency.Microseconds(), r.TTFT.Microseconds(), r.Stream, r.ClientAddr)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	st := openTest(t, path, Options{})
	ctx := context.Background()
	ts, err := st.Teams(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []sluice.Team{{Name: "finance", CreatedAt: created.Add(time.Hour)}, {Name: "ml", CreatedAt: created.Add(2 * time.Hour)}}
	if !slices.EqualFunc(ts, want, func(a, b sluice.Team) bool {
		return a.Name == b.Name && a.Description == b.Description && a.ClassFloor == b.ClassFloor && a.CreatedAt.Equal(b.CreatedAt)
	}) {
		t.Errorf("teams after migration = %+v, want %+v", ts, want)
	}
	storetest.AssertSameReports(t, st.UsageReport, func(ctx context.Context, q sluice.UsageQuery) ([]sluice.UsageRow, error) {
		return st.report(ctx, q, rawPlan(q))
	}, syn.Start, syn.Start.AddDate(0, 0, syn.Days))
	storetest.AssertUpgradedLedger(t, st, syn, 97)
}
