package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sluice-gateway/sluice"
)

var _ sluice.TeamStore = (*Store)(nil)

const teamColumns = `name, description, class_floor, created_at`

// maxListedKeys bounds the key ids a refused DeleteTeam names.
const maxListedKeys = 5

// CreateTeam validates and stores t, or returns sluice.ErrConflict if a
// team with its name exists.
func (s *Store) CreateTeam(ctx context.Context, t sluice.Team) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("postgres: create team: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO teams (`+teamColumns+`) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO NOTHING`, t.Name, t.Description, t.ClassFloor, t.CreatedAt)
	if err != nil {
		return fmt.Errorf("postgres: create team %q: %w", t.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create team %q: %w", t.Name, sluice.ErrConflict)
	}
	return nil
}

// Team returns the team with the given name, or sluice.ErrNotFound.
func (s *Store) Team(ctx context.Context, name string) (sluice.Team, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+teamColumns+` FROM teams WHERE name = $1`, cleanText(name))
	t, err := pgx.CollectExactlyOneRow(rows, scanTeam)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("postgres: team %q: %w", name, sluice.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("postgres: team %q: %w", name, err)
	}
	return t, nil
}

// Teams lists every team ordered by name.
func (s *Store) Teams(ctx context.Context) ([]sluice.Team, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+teamColumns+` FROM teams ORDER BY name`)
	ts, err := pgx.CollectRows(rows, scanTeam)
	if err != nil {
		return nil, fmt.Errorf("postgres: teams: %w", err)
	}
	return ts, nil
}

// DeleteTeam deletes the team unless one of its keys is active at now.
// It holds a SHARE lock on the keys table while it looks, which waits for
// key writes in progress and holds off new ones (CreateKey among them)
// until it commits, so no key can join the team unseen.
func (s *Store) DeleteTeam(ctx context.Context, name string, now time.Time) error {
	name = cleanText(name)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE keys IN SHARE MODE`); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM teams WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return sluice.ErrNotFound
		}
		inUse := &sluice.TeamInUseError{Team: name}
		rows, _ := tx.Query(ctx, `SELECT id, count(*) OVER () FROM keys
			WHERE team = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)
			ORDER BY id LIMIT $3`, name, now, maxListedKeys)
		var id string
		var count int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &count}, func() error {
			inUse.ActiveKeys = append(inUse.ActiveKeys, id)
			inUse.Count = int(count)
			return nil
		}); err != nil {
			return err
		}
		if inUse.Count > 0 {
			return inUse
		}
		return nil
	})
	var inUse *sluice.TeamInUseError
	switch {
	case errors.As(err, &inUse):
		return err
	case err != nil:
		return fmt.Errorf("postgres: delete team %q: %w", name, err)
	}
	return nil
}

func scanTeam(row pgx.CollectableRow) (sluice.Team, error) {
	var t sluice.Team
	err := row.Scan(&t.Name, &t.Description, &t.ClassFloor, &t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return t, err
}
