package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
)

var _ sluice.ServingStore = (*Store)(nil)

const servingColumns = `name, id, creator, spec, version, created_at, updated_at`

// CreateServingEndpoint stores e with Version 1, or returns
// sluice.ErrConflict if an endpoint with its name (or its id) exists.
func (s *Store) CreateServingEndpoint(ctx context.Context, e sluice.ServingEndpointRecord) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO serving_endpoints (`+servingColumns+`) VALUES ($1, $2, $3, $4, 1, $5, $6)
		ON CONFLICT DO NOTHING`, cleanText(e.Name), cleanText(e.ID), cleanText(e.Creator), spec(e.Spec), e.CreatedAt, e.UpdatedAt)
	if err != nil {
		return fmt.Errorf("postgres: create serving endpoint %q: %w", e.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create serving endpoint %q: %w", e.Name, sluice.ErrConflict)
	}
	return nil
}

// ServingEndpoint returns the named endpoint, or sluice.ErrNotFound.
func (s *Store) ServingEndpoint(ctx context.Context, name string) (sluice.ServingEndpointRecord, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+servingColumns+` FROM serving_endpoints WHERE name = $1`, cleanText(name))
	e, err := pgx.CollectExactlyOneRow(rows, scanServing)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, fmt.Errorf("postgres: serving endpoint %q: %w", name, sluice.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("postgres: serving endpoint %q: %w", name, err)
	}
	return e, nil
}

// ServingEndpoints lists every endpoint ordered by name (byte order).
func (s *Store) ServingEndpoints(ctx context.Context) ([]sluice.ServingEndpointRecord, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+servingColumns+` FROM serving_endpoints ORDER BY name`)
	es, err := pgx.CollectRows(rows, scanServing)
	if err != nil {
		return nil, fmt.Errorf("postgres: serving endpoints: %w", err)
	}
	return es, nil
}

// updateServingSQL updates the endpoint if its version is still $2 and
// says whether it did and whether the endpoint exists. Both parts see the
// same snapshot, taken before the update. A concurrent update of the same
// row makes this one wait for it and then re-check the version on the
// row it left, so of several updates from one version exactly one wins.
const updateServingSQL = `WITH u AS (
		UPDATE serving_endpoints SET spec = $3, version = version + 1, updated_at = $4
		WHERE name = $1 AND version = $2 RETURNING 1)
	SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM serving_endpoints WHERE name = $1)`

// UpdateServingEndpoint replaces the spec of e.Name if its stored version
// is still e.Version, and stores it as e.Version+1 with UpdatedAt =
// e.UpdatedAt; the id, creator and creation time stay. It returns
// sluice.ErrNotFound for an unknown name and sluice.ErrConflict if the
// version moved on.
func (s *Store) UpdateServingEndpoint(ctx context.Context, e sluice.ServingEndpointRecord) error {
	var updated, exists bool
	err := s.pool.QueryRow(ctx, updateServingSQL, cleanText(e.Name), e.Version, spec(e.Spec), e.UpdatedAt).Scan(&updated, &exists)
	switch {
	case err != nil:
		return fmt.Errorf("postgres: update serving endpoint %q: %w", e.Name, err)
	case updated:
		return nil
	case !exists:
		return fmt.Errorf("postgres: update serving endpoint %q: %w", e.Name, sluice.ErrNotFound)
	}
	return fmt.Errorf("postgres: update serving endpoint %q: version %d is stale: %w", e.Name, e.Version, sluice.ErrConflict)
}

// DeleteServingEndpoint removes the named endpoint, or returns
// sluice.ErrNotFound.
func (s *Store) DeleteServingEndpoint(ctx context.Context, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM serving_endpoints WHERE name = $1`, cleanText(name))
	if err != nil {
		return fmt.Errorf("postgres: delete serving endpoint %q: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete serving endpoint %q: %w", name, sluice.ErrNotFound)
	}
	return nil
}

// spec is b as a bytea argument: never NULL, even for an empty spec.
func spec(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func scanServing(row pgx.CollectableRow) (sluice.ServingEndpointRecord, error) {
	var e sluice.ServingEndpointRecord
	if err := row.Scan(&e.Name, &e.ID, &e.Creator, &e.Spec, &e.Version, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return sluice.ServingEndpointRecord{}, err
	}
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return e, nil
}
