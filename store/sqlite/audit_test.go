package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/audit/audittest"
)

func TestAuditStore(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audit.Store {
		return openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	})
}

// TestAuditTamperingIsDetected edits and deletes rows behind the store's
// back, as someone with write access to the file could, and checks that
// verification names the record.
func TestAuditTamperingIsDetected(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	st := openTest(t, path, Options{})
	chain := audit.NewChain(st, audit.ChainOptions{})
	for i := range 5 {
		if _, err := chain.Append(ctx, audit.Record{Kind: audit.KindRequest, RequestID: string(rune('a' + i)),
			Class: "confidential", Upstream: "private-llm", EgressClass: "private", DialedAddr: "10.0.0.7:443"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := audit.VerifyStore(ctx, st); err != nil {
		t.Fatalf("untouched chain: %v", err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	exec(`UPDATE audit SET egress_class = 'public', dialed_addr = '203.0.113.9:443' WHERE seq = 3`)
	_, err = audit.VerifyStore(ctx, st)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Seq != 3 || !errors.Is(err, audit.ErrEdited) {
		t.Fatalf("after editing record 3: %v", err)
	}
	exec(`UPDATE audit SET egress_class = 'private', dialed_addr = '10.0.0.7:443' WHERE seq = 3`)
	if _, err := audit.VerifyStore(ctx, st); err != nil {
		t.Fatalf("after restoring record 3: %v", err)
	}

	exec(`DELETE FROM audit WHERE seq = 2`)
	if _, err := audit.VerifyStore(ctx, st); !errors.As(err, &ve) || ve.Seq != 3 || !errors.Is(err, audit.ErrMissing) {
		t.Fatalf("after deleting record 2: %v", err)
	}
}

func TestAuditRefusesGaps(t *testing.T) {
	ctx := context.Background()
	st := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	r := audit.Record{Seq: 2, Time: time.Now(), Kind: audit.KindRequest}
	r.Seal([32]byte{1})
	if err := st.AppendAudit(ctx, []audit.Record{r}); err == nil || errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("AppendAudit leaving a gap = %v, want a non-conflict error", err)
	}
	if _, err := st.LastAudit(ctx); !errors.Is(err, sluice.ErrNotFound) {
		t.Fatalf("the gap record was stored: %v", err)
	}
}

func TestKeyNetworkFields(t *testing.T) {
	ctx := context.Background()
	st := openTest(t, filepath.Join(t.TempDir(), "ledger.db"), Options{})
	k := sluice.Key{ID: "netkey", Team: "t", CreatedAt: time.Unix(1, 0).UTC(), ClassFloor: "confidential",
		SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("127.0.0.2/32")}}
	plain := sluice.Key{ID: "plain", Team: "t", CreatedAt: time.Unix(2, 0).UTC()}
	for _, key := range []sluice.Key{k, plain} {
		if err := st.CreateKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Key(ctx, "netkey")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.SourceCIDRs, k.SourceCIDRs) || got.ClassFloor != "confidential" {
		t.Errorf("key read back: source %v floor %q, want %v %q", got.SourceCIDRs, got.ClassFloor, k.SourceCIDRs, k.ClassFloor)
	}
	ks, err := st.Keys(ctx)
	if err != nil || len(ks) != 2 {
		t.Fatalf("Keys = %d, %v", len(ks), err)
	}
	if ks[1].SourceCIDRs != nil || ks[1].ClassFloor != "" {
		t.Errorf("unrestricted key read back as %v %q", ks[1].SourceCIDRs, ks[1].ClassFloor)
	}
}
