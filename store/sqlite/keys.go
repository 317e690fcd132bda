package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/sluice-gateway/sluice"
)

const keyColumns = `id, hash, name, team, admin, endpoints, expires_at, created_at, revoked_at, source_cidrs, class_floor`

// CreateKey stores k, or returns sluice.ErrConflict if its id exists. A
// team that k names and that does not exist is created with it.
func (s *Store) CreateKey(ctx context.Context, k sluice.Key) error {
	eps := k.Endpoints
	if eps == nil {
		eps = []string{}
	}
	epsJSON, err := json.Marshal(eps)
	if err != nil {
		return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
	}
	cidrs := make([]string, len(k.SourceCIDRs))
	for i, p := range k.SourceCIDRs {
		cidrs[i] = p.String()
	}
	cidrsJSON, err := json.Marshal(cidrs)
	if err != nil {
		return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
	}
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO keys (`+keyColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			k.ID, k.Hash[:], k.Name, k.Team, k.Admin, string(epsJSON),
			nullMicros(k.ExpiresAt), micros(k.CreatedAt), nullMicros(k.RevokedAt), string(cidrsJSON), k.ClassFloor)
		if err != nil {
			return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: create key %q: %w", k.ID, sluice.ErrConflict)
		}
		if err := ensureTeam(ctx, tx, k.Team, k.CreatedAt); err != nil {
			return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
		}
		return nil
	})
}

// Key returns the key with the given id, or sluice.ErrNotFound.
func (s *Store) Key(ctx context.Context, id string) (sluice.Key, error) {
	row := s.reader.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id)
	k, err := scanKey(row)
	if errors.Is(err, sql.ErrNoRows) {
		return sluice.Key{}, fmt.Errorf("sqlite: key %q: %w", id, sluice.ErrNotFound)
	}
	if err != nil {
		return sluice.Key{}, fmt.Errorf("sqlite: key %q: %w", id, err)
	}
	return k, nil
}

// Keys lists every key, revoked ones included, oldest first.
func (s *Store) Keys(ctx context.Context) ([]sluice.Key, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT `+keyColumns+` FROM keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: keys: %w", err)
	}
	defer rows.Close()
	var ks []sluice.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: keys: %w", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: keys: %w", err)
	}
	return ks, nil
}

// RevokeKey marks the key revoked at t, keeping an earlier revocation
// time. It returns sluice.ErrNotFound for an unknown id.
func (s *Store) RevokeKey(ctx context.Context, id string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("sqlite: revoke key %q: zero revocation time", id)
	}
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?`, micros(t), id)
		if err != nil {
			return fmt.Errorf("sqlite: revoke key %q: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: revoke key %q: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: revoke key %q: %w", id, sluice.ErrNotFound)
		}
		return nil
	})
}

func scanKey(row interface{ Scan(...any) error }) (sluice.Key, error) {
	var (
		k                sluice.Key
		hash             []byte
		eps, cidrs       string
		expires, revoked sql.NullInt64
		created          int64
	)
	if err := row.Scan(&k.ID, &hash, &k.Name, &k.Team, &k.Admin, &eps, &expires, &created, &revoked, &cidrs, &k.ClassFloor); err != nil {
		return k, err
	}
	if len(hash) != len(k.Hash) {
		return k, fmt.Errorf("key %q: hash has %d bytes, want %d", k.ID, len(hash), len(k.Hash))
	}
	copy(k.Hash[:], hash)
	if err := json.Unmarshal([]byte(eps), &k.Endpoints); err != nil {
		return k, fmt.Errorf("key %q: endpoints: %w", k.ID, err)
	}
	if len(k.Endpoints) == 0 {
		k.Endpoints = nil
	}
	var ps []string
	if err := json.Unmarshal([]byte(cidrs), &ps); err != nil {
		return k, fmt.Errorf("key %q: source_cidrs: %w", k.ID, err)
	}
	for _, p := range ps {
		pr, err := netip.ParsePrefix(p)
		if err != nil {
			return k, fmt.Errorf("key %q: source_cidrs: %w", k.ID, err)
		}
		k.SourceCIDRs = append(k.SourceCIDRs, pr)
	}
	k.ExpiresAt = fromNullMicros(expires)
	k.CreatedAt = fromMicros(created)
	k.RevokedAt = fromNullMicros(revoked)
	return k, nil
}
