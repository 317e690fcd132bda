// Package postgres keeps Sluice's keys, teams and usage ledger in
// PostgreSQL, with a daily rollup of the ledger that reports read for
// whole days, and the serving endpoints created through the control plane
// with their hourly capacity charges and inference log.
//
// It is the store for more than one gateway replica: every replica writes
// its usage records to the same tables, and inserts are idempotent on the
// request id, so a batch retried after an ambiguous failure is harmless.
// A batch of records is inserted with one statement by passing each column
// as an array and unnesting them; the same statement adds the records it
// inserted to the daily rollup and takes their budget reservations, and
// their settlement follows in the same transaction (see budgets.go).
// Replicas share budget counters and change them with conditional upserts,
// so a hard budget holds across them.
//
//	st, err := postgres.Open(ctx, "postgres://sluice@db/sluice")
//	if err != nil { ... }
//	defer st.Close()
//
// The tables live in the first schema of the connection's search_path, so
// a DSN with search_path=... places them elsewhere.
package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/sluice-gateway/sluice"
)

// Store is a sluice.Store kept in PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

var _ sluice.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string, as accepted by pgx) and applies pending migrations.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Close closes every connection, waiting for queries in progress.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromNullTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// cleanText makes s storable as PostgreSQL text, which refuses NUL bytes
// and invalid UTF-8: each offending byte becomes U+FFFD. Usage records
// carry client-supplied strings, and refusing one would stall the ledger.
func cleanText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0 || r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
