package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
)

const keyColumns = `id, hash, name, team, admin, endpoints, expires_at, created_at, revoked_at, source_cidrs, class_floor`

// CreateKey stores k, or returns sluice.ErrConflict if its id exists. A
// team that k names and that does not exist is created in the same
// statement. The statement locks the keys table against DeleteTeam's
// SHARE lock before it looks at teams, so a team cannot be deleted between
// the two inserts.
func (s *Store) CreateKey(ctx context.Context, k sluice.Key) error {
	eps := k.Endpoints
	if eps == nil {
		eps = []string{}
	}
	cidrs := make([]string, len(k.SourceCIDRs))
	for i, p := range k.SourceCIDRs {
		cidrs[i] = p.String()
	}
	var inserted int64
	err := s.pool.QueryRow(ctx, `WITH k AS (INSERT INTO keys (`+keyColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING
			RETURNING team, created_at),
		t AS (INSERT INTO teams (`+teamColumns+`)
			SELECT team, '', '', created_at FROM k WHERE team <> ''
			ON CONFLICT (name) DO NOTHING)
		SELECT count(*) FROM k`,
		k.ID, k.Hash[:], k.Name, k.Team, k.Admin, eps,
		nullTime(k.ExpiresAt), k.CreatedAt, nullTime(k.RevokedAt), cidrs, k.ClassFloor).Scan(&inserted)
	if err != nil {
		return fmt.Errorf("postgres: create key %q: %w", k.ID, err)
	}
	if inserted == 0 {
		return fmt.Errorf("postgres: create key %q: %w", k.ID, sluice.ErrConflict)
	}
	return nil
}

// Key returns the key with the given id, or sluice.ErrNotFound.
func (s *Store) Key(ctx context.Context, id string) (sluice.Key, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = $1`, id)
	k, err := pgx.CollectExactlyOneRow(rows, scanKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return sluice.Key{}, fmt.Errorf("postgres: key %q: %w", id, sluice.ErrNotFound)
	}
	if err != nil {
		return sluice.Key{}, fmt.Errorf("postgres: key %q: %w", id, err)
	}
	return k, nil
}

// Keys lists every key, revoked ones included, oldest first.
func (s *Store) Keys(ctx context.Context) ([]sluice.Key, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM keys ORDER BY created_at, id`)
	ks, err := pgx.CollectRows(rows, scanKey)
	if err != nil {
		return nil, fmt.Errorf("postgres: keys: %w", err)
	}
	return ks, nil
}

// RevokeKey marks the key revoked at t, keeping an earlier revocation
// time. It returns sluice.ErrNotFound for an unknown id.
func (s *Store) RevokeKey(ctx context.Context, id string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("postgres: revoke key %q: zero revocation time", id)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`, id, t)
	if err != nil {
		return fmt.Errorf("postgres: revoke key %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: revoke key %q: %w", id, sluice.ErrNotFound)
	}
	return nil
}

func scanKey(row pgx.CollectableRow) (sluice.Key, error) {
	var (
		k                         sluice.Key
		hash                      []byte
		expires, revoked, created *time.Time
		cidrs                     []string
	)
	if err := row.Scan(&k.ID, &hash, &k.Name, &k.Team, &k.Admin, &k.Endpoints, &expires, &created, &revoked, &cidrs, &k.ClassFloor); err != nil {
		return k, err
	}
	if len(hash) != len(k.Hash) {
		return k, fmt.Errorf("key %q: hash has %d bytes, want %d", k.ID, len(hash), len(k.Hash))
	}
	copy(k.Hash[:], hash)
	if len(k.Endpoints) == 0 {
		k.Endpoints = nil
	}
	for _, p := range cidrs {
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			return k, fmt.Errorf("key %q: source_cidrs: %w", k.ID, err)
		}
		k.SourceCIDRs = append(k.SourceCIDRs, pr)
	}
	k.ExpiresAt = fromNullTime(expires)
	k.CreatedAt = fromNullTime(created)
	k.RevokedAt = fromNullTime(revoked)
	return k, nil
}
