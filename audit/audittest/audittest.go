// Package audittest is the conformance suite for audit.Store
// implementations. Each implementation's tests call Run:
//
//	func TestAuditStore(t *testing.T) {
//		audittest.Run(t, func(t *testing.T) audit.Store { return openEmptyStore(t) })
//	}
package audittest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
	"github.com/sluice-gateway/sluice/audit"
)

// Run checks the audit.Store contract. open must return an empty store,
// cleaned up when the test ends; it is called once per subtest.
func Run(t *testing.T, open func(t *testing.T) audit.Store) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, open(t)) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("ConflictIsAtomic", func(t *testing.T) { testConflict(t, open(t)) })
	t.Run("Query", func(t *testing.T) { testQuery(t, open(t)) })
	t.Run("ConcurrentChains", func(t *testing.T) { testConcurrentChains(t, open(t)) })
	t.Run("VerifyManyPages", func(t *testing.T) { testManyPages(t, open(t)) })
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func testEmpty(t *testing.T, s audit.Store) {
	ctx := context.Background()
	if _, err := s.LastAudit(ctx); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("LastAudit on an empty store = %v, want ErrNotFound", err)
	}
	recs, err := s.Audit(ctx, audit.Query{})
	if err != nil || len(recs) != 0 {
		t.Errorf("Audit on an empty store = %d records, %v", len(recs), err)
	}
	if err := s.AppendAudit(ctx, nil); err != nil {
		t.Errorf("AppendAudit(nil) = %v", err)
	}
}

// full is a record with every field set, in awkward ways.
func full(i int) audit.Record {
	return audit.Record{
		Time:         base.Add(time.Duration(i)*time.Second + 123456789*time.Nanosecond).In(time.FixedZone("X", 5*3600)),
		Kind:         audit.KindRequest,
		RequestID:    fmt.Sprintf("req-%d", i),
		KeyID:        "key \"quoted\"\nnew line",
		Team:         "équipe ☃",
		Endpoint:     strings.Repeat("e", 3000),
		Class:        "confidential",
		ClassReasons: []string{"email", "", "card number"},
		Candidates:   []string{},
		Upstream:     "azure-eu",
		EgressClass:  "private",
		DialedAddr:   "127.0.0.1:443",
		ClientAddr:   "[::1]:5000",
		Decision:     "allowed",
		Reason:       "",
	}
}

func testRoundTrip(t *testing.T, s audit.Store) {
	ctx := context.Background()
	chain := audit.NewChain(s, audit.ChainOptions{})
	var want []audit.Record
	for i := range 3 {
		r := full(i)
		if i == 1 {
			r.ClassReasons, r.Candidates = nil, []string{"a"}
		}
		sealed, err := chain.Append(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, sealed...)
	}
	got, err := s.Audit(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Audit returned %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if d := diff(got[i], want[i]); d != "" {
			t.Errorf("record %d read back differs: %s", want[i].Seq, d)
		}
	}
	if err := audit.Verify(slices.Values(got), [32]byte{}); err != nil {
		t.Errorf("records read back do not verify: %v", err)
	}
	last, err := s.LastAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(last, want[len(want)-1]); d != "" {
		t.Errorf("LastAudit differs: %s", d)
	}
}

// diff describes how a differs from b, treating nil and empty lists alike.
func diff(a, b audit.Record) string {
	var d []string
	if !a.Time.Equal(b.Time) {
		d = append(d, fmt.Sprintf("Time %v != %v", a.Time, b.Time))
	}
	if !slices.Equal(a.ClassReasons, b.ClassReasons) {
		d = append(d, fmt.Sprintf("ClassReasons %q != %q", a.ClassReasons, b.ClassReasons))
	}
	if !slices.Equal(a.Candidates, b.Candidates) {
		d = append(d, fmt.Sprintf("Candidates %q != %q", a.Candidates, b.Candidates))
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	a.ClassReasons, b.ClassReasons, a.Candidates, b.Candidates = nil, nil, nil, nil
	if !equalRest(a, b) {
		d = append(d, fmt.Sprintf("%+v != %+v", a, b))
	}
	return strings.Join(d, "; ")
}

func equalRest(a, b audit.Record) bool {
	type flat struct {
		seq                                                                    int64
		kind, req, key, team, endpoint, class, up, egress, dialed, client, dec string
		reason                                                                 string
		prev, hash                                                             [32]byte
	}
	f := func(r audit.Record) flat {
		return flat{r.Seq, r.Kind, r.RequestID, r.KeyID, r.Team, r.Endpoint, r.Class, r.Upstream, r.EgressClass,
			r.DialedAddr, r.ClientAddr, r.Decision, r.Reason, r.PrevHash, r.Hash}
	}
	return f(a) == f(b)
}

func testConflict(t *testing.T, s audit.Store) {
	ctx := context.Background()
	sealed, err := audit.NewChain(s, audit.ChainOptions{}).Append(ctx, full(0), full(1), full(2))
	if err != nil {
		t.Fatal(err)
	}
	// Another writer's batch that starts at an existing Seq.
	dup, next := full(3), full(4)
	dup.Seq = 3
	dup.Seal(sealed[1].Hash)
	next.Seq = 4
	next.Seal(dup.Hash)
	err = s.AppendAudit(ctx, []audit.Record{dup, next})
	if !errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("AppendAudit with an existing Seq = %v, want ErrConflict", err)
	}
	got, err := s.Audit(ctx, audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].RequestID != sealed[2].RequestID {
		t.Fatalf("after a conflicting append the store holds %d records (last %q), want the 3 original", len(got), got[len(got)-1].RequestID)
	}
	if last, err := s.LastAudit(ctx); err != nil || last.Seq != 3 {
		t.Errorf("LastAudit = Seq %d, %v; want 3", last.Seq, err)
	}
}

