package sluice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Teams sit between the organisation (one Sluice deployment) and its keys:
// every key belongs to one team, and usage, budgets and rate limits are
// charged to it. Keys refer to their team by name; creating a key for a
// team that does not exist creates the team, so a team is never missing
// for a key that names it.

// ErrTeamInUse means a team still has active keys and cannot be deleted.
var ErrTeamInUse = errors.New("team has active keys")

// Team is a group of keys that is charged for their usage.
type Team struct {
	Name        string // unique; keys name it in Key.Team
	Description string
	// ClassFloor is the lowest data class of every request made with the
	// team's keys (empty: the lowest class).
	ClassFloor string
	CreatedAt  time.Time
}

// Validate reports what is wrong with t, if anything. A name is 1 to 200
// bytes of UTF-8 without control characters, without "/" (which separates
// team and endpoint in a ScopeTeamEndpoint budget) and without leading or
// trailing spaces.
func (t *Team) Validate() error {
	var errs []error
	switch {
	case t.Name == "" || len(t.Name) > 200:
		errs = append(errs, errors.New("name must be 1 to 200 bytes"))
	case !storable(t.Name) || strings.ContainsFunc(t.Name, unicode.IsControl):
		errs = append(errs, errors.New("name must be UTF-8 without control characters"))
	case strings.Contains(t.Name, "/"):
		errs = append(errs, errors.New(`name must not contain "/"`))
	case strings.TrimSpace(t.Name) != t.Name:
		errs = append(errs, errors.New("name must not start or end with a space"))
	}
	if len(t.Description) > 4096 || !storable(t.Description) {
		errs = append(errs, errors.New("description must be at most 4096 bytes of UTF-8 without NUL"))
	}
	if !storable(t.ClassFloor) {
		errs = append(errs, errors.New("class floor must be UTF-8 without NUL"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("team %q: %w", t.Name, err)
	}
	return nil
}

// TeamStore keeps teams.
type TeamStore interface {
	// CreateTeam validates and stores t. It returns ErrConflict if a team
	// with t.Name exists (one a key created implicitly included).
	CreateTeam(ctx context.Context, t Team) error
	// Team returns the team with the given name, or ErrNotFound.
	Team(ctx context.Context, name string) (Team, error)
	// Teams lists every team ordered by name (byte order).
	Teams(ctx context.Context) ([]Team, error)
	// DeleteTeam deletes the team with the given name. It returns
	// ErrNotFound for an unknown name, and an error matching ErrTeamInUse
	// while a key of the team is active at now; revoked and expired keys
	// keep naming the deleted team.
	DeleteTeam(ctx context.Context, name string, now time.Time) error
}

// TeamInUseError refuses to delete a team that has active keys. It
// matches ErrTeamInUse.
type TeamInUseError struct {
	Team       string
	ActiveKeys []string // ids of (some of) the active keys, sorted
	Count      int      // how many keys are active
}

func (e *TeamInUseError) Error() string {
	ids := strings.Join(e.ActiveKeys, ", ")
	if len(e.ActiveKeys) < e.Count {
		ids += ", …"
	}
	return fmt.Sprintf("team %q has %d active key(s) (%s); revoke them before deleting the team", e.Team, e.Count, ids)
}

// Is makes errors.Is(err, ErrTeamInUse) true.
func (e *TeamInUseError) Is(target error) bool { return target == ErrTeamInUse }
