package budget_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/budget"
	"github.com/sluice-gateway/sluice/store/storetest"
)

// BenchmarkReserve measures budget admission on each store: a request no
// budget applies to (the common case), a request held against three
// budgets (key, team, team on endpoint), and that reservation followed by
// the insert of its usage record, which settles it.
//
//	go test -run '^$' -bench Reserve -benchmem ./budget/
func BenchmarkReserve(b *testing.B) {
	b.Run("SQLite", func(b *testing.B) {
		benchReserve(b, func(b *testing.B) testStore { return openSQLite(b, filepath.Join(b.TempDir(), "ledger.db")) })
	})
	b.Run("PostgreSQL", func(b *testing.B) {
		benchReserve(b, func(b *testing.B) testStore { return openPostgres(b, storetest.PostgresDSN(b)) })
	})
}

func benchReserve(b *testing.B, open func(b *testing.B) testStore) {
	ctx := context.Background()
	for _, bc := range []struct {
		name   string
		subj   sluice.BudgetSubjects
		settle bool
	}{
		{"NoBudget", sluice.BudgetSubjects{KeyID: "k_bob", Team: "web", Endpoint: "embed"}, false},
		{"ThreeBudgets", alice, false},
		{"ThreeBudgetsAndSettle", alice, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := open(b)
			for _, bd := range []sluice.Budget{
				{ID: "key", Scope: sluice.ScopeKey, Subject: "k_alice", Period: sluice.PeriodDay},
				{ID: "team", Scope: sluice.ScopeTeam, Subject: "ml", Period: sluice.PeriodMonth},
				{ID: "pair", Scope: sluice.ScopeTeamEndpoint, Subject: "ml/gpt", Period: sluice.PeriodLifetime},
			} {
				bd.LimitMicros, bd.Hard = sluice.MaxBudgetMicros, true
				createBudget(b, st, bd)
			}
			m := budget.New(st, budget.Options{Now: func() time.Time { return t0 }, Logger: quiet})
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("req-%d", i)
				if err := m.Reserve(ctx, sluice.Reservation{RequestID: id, Subjects: bc.subj, AmountMicros: 1000}); err != nil {
					b.Fatal(err)
				}
				if bc.settle {
					if err := st.InsertUsage(ctx, []sluice.UsageRecord{record(id, t0, bc.subj, 700)}); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
