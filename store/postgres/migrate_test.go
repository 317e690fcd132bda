package postgres

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// insertUsage020SQL inserts a batch of records as Sluice did before
// migration 030 added the usage-tracking columns.
const insertUsage020SQL = `INSERT INTO usage (request_id, requested_at, key_id, team, end_user, endpoint, api, upstream,
	upstream_model, prompt_tokens, completion_tokens, total_tokens, usage_source, cost_micros,
	price_version, status, error_class, latency_us, ttft_us, stream, client_addr)
	SELECT * FROM unnest(
		$1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::bigint[],
		$15::text[], $16::integer[], $17::text[], $18::bigint[], $19::bigint[], $20::boolean[], $21::text[])`

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
	dsn := storetest.PostgresDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.version < 20 {
			exec(m.sql)
			exec(`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
		}
	}
	created := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	for i, team := range []string{"ml", "ml", "finance", ""} {
		exec(`INSERT INTO keys (id, hash, name, team, admin, endpoints, created_at) VALUES ($1, $2, '', $3, false, '{}', $4)`,
			string(rune('a'+i)), make([]byte, 32), team, created.Add(time.Duration(3-i)*time.Hour))
	}
	syn := storetest.Synthetic{N: 3000, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Days: 3,
		Teams: 3, Endpoints: 4, Keys: 12, UsersPerTeam: 2, Seed: 7}
	var a usageArrays
	for r := range syn.All() {
		a.add(r)
	}
	exec(insertUsage020SQL, a.requestID, a.at, a.keyID, a.team, a.user, a.endpoint, a.api,
		a.upstream, a.model, a.prompt, a.completion, a.total, a.source, a.cost,
		a.priceVersion, a.status, a.errorClass, a.latency, a.ttft, a.stream, a.clientAddr)

	st := openTest(t, dsn)
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