func testQuery(t *testing.T, s audit.Store) {
	ctx := context.Background()
	kinds := []string{audit.KindRequest, audit.KindConnectionRefused, audit.KindRequestRefused}
	var recs []audit.Record
	for i := range 12 {
		recs = append(recs, audit.Record{
			Time:  base.Add(time.Duration(i) * time.Minute),
			Kind:  kinds[i%3],
			KeyID: fmt.Sprintf("k%d", i%2),
			Team:  fmt.Sprintf("t%d", i%4),
		})
	}
	if _, err := audit.NewChain(s, audit.ChainOptions{}).Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	seqs := func(pred func(i int) bool) []int64 {
		var out []int64
		for i := range recs {
			if pred(i) {
				out = append(out, int64(i+1))
			}
		}
		return out
	}
	tests := []struct {
		name string
		q    audit.Query
		want []int64
	}{
		{"all", audit.Query{}, seqs(func(int) bool { return true })},
		{"after seq", audit.Query{AfterSeq: 9}, []int64{10, 11, 12}},
		{"limit", audit.Query{Limit: 2}, []int64{1, 2}},
		{"after seq and limit", audit.Query{AfterSeq: 4, Limit: 3}, []int64{5, 6, 7}},
		{"from inclusive, to exclusive", audit.Query{From: base.Add(2 * time.Minute), To: base.Add(5 * time.Minute)}, []int64{3, 4, 5}},
		{"from in another zone", audit.Query{From: base.Add(10 * time.Minute).In(time.FixedZone("Y", -7*3600))}, []int64{11, 12}},
		{"kind", audit.Query{Kind: audit.KindConnectionRefused}, seqs(func(i int) bool { return i%3 == 1 })},
		{"key", audit.Query{KeyID: "k1"}, seqs(func(i int) bool { return i%2 == 1 })},
		{"team", audit.Query{Team: "t2"}, seqs(func(i int) bool { return i%4 == 2 })},
		{"kind and key and limit", audit.Query{Kind: audit.KindRequest, KeyID: "k0", Limit: 1}, []int64{1}},
		{"nothing", audit.Query{Team: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Audit(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var gotSeqs []int64
			for _, r := range got {
				gotSeqs = append(gotSeqs, r.Seq)
			}
			if !slices.Equal(gotSeqs, tt.want) {
				t.Errorf("Audit(%+v) = Seqs %v, want %v", tt.q, gotSeqs, tt.want)
			}
		})
	}
}

// testConcurrentChains has two Chains (two replicas) append to one store at
// once; conflicts must be resolved, leaving one intact chain.
func testConcurrentChains(t *testing.T, s audit.Store) {
	ctx := context.Background()
	chains := []*audit.Chain{audit.NewChain(s, audit.ChainOptions{}), audit.NewChain(s, audit.ChainOptions{})}
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := chains[w%2].Append(ctx, audit.Record{Kind: audit.KindRequest, RequestID: fmt.Sprintf("%d-%d", w, i)}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Append: %v", err)
	}
	last, err := audit.VerifyStore(ctx, s)
	if err != nil {
		t.Fatalf("chain written by two Chains does not verify: %v", err)
	}
	if last.Seq != writers*each {
		t.Errorf("chain has %d records, want %d", last.Seq, writers*each)
	}
}

func testManyPages(t *testing.T, s audit.Store) {
	ctx := context.Background()
	recs := make([]audit.Record, 2100)
	for i := range recs {
		recs[i] = audit.Record{Time: base, Kind: audit.KindConnectionRefused, ClientAddr: fmt.Sprintf("127.0.0.2:%d", i)}
	}
	chain := audit.NewChain(s, audit.ChainOptions{})
	for part := range slices.Chunk(recs, 700) {
		if _, err := chain.Append(ctx, part...); err != nil {
			t.Fatal(err)
		}
	}
	last, err := audit.VerifyStore(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if seq, hash := chain.Head(); last.Seq != seq || last.Hash != hash {
		t.Errorf("VerifyStore ended at %d, chain head is %d", last.Seq, seq)
	}
}
