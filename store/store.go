// Package store opens the Store a DSN names: PostgreSQL for
// postgres:// and postgresql:// URLs, a SQLite file for anything else.
//
//	st, err := store.Open(ctx, cfg.Database, sqlite.Options{Synchronous: sqlite.SyncFull})
package store

import (
	"context"
	"strings"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/postgres"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// Store is what both implementations keep: keys and their teams, the
// usage ledger, the budgets that usage settles against, and the serving
// endpoints with their capacity charges and inference log.
type Store interface {
	sluice.Store
	sluice.BudgetStore
	sluice.TeamStore
	sluice.ServingStore
	sluice.CapacityStore
	sluice.InferenceLogStore
}

var (
	_ Store = (*sqlite.Store)(nil)
	_ Store = (*postgres.Store)(nil)
)

// Open opens the store named by dsn. A postgres:// or postgresql:// URL
// selects PostgreSQL; anything else is the path of a SQLite database file,
// opened with opts (which PostgreSQL ignores).
func Open(ctx context.Context, dsn string, opts sqlite.Options) (Store, error) {
	if IsPostgres(dsn) {
		return postgres.Open(ctx, dsn)
	}
	return sqlite.Open(dsn, opts)
}

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	lower := strings.ToLower(dsn)
	return strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://")
}
