package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sluice-gateway/sluice"
)

var _ sluice.ServingStore = (*Store)(nil)

const servingColumns = `name, id, creator, spec, version, created_at, updated_at`

// CreateServingEndpoint stores e with Version 1, or returns
// sluice.ErrConflict if an endpoint with its name (or its id) exists.
func (s *Store) CreateServingEndpoint(ctx context.Context, e sluice.ServingEndpointRecord) error {
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO serving_endpoints (`+servingColumns+`) VALUES (?, ?, ?, ?, 1, ?, ?)
			ON CONFLICT DO NOTHING`, e.Name, e.ID, e.Creator, spec(e.Spec), micros(e.CreatedAt), micros(e.UpdatedAt))
		if err != nil {
			return fmt.Errorf("sqlite: create serving endpoint %q: %w", e.Name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create serving endpoint %q: %w", e.Name, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: create serving endpoint %q: %w", e.Name, sluice.ErrConflict)
		}
		return nil
	})
}

// ServingEndpoint returns the named endpoint, or sluice.ErrNotFound.
func (s *Store) ServingEndpoint(ctx context.Context, name string) (sluice.ServingEndpointRecord, error) {
	e, err := scanServing(s.reader.QueryRowContext(ctx, `SELECT `+servingColumns+` FROM serving_endpoints WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("sqlite: serving endpoint %q: %w", name, sluice.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("sqlite: serving endpoint %q: %w", name, err)
	}
	return e, nil
}

// ServingEndpoints lists every endpoint ordered by name (byte order).
func (s *Store) ServingEndpoints(ctx context.Context) ([]sluice.ServingEndpointRecord, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT `+servingColumns+` FROM serving_endpoints ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: serving endpoints: %w", err)
	}
	defer rows.Close()
	var out []sluice.ServingEndpointRecord
	for rows.Next() {
		e, err := scanServing(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: serving endpoints: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: serving endpoints: %w", err)
	}
	return out, nil
}

// UpdateServingEndpoint replaces the spec of e.Name if its stored version
// is still e.Version, and stores it as e.Version+1 with UpdatedAt =
// e.UpdatedAt; the id, creator and creation time stay. It returns
// sluice.ErrNotFound for an unknown name and sluice.ErrConflict if the
// version moved on. Writes are serialised, so the check and the update
// cannot interleave with another update.
func (s *Store) UpdateServingEndpoint(ctx context.Context, e sluice.ServingEndpointRecord) error {
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE serving_endpoints SET spec = ?, version = version + 1, updated_at = ?
			WHERE name = ? AND version = ?`, spec(e.Spec), micros(e.UpdatedAt), e.Name, e.Version)
		if err != nil {
			return fmt.Errorf("sqlite: update serving endpoint %q: %w", e.Name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: update serving endpoint %q: %w", e.Name, err)
		} else if n == 1 {
			return nil
		}
		var version int64
		err = tx.QueryRowContext(ctx, `SELECT version FROM serving_endpoints WHERE name = ?`, e.Name).Scan(&version)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("sqlite: update serving endpoint %q: %w", e.Name, sluice.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("sqlite: update serving endpoint %q: %w", e.Name, err)
		}
		return fmt.Errorf("sqlite: update serving endpoint %q: version %d is stale, stored is %d: %w",
			e.Name, e.Version, version, sluice.ErrConflict)
	})
}

// DeleteServingEndpoint removes the named endpoint, or returns
// sluice.ErrNotFound.
func (s *Store) DeleteServingEndpoint(ctx context.Context, name string) error {
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM serving_endpoints WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("sqlite: delete serving endpoint %q: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: delete serving endpoint %q: %w", name, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: delete serving endpoint %q: %w", name, sluice.ErrNotFound)
		}
		return nil
	})
}

// spec is b as a BLOB argument: never NULL, even for an empty spec.
func spec(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func scanServing(row interface{ Scan(...any) error }) (sluice.ServingEndpointRecord, error) {
	var (
		e                sluice.ServingEndpointRecord
		created, updated int64
	)
	if err := row.Scan(&e.Name, &e.ID, &e.Creator, &e.Spec, &e.Version, &created, &updated); err != nil {
		return sluice.ServingEndpointRecord{}, err
	}
	e.CreatedAt, e.UpdatedAt = fromMicros(created), fromMicros(updated)
	return e, nil
}
