package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
		return fmt.Errorf("sqlite: create team: %w", err)
	}
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO teams (`+teamColumns+`) VALUES (?, ?, ?, ?)
			ON CONFLICT (name) DO NOTHING`, t.Name, t.Description, t.ClassFloor, micros(t.CreatedAt))
		if err != nil {
			return fmt.Errorf("sqlite: create team %q: %w", t.Name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create team %q: %w", t.Name, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: create team %q: %w", t.Name, sluice.ErrConflict)
		}
		return nil
	})
}

// ensureTeam creates the team a new key names, if it does not exist.
func ensureTeam(ctx context.Context, tx *sql.Tx, name string, at time.Time) error {
	if name == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO teams (`+teamColumns+`) VALUES (?, '', '', ?)
		ON CONFLICT (name) DO NOTHING`, name, micros(at))
	return err
}

// Team returns the team with the given name, or sluice.ErrNotFound.
func (s *Store) Team(ctx context.Context, name string) (sluice.Team, error) {
	t, err := scanTeam(s.reader.QueryRowContext(ctx, `SELECT `+teamColumns+` FROM teams WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("sqlite: team %q: %w", name, sluice.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("sqlite: team %q: %w", name, err)
	}
	return t, nil
}

// Teams lists every team ordered by name.
func (s *Store) Teams(ctx context.Context) ([]sluice.Team, error) {
	rows, err := s.reader.QueryContext(ctx, `SELECT `+teamColumns+` FROM teams ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: teams: %w", err)
	}
	defer rows.Close()
	var out []sluice.Team
	for rows.Next() {
		t, err := scanTeam(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: teams: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: teams: %w", err)
	}
	return out, nil
}

// DeleteTeam deletes the team unless one of its keys is active at now.
// Writes are serialised, so no key can be created for the team between the
// check and the delete.
func (s *Store) DeleteTeam(ctx context.Context, name string, now time.Time) error {
	return s.write(ctx, 1, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM teams WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("sqlite: delete team %q: %w", name, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: delete team %q: %w", name, err)
		} else if n == 0 {
			return fmt.Errorf("sqlite: delete team %q: %w", name, sluice.ErrNotFound)
		}
		inUse := &sluice.TeamInUseError{Team: name}
		rows, err := tx.QueryContext(ctx, `SELECT id, count(*) OVER () FROM keys
			WHERE team = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
			ORDER BY id LIMIT ?`, name, micros(now), maxListedKeys)
		if err != nil {
			return fmt.Errorf("sqlite: delete team %q: %w", name, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id, &inUse.Count); err != nil {
				rows.Close()
				return fmt.Errorf("sqlite: delete team %q: %w", name, err)
			}
			inUse.ActiveKeys = append(inUse.ActiveKeys, id)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("sqlite: delete team %q: %w", name, err)
		}
		if inUse.Count > 0 {
			return inUse
		}
		return nil
	})
}

func scanTeam(row interface{ Scan(...any) error }) (sluice.Team, error) {
	var t sluice.Team
	var created int64
	err := row.Scan(&t.Name, &t.Description, &t.ClassFloor, &created)
	t.CreatedAt = fromMicros(created)
	return t, err
}
