package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/store/sqlite"
)

// captureStdout runs fn and returns what it printed.
func captureStdout(t *testing.T, fn func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	err = fn()
	os.Stdout = old
	w.Close()
	return <-done, err
}

func TestTeamsCommand(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "sluice.db")
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("ledger: {dsn: "+db+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run := func(args ...string) (string, error) {
		full := append([]string{args[0], "--config", cfg}, args[1:]...)
		return captureStdout(t, func() error { return runTeams(ctx, full) })
	}
	if _, err := run("create", "ml", "--description", "Machine learning", "--class-floor", "Confidential"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("create", "ml"); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("duplicate create: %v", err)
	}
	for _, bad := range [][]string{{"create"}, {"create", "a/b"}, {"create", "x", "--class-floor", "top-secret"}, {"delete"}, {"list", "extra"}, {"rename", "x"}} {
		if _, err := run(bad...); err == nil {
			t.Errorf("teams %v accepted", bad)
		}
	}
	for _, team := range []string{"ml", "implicit"} {
		if _, err := captureStdout(t, func() error { return runKeys(ctx, []string{"create", "--config", cfg, "--team", team}) }); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run("list")
	if err != nil || !strings.Contains(out, "implicit") || !strings.Contains(out, "Machine learning") || !strings.Contains(out, "confidential") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = run("list", "--format", "json")
	if err != nil || strings.Count(out, `"active_keys": 1`) != 2 {
		t.Fatalf("list json: %v\n%s", err, out)
	}
	if _, err := run("delete", "ml"); !errors.Is(err, sluice.ErrTeamInUse) {
		t.Errorf("delete with an active key: %v", err)
	}
	if _, err := run("delete", "nosuch"); err == nil || !strings.Contains(err.Error(), "no team") {
		t.Errorf("delete unknown: %v", err)
	}
	st, err := sqlite.Open(db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		if k.Team == "ml" {
			if err := st.RevokeKey(ctx, k.ID, k.CreatedAt); err != nil {
				t.Fatal(err)
			}
		}
	}
	st.Close()
	if _, err := run("delete", "ml"); err != nil {
		t.Fatalf("delete after revoking: %v", err)
	}
	if out, _ := run("list"); strings.Contains(out, "Machine learning") {
		t.Errorf("deleted team listed:\n%s", out)
	}
}
