package postgres

import (
	"context"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/storetest"
)

func openTest(t *testing.T, dsn string) *Store {
	t.Helper()
	st, err := Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) sluice.Store {
		return openTest(t, storetest.PostgresDSN(t))
	})
}

func TestBudgetConformance(t *testing.T) {
	storetest.RunBudgets(t, func(t *testing.T) storetest.BudgetStore {
		return openTest(t, storetest.PostgresDSN(t))
	})
}

func TestSchemaIsolation(t *testing.T) {
	a := openTest(t, storetest.PostgresDSN(t))
	b := openTest(t, storetest.PostgresDSN(t))
	ctx := context.Background()
	if err := a.InsertUsage(ctx, []sluice.UsageRecord{{RequestID: "only-in-a"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Usage(ctx, "only-in-a"); err == nil {
		t.Fatal("record visible from another test's schema")
	}
}

func TestConcurrentMigrations(t *testing.T) {
	dsn := storetest.PostgresDSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			st, err := Open(context.Background(), dsn)
			if err == nil {
				st.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	st := openTest(t, dsn)
	var n int
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.pool.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Errorf("schema_migrations rows = %d, %v; want %d, one per migration", n, err, len(ms))
	}
}

func TestCleanText(t *testing.T) {
	for in, want := range map[string]string{
		"":           "",
		"plain":      "plain",
		"émile":      "émile",
		"a\x00b":     "a\uFFFDb",
		"\xff\xfe":   "\uFFFD\uFFFD",
		"ok\xc3(end": "ok\uFFFD(end",
	} {
		if got := cleanText(in); got != want {
			t.Errorf("cleanText(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTeamConformance(t *testing.T) {
	storetest.RunTeams(t, func(t *testing.T) storetest.TeamStore {
		return openTest(t, storetest.PostgresDSN(t))
	})
}
