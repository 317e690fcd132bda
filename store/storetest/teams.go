package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

// TeamStore is what the team conformance suite needs of a store: teams and
// the keys that name them.
type TeamStore interface {
	sluice.KeyStore
	sluice.TeamStore
}

// RunTeams runs the team conformance suite. open must return a new, empty
// store for each call and arrange for it to be closed when t ends.
func RunTeams(t *testing.T, open func(t *testing.T) TeamStore) {
	t.Run("CRUD", func(t *testing.T) { testTeamCRUD(t, open(t)) })
	t.Run("Validation", func(t *testing.T) { testTeamValidation(t, open(t)) })
	t.Run("CreatedWithKey", func(t *testing.T) { testTeamCreatedWithKey(t, open(t)) })
	t.Run("DeleteRefusedWhileKeysActive", func(t *testing.T) { testDeleteTeamInUse(t, open(t)) })
	t.Run("DeleteRacesCreateKey", func(t *testing.T) { testDeleteTeamRace(t, open(t)) })
}

func mustCreateTeam(t *testing.T, st TeamStore, tm sluice.Team) {
	t.Helper()
	if err := st.CreateTeam(context.Background(), tm); err != nil {
		t.Fatalf("CreateTeam(%s): %v", tm.Name, err)
	}
}

func teamNames(t *testing.T, st TeamStore) []string {
	t.Helper()
	ts, err := st.Teams(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tm := range ts {
		names = append(names, tm.Name)
	}
	return names
}

func assertTeam(t *testing.T, st TeamStore, want sluice.Team) {
	t.Helper()
	got, err := st.Team(context.Background(), want.Name)
	if err != nil {
		t.Fatalf("Team(%s): %v", want.Name, err)
	}
	want.CreatedAt = want.CreatedAt.UTC().Truncate(time.Microsecond)
	if !sameTime(got.CreatedAt, want.CreatedAt) {
		t.Errorf("team %s CreatedAt = %v, want %v in UTC", want.Name, got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("team mismatch\n got %+v\nwant %+v", got, want)
	}
}

func testTeamCRUD(t *testing.T, st TeamStore) {
	ctx := context.Background()
	if ts, err := st.Teams(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("Teams on an empty store = %v, %v", ts, err)
	}
	full := sluice.Team{
		Name: "research", Description: "Applied research — évaluations",
		ClassFloor: "confidential", CreatedAt: base.Add(1234567 * time.Nanosecond).In(plus5),
	}
	mustCreateTeam(t, st, full)
	assertTeam(t, st, full)
	// Listed in byte order, not a locale's.
	for _, n := range []string{"alpha", "Beta", "_ops", "zoë"} {
		mustCreateTeam(t, st, sluice.Team{Name: n, CreatedAt: base})
	}
	if got, want := teamNames(t, st), []string{"Beta", "_ops", "alpha", "research", "zoë"}; !slices.Equal(got, want) {
		t.Errorf("Teams = %q, want %q", got, want)
	}
	again := full
	again.Description = "second"
	if err := st.CreateTeam(ctx, again); !errors.Is(err, sluice.ErrConflict) {
		t.Errorf("CreateTeam of an existing name: %v, want ErrConflict", err)
	}
	assertTeam(t, st, full)
	if _, err := st.Team(ctx, "missing"); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("Team(missing): %v, want ErrNotFound", err)
	}
	if err := st.DeleteTeam(ctx, "missing", base); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("DeleteTeam(missing): %v, want ErrNotFound", err)
	}
	if err := st.DeleteTeam(ctx, "alpha", base); err != nil {
		t.Fatalf("DeleteTeam(alpha): %v", err)
	}
	if _, err := st.Team(ctx, "alpha"); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("Team after delete: %v, want ErrNotFound", err)
	}
	// The name is free again.
	mustCreateTeam(t, st, sluice.Team{Name: "alpha", Description: "again", CreatedAt: base})
	assertTeam(t, st, sluice.Team{Name: "alpha", Description: "again", CreatedAt: base})
}

func testTeamValidation(t *testing.T, st TeamStore) {
	for _, tm := range []sluice.Team{
		{Name: ""},
		{Name: "a/b"},
		{Name: "tab\there"},
		{Name: " padded"},
		{Name: "bad\xffutf8"},
		{Name: strings.Repeat("x", 201)},
		{Name: "ok", Description: "nul\x00"},
	} {
		if err := st.CreateTeam(context.Background(), tm); err == nil || errors.Is(err, sluice.ErrConflict) {
			t.Errorf("CreateTeam(%q, %q) = %v, want a validation error", tm.Name, tm.Description, err)
		}
	}
	if names := teamNames(t, st); len(names) != 0 {
		t.Errorf("invalid teams stored: %q", names)
	}
}

