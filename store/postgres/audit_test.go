package postgres

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
	"github.com/sluice-gateway/sluice/audit/audittest"
	"github.com/sluice-gateway/sluice/store/storetest"
)

func TestAuditStore(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audit.Store {
		return openTest(t, storetest.PostgresDSN(t))
	})
}

func TestAuditTamperingIsDetected(t *testing.T) {
	ctx := context.Background()
	st := openTest(t, storetest.PostgresDSN(t))
	chain := audit.NewChain(st, audit.ChainOptions{})
	for i := range 4 {
		if _, err := chain.Append(ctx, audit.Record{Kind: audit.KindRequest, RequestID: string(rune('a' + i)), Class: "restricted"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.pool.Exec(ctx, `UPDATE audit SET class = 'public' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyStore(ctx, st); err == nil {
		t.Fatal("an edited record verified")
	}
}

func TestKeyNetworkFields(t *testing.T) {
	ctx := context.Background()
	st := openTest(t, storetest.PostgresDSN(t))
	k := sluice.Key{ID: "netkey", Team: "t", CreatedAt: time.Unix(1, 0).UTC(), ClassFloor: "confidential",
		SourceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}}
	if err := st.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateKey(ctx, sluice.Key{ID: "plain", Team: "t", CreatedAt: time.Unix(2, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	ks, err := st.Keys(ctx)
	if err != nil || len(ks) != 2 {
		t.Fatalf("Keys = %d, %v", len(ks), err)
	}
	if !slices.Equal(ks[0].SourceCIDRs, k.SourceCIDRs) || ks[0].ClassFloor != "confidential" {
		t.Errorf("key read back: source %v floor %q", ks[0].SourceCIDRs, ks[0].ClassFloor)
	}
	if ks[1].SourceCIDRs != nil || ks[1].ClassFloor != "" {
		t.Errorf("unrestricted key read back as %v %q", ks[1].SourceCIDRs, ks[1].ClassFloor)
	}
}
