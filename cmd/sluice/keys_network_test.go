package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-gateway/sluice/store/sqlite"
)

func TestKeysCreateNetworkFlags(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "sluice.db")
	cfg := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte("ledger: {dsn: "+db+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, bad := range [][]string{
		{"--source-cidrs", "10.0.0.0/33"},
		{"--class-floor", "top-secret"},
	} {
		if err := runKeys(ctx, append([]string{"create", "--config", cfg, "--team", "t"}, bad...)); err == nil {
			t.Errorf("keys create %v accepted", bad)
		}
	}
	if err := runKeys(ctx, []string{"create", "--config", cfg, "--team", "finance",
		"--source-cidrs", "10.20.0.0/16, 192.0.2.7", "--class-floor", "Confidential"}); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ks, err := st.Keys(ctx)
	if err != nil || len(ks) != 1 {
		t.Fatalf("keys: %d, %v", len(ks), err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("192.0.2.7/32")}
	if k := ks[0]; !slices.Equal(k.SourceCIDRs, want) || k.ClassFloor != "confidential" {
		t.Errorf("stored key: source %v, floor %q", k.SourceCIDRs, k.ClassFloor)
	}
}
