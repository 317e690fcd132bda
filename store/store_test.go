package store

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/sluice-gateway/sluice/store/postgres"
	"github.com/sluice-gateway/sluice/store/sqlite"
	"github.com/sluice-gateway/sluice/store/storetest"
)

func TestIsPostgres(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://u@127.0.0.1/db":   true,
		"postgresql://u@127.0.0.1/db": true,
		"POSTGRES://u@127.0.0.1/db":   true,
		"/var/lib/sluice/ledger.db":   false,
		"ledger.db":                   false,
		"./postgres/ledger.db":        false,
		"postgres.db":                 false,
	} {
		if got := IsPostgres(dsn); got != want {
			t.Errorf("IsPostgres(%q) = %v, want %v", dsn, got, want)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	st, err := Open(context.Background(), filepath.Join(t.TempDir(), "sub", "ledger.db"), sqlite.Options{Synchronous: sqlite.SyncFull})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*sqlite.Store); !ok {
		t.Errorf("Open(path) = %T, want *sqlite.Store", st)
	}
	if _, err := Open(context.Background(), filepath.Join(t.TempDir(), "x.db"), sqlite.Options{Synchronous: "bogus"}); err == nil {
		t.Error("invalid SQLite options accepted")
	}
}

func TestOpenPostgres(t *testing.T) {
	st, err := Open(context.Background(), storetest.PostgresDSN(t), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*postgres.Store); !ok {
		t.Errorf("Open(postgres URL) = %T, want *postgres.Store", st)
	}
}