func teamKey(id, team string, created time.Time) sluice.Key {
	return sluice.Key{ID: id, Hash: sha256.Sum256([]byte(id)), Name: id, Team: team, CreatedAt: created}
}

func testTeamCreatedWithKey(t *testing.T, st TeamStore) {
	ctx := context.Background()
	mustCreateTeam(t, st, sluice.Team{Name: "platform", Description: "kept", ClassFloor: "internal", CreatedAt: base})

	mustCreateKey(t, st, teamKey("k1", "newteam", base.Add(time.Hour)))
	mustCreateKey(t, st, teamKey("k2", "newteam", base.Add(2*time.Hour)))
	mustCreateKey(t, st, teamKey("k3", "platform", base.Add(3*time.Hour)))
	mustCreateKey(t, st, teamKey("k4", "", base)) // no team: no team row
	// A key that conflicts creates nothing.
	if err := st.CreateKey(ctx, teamKey("k1", "ghost", base)); !errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("duplicate key: %v, want ErrConflict", err)
	}

	if got, want := teamNames(t, st), []string{"newteam", "platform"}; !slices.Equal(got, want) {
		t.Fatalf("Teams = %q, want %q", got, want)
	}
	// Created with the first key, empty; an existing team is left alone.
	assertTeam(t, st, sluice.Team{Name: "newteam", CreatedAt: base.Add(time.Hour)})
	assertTeam(t, st, sluice.Team{Name: "platform", Description: "kept", ClassFloor: "internal", CreatedAt: base})
	if err := st.CreateTeam(ctx, sluice.Team{Name: "newteam", CreatedAt: base}); !errors.Is(err, sluice.ErrConflict) {
		t.Errorf("CreateTeam of a team a key created: %v, want ErrConflict", err)
	}
}

func testDeleteTeamInUse(t *testing.T, st TeamStore) {
	ctx := context.Background()
	now := base.Add(24 * time.Hour)
	mustCreateKey(t, st, teamKey("k_active", "ml", base))
	mustCreateKey(t, st, teamKey("k_active2", "ml", base))
	expiring := teamKey("k_expiring", "ml", base)
	expiring.ExpiresAt = now // expired at now exactly
	mustCreateKey(t, st, expiring)
	mustCreateKey(t, st, teamKey("k_other", "other", base))

	err := st.DeleteTeam(ctx, "ml", now)
	var inUse *sluice.TeamInUseError
	if !errors.Is(err, sluice.ErrTeamInUse) || !errors.As(err, &inUse) {
		t.Fatalf("DeleteTeam with active keys: %v, want a *TeamInUseError", err)
	}
	if inUse.Count != 2 || !slices.Equal(inUse.ActiveKeys, []string{"k_active", "k_active2"}) {
		t.Errorf("TeamInUseError = %+v, want the two active keys", inUse)
	}
	if !strings.Contains(err.Error(), "k_active") || !strings.Contains(err.Error(), "revoke") {
		t.Errorf("error %q does not say which keys to revoke", err)
	}
	if _, err := st.Team(ctx, "ml"); err != nil {
		t.Fatalf("refused delete removed the team: %v", err)
	}

	for _, id := range []string{"k_active", "k_active2"} {
		if err := st.RevokeKey(ctx, id, now.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteTeam(ctx, "ml", now); err != nil {
		t.Fatalf("DeleteTeam with revoked and expired keys: %v", err)
	}
	if got, want := teamNames(t, st), []string{"other"}; !slices.Equal(got, want) {
		t.Errorf("Teams = %q, want %q", got, want)
	}
	// Inactive keys keep naming the deleted team.
	if k, err := st.Key(ctx, "k_expiring"); err != nil || k.Team != "ml" {
		t.Errorf("key of a deleted team = %+v, %v", k, err)
	}
	// A new key brings the team back.
	mustCreateKey(t, st, teamKey("k_new", "ml", now))
	assertTeam(t, st, sluice.Team{Name: "ml", CreatedAt: now})
}

// testDeleteTeamRace runs key creations against deletions of the same
// team: whatever wins, no active key may be left without its team.
func testDeleteTeamRace(t *testing.T, st TeamStore) {
	ctx := context.Background()
	const rounds = 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for i := range rounds {
		team := fmt.Sprintf("race-%02d", i)
		mustCreateTeam(t, st, sluice.Team{Name: team, CreatedAt: base})
		wg.Go(func() {
			if err := st.CreateKey(ctx, teamKey("k-"+team, team, base)); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			if err := st.DeleteTeam(ctx, team, base); err != nil && !errors.Is(err, sluice.ErrTeamInUse) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ks, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != rounds {
		t.Fatalf("%d keys, want %d", len(ks), rounds)
	}
	for _, k := range ks {
		if _, err := st.Team(ctx, k.Team); err != nil {
			t.Errorf("active key %s names team %q, which is gone: %v", k.ID, k.Team, err)
		}
	}
}
