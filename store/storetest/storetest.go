// Package storetest is the conformance suite every sluice.Store
// implementation must pass. A store's tests call Run with a function that
// opens a fresh, empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) sluice.Store {
//			st, err := sqlite.Open(filepath.Join(t.TempDir(), "ledger.db"), sqlite.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { st.Close() })
//			return st
//		})
//	}
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call and arrange for it to be closed when t ends.
func Run(t *testing.T, open func(t *testing.T) sluice.Store) {
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("Usage", func(t *testing.T) { testUsage(t, open) })
	t.Run("Report", func(t *testing.T) { testReport(t, open) })
}

// base is a fixed instant all test times derive from.
var base = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// plus5 is a zone where local and UTC dates differ for part of the day.
var plus5 = time.FixedZone("UTC+5", 5*3600)

func testKeys(t *testing.T, open func(t *testing.T) sluice.Store) {
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		st := open(t)
		k := sluice.Key{
			ID:        "k_full",
			Hash:      sha256.Sum256([]byte("secret")),
			Name:      "CI pipeline",
			Team:      "platform",
			Admin:     true,
			Endpoints: []string{"gpt-fast", "embed", "é-model"},
			// Given in another zone and with sub-microsecond digits: the
			// store returns UTC, kept to the microsecond.
			ExpiresAt: base.Add(90*24*time.Hour + 123456789*time.Nanosecond).In(plus5),
			CreatedAt: base.Add(987654321 * time.Nanosecond).In(plus5),
		}
		mustCreateKey(t, st, k)
		got, err := st.Key(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := k
		want.ExpiresAt = k.ExpiresAt.UTC().Truncate(time.Microsecond)
		want.CreatedAt = k.CreatedAt.UTC().Truncate(time.Microsecond)
		assertKey(t, got, want)
	})

	t.Run("Defaults", func(t *testing.T) {
		st := open(t)
		k := sluice.Key{ID: "k_min", Hash: sha256.Sum256([]byte("x")), Name: "n", Team: "t", CreatedAt: base}
		mustCreateKey(t, st, k)
		got, err := st.Key(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		assertKey(t, got, k)
		if got.Admin || !got.ExpiresAt.IsZero() || !got.RevokedAt.IsZero() || len(got.Endpoints) != 0 {
			t.Errorf("defaults not kept: %+v", got)
		}
		if !got.Active(base.Add(1000 * 24 * time.Hour)) {
			t.Error("key without expiry or revocation is not active")
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		st := open(t)
		k := sluice.Key{ID: "k_dup", Hash: sha256.Sum256([]byte("a")), Name: "first", Team: "t", CreatedAt: base}
		mustCreateKey(t, st, k)
		k2 := k
		k2.Name, k2.Hash = "second", sha256.Sum256([]byte("b"))
		if err := st.CreateKey(ctx, k2); !errors.Is(err, sluice.ErrConflict) {
			t.Fatalf("CreateKey duplicate: got %v, want ErrConflict", err)
		}
		got, err := st.Key(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		assertKey(t, got, k)
	})

	t.Run("NotFound", func(t *testing.T) {
		st := open(t)
		if _, err := st.Key(ctx, "missing"); !errors.Is(err, sluice.ErrNotFound) {
			t.Errorf("Key(missing): got %v, want ErrNotFound", err)
		}
		if err := st.RevokeKey(ctx, "missing", base); !errors.Is(err, sluice.ErrNotFound) {
			t.Errorf("RevokeKey(missing): got %v, want ErrNotFound", err)
		}
		ks, err := st.Keys(ctx)
		if err != nil || len(ks) != 0 {
			t.Errorf("Keys on empty store: %v, %v", ks, err)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		st := open(t)
		k := sluice.Key{ID: "k_rev", Hash: sha256.Sum256([]byte("r")), Name: "n", Team: "t", CreatedAt: base}
		mustCreateKey(t, st, k)
		first := base.Add(time.Hour + 7*time.Microsecond).In(plus5)
		if err := st.RevokeKey(ctx, k.ID, first); err != nil {
			t.Fatal(err)
		}
		if err := st.RevokeKey(ctx, k.ID, first.Add(time.Hour)); err != nil {
			t.Fatalf("revoking twice: %v", err)
		}
		got, err := st.Key(ctx, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.RevokedAt.Equal(first) || got.RevokedAt.Location() != time.UTC {
			t.Errorf("RevokedAt = %v, want the first revocation %v in UTC", got.RevokedAt, first.UTC())
		}
		if got.Active(base) {
			t.Error("revoked key is active")
		}
	})

	t.Run("ListOldestFirst", func(t *testing.T) {
		st := open(t)
		// Created out of order; one revoked, one expired.
		created := []time.Duration{3 * time.Hour, time.Hour, 2 * time.Hour, 0}
		for i, d := range created {
			k := sluice.Key{
				ID: fmt.Sprintf("k%d", i), Hash: sha256.Sum256([]byte{byte(i)}),
				Name: "n", Team: "t", CreatedAt: base.Add(d),
			}
			if i == 2 {
				k.ExpiresAt = base
			}
			mustCreateKey(t, st, k)
		}
		if err := st.RevokeKey(ctx, "k1", base.Add(5*time.Hour)); err != nil {
			t.Fatal(err)
		}
		ks, err := st.Keys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, k := range ks {
			ids = append(ids, k.ID)
		}
		if want := []string{"k3", "k1", "k2", "k0"}; !slices.Equal(ids, want) {
			t.Fatalf("Keys order = %v, want %v", ids, want)
		}
		if ks[1].RevokedAt.IsZero() {
			t.Error("revocation missing from Keys")
		}
		if !ks[2].ExpiresAt.Equal(base) {
			t.Errorf("expiry in Keys = %v, want %v", ks[2].ExpiresAt, base)
		}
	})
}

func mustCreateKey(t *testing.T, st sluice.KeyStore, k sluice.Key) {
	t.Helper()
	if err := st.CreateKey(context.Background(), k); err != nil {
		t.Fatalf("CreateKey(%s): %v", k.ID, err)
	}
}

func assertKey(t *testing.T, got, want sluice.Key) {
	t.Helper()
	same := got.ID == want.ID && got.Hash == want.Hash && got.Name == want.Name &&
		got.Team == want.Team && got.Admin == want.Admin &&
		slices.Equal(got.Endpoints, want.Endpoints) &&
		sameTime(got.ExpiresAt, want.ExpiresAt) && sameTime(got.CreatedAt, want.CreatedAt) &&
		sameTime(got.RevokedAt, want.RevokedAt)
	if !same {
		t.Errorf("key mismatch\n got %+v\nwant %+v", got, want)
	}
}

// sameTime reports whether a and b are the same instant and a is in UTC
// (the zero time counts as UTC).
func sameTime(a, b time.Time) bool {
	return a.Equal(b) && (a.IsZero() || a.Location() == time.UTC)
}

// fullRecord returns a record with every field set to a distinctive value.
func fullRecord(id string) sluice.UsageRecord {
	return sluice.UsageRecord{
		RequestID:        id,
		Time:             base.Add(36*time.Hour + 123456*time.Microsecond).In(plus5),
		KeyID:            "k_abc",
		Team:             "research",
		User:             "alice@example.com",
		Endpoint:         "gpt-fast",
		API:              sluice.APIChat,
		Upstream:         "openai-eu",
		UpstreamModel:    "gpt-4o-mini-2024-07-18",
		PromptTokens:     1234,
		CompletionTokens: 5678,
		TotalTokens:      6912,
		UsageSource:      sluice.UsageEstimated,
		CostMicros:       9_876_543_210,
		PriceVersion:     "2026-02-15",
		Status:           499,
		ErrorClass:       sluice.ErrClassClientDisconnect,
		Latency:          12*time.Second + 345678*time.Microsecond,
		TTFT:             789*time.Millisecond + 12*time.Microsecond,
		Stream:           true,
		ClientAddr:       "[2001:db8::1]:54321",
		ClientRequestID:  "client-req-Ünïcode-42",
		UsageContext:     `{"project":"churn","cost_center":"cc-7","n":3}`,
		ServedEntity:     "gpt-fast-b",
		Attempts:         3,
		AttemptLog:       "gpt-fast-a:502:upstream_status;gpt-fast-c:open;gpt-fast-b:499:client_disconnect",
	}
}

// wantStored is rec as a store returns it: UTC, microsecond precision.
func wantStored(rec sluice.UsageRecord) sluice.UsageRecord {
	rec.Time = rec.Time.UTC().Truncate(time.Microsecond)
	rec.Latency = rec.Latency.Truncate(time.Microsecond)
	rec.TTFT = rec.TTFT.Truncate(time.Microsecond)
	return rec
}

func assertUsage(t *testing.T, st sluice.Store, want sluice.UsageRecord) {
	t.Helper()
	got, err := st.Usage(context.Background(), want.RequestID)
	if err != nil {
		t.Fatalf("Usage(%s): %v", want.RequestID, err)
	}
	if !sameTime(got.Time, want.Time) {
		t.Errorf("Time = %v, want %v (UTC)", got.Time, want.Time)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("record mismatch\n got %+v\nwant %+v", got, want)
	}
}

func assertNoUsage(t *testing.T, st sluice.Store, id string) {
	t.Helper()
	if _, err := st.Usage(context.Background(), id); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("Usage(%s): got %v, want ErrNotFound", id, err)
	}
}

func testUsage(t *testing.T, open func(t *testing.T) sluice.Store) {
	ctx := context.Background()

	t.Run("RoundTrip", func(t *testing.T) {
		st := open(t)
		full := fullRecord("req-full")
		zero := sluice.UsageRecord{RequestID: "req-zero"} // every other field zero
		ok := sluice.UsageRecord{
			RequestID: "req-ok", Time: base, API: sluice.APIEmbeddings, UsageSource: sluice.UsageUpstream,
			Status: 200, Latency: time.Microsecond, PromptTokens: 1 << 40, TotalTokens: 1 << 40,
			CostMicros: -5, // a correction; the store does not judge
		}
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{full, zero, ok}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []sluice.UsageRecord{full, zero, ok} {
			assertUsage(t, st, wantStored(r))
		}
	})

	t.Run("MicrosecondPrecision", func(t *testing.T) {
		st := open(t)
		r := fullRecord("req-ns")
		r.Time = base.Add(999 * time.Nanosecond)
		r.Latency = 1500 * time.Nanosecond
		r.TTFT = 999 * time.Nanosecond
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{r}); err != nil {
			t.Fatal(err)
		}
		want := wantStored(r)
		if want.Latency != time.Microsecond || want.TTFT != 0 || !want.Time.Equal(base) {
			t.Fatalf("test expectation wrong: %+v", want)
		}
		assertUsage(t, st, want)
	})

	t.Run("NotFound", func(t *testing.T) {
		st := open(t)
		assertNoUsage(t, st, "missing")
	})

	t.Run("EmptyBatch", func(t *testing.T) {
		st := open(t)
		if err := st.InsertUsage(ctx, nil); err != nil {
			t.Fatalf("InsertUsage(nil): %v", err)
		}
	})

	t.Run("IdempotentAcrossBatches", func(t *testing.T) {
		st := open(t)
		a := fullRecord("req-a")
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{a}); err != nil {
			t.Fatal(err)
		}
		again := a
		again.CostMicros, again.Team = 1, "someone-else"
		b := fullRecord("req-b")
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{again, b}); err != nil {
			t.Fatalf("re-inserting a stored request id: %v", err)
		}
		assertUsage(t, st, wantStored(a))
		assertUsage(t, st, wantStored(b))
		rows, err := st.UsageReport(ctx, sluice.UsageQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Requests != 2 || rows[0].CostMicros != 2*a.CostMicros {
			t.Errorf("report after duplicate insert = %+v, want 2 requests costing %d", rows, 2*a.CostMicros)
		}
	})

	t.Run("DuplicateInBatch", func(t *testing.T) {
		st := open(t)
		first := fullRecord("req-c")
		second := first
		second.CostMicros = 7
		other := fullRecord("req-d")
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{first, other, second}); err != nil {
			t.Fatalf("duplicate inside one batch: %v", err)
		}
		assertUsage(t, st, wantStored(first))
		assertUsage(t, st, wantStored(other))
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		st := open(t)
		bad := fullRecord("") // an empty request id is refused
		batch := []sluice.UsageRecord{fullRecord("req-e"), bad, fullRecord("req-f")}
		if err := st.InsertUsage(ctx, batch); err == nil {
			t.Fatal("batch with an empty request id was accepted")
		}
		assertNoUsage(t, st, "req-e")
		assertNoUsage(t, st, "req-f")
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{batch[0], batch[2]}); err != nil {
			t.Fatalf("retrying the good records: %v", err)
		}
		assertUsage(t, st, wantStored(batch[0]))
	})

	t.Run("UnusualStrings", func(t *testing.T) {
		// Client-supplied text (the OpenAI user field) may hold a NUL or
		// invalid UTF-8. A store may clean such text but must keep the
		// record: refusing it would stall the ledger.
		st := open(t)
		r := fullRecord("req-odd")
		r.User = "bob\x00\xff\xfe'; DROP TABLE usage; --"
		r.ClientAddr = "\xc3("
		r.ClientRequestID = "cr\x00\xff"
		r.UsageContext = `{"a":"\xfe"}`
		if err := st.InsertUsage(ctx, []sluice.UsageRecord{r}); err != nil {
			t.Fatalf("record with NUL and invalid UTF-8: %v", err)
		}
		got, err := st.Usage(ctx, r.RequestID)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.User, "bob") || !strings.HasPrefix(got.ClientRequestID, "cr") ||
			got.CostMicros != r.CostMicros || got.Team != r.Team || got.AttemptLog != r.AttemptLog {
			t.Errorf("record not kept: %+v", got)
		}
	})
}

// groupings covers each dimension alone, several combinations (in
// different orders) and none at all.
var groupings = [][]sluice.UsageGroup{
	nil,
	{sluice.GroupTeam},
	{sluice.GroupEndpoint},
	{sluice.GroupKey},
	{sluice.GroupUser},
	{sluice.GroupModel},
	{sluice.GroupUpstream},
	{sluice.GroupDay},
	{sluice.GroupTeam, sluice.GroupEndpoint},
	{sluice.GroupEndpoint, sluice.GroupTeam},
	{sluice.GroupDay, sluice.GroupTeam, sluice.GroupKey},
	{sluice.GroupModel, sluice.GroupUpstream, sluice.GroupUser},
	{sluice.GroupDay, sluice.GroupTeam, sluice.GroupEndpoint, sluice.GroupKey, sluice.GroupUser, sluice.GroupModel, sluice.GroupUpstream},
}

// Dimension values mix case, punctuation, empty strings and non-ASCII so
// that ordering by byte value is tested, not a locale's collation.
var (
	teams     = []string{"alpha", "Beta", "beta", "_ops", "", "Zulu"}
	endpoints = []string{"gpt-fast", "gpt-Fast", "embed", "claude.sonnet"}
	keyIDs    = []string{"k_01", "k_02", "K_03", ""}
	users     = []string{"", "alice", "Bob", "émile", "zoë"}
	models    = []string{"gpt-4o", "gpt-4o-mini", "text-embedding-3-small", ""}
	upstreams = []string{"openai", "azure-eu", "Azure-us"}
)

func randomRecords(rng *rand.Rand, n int) []sluice.UsageRecord {
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	recs := make([]sluice.UsageRecord, n)
	for i := range recs {
		prompt, completion := rng.Int64N(200_000), rng.Int64N(50_000)
		r := sluice.UsageRecord{
			RequestID: fmt.Sprintf("rnd-%04d-%x", i, rng.Uint32()),
			// Five days, at microsecond resolution, in a non-UTC zone.
			Time:             base.Add(time.Duration(rng.Int64N(int64(5*24*time.Hour/time.Microsecond))) * time.Microsecond).In(plus5),
			KeyID:            pick(keyIDs),
			Team:             pick(teams),
			User:             pick(users),
			Endpoint:         pick(endpoints),
			API:              sluice.APIChat,
			Upstream:         pick(upstreams),
			UpstreamModel:    pick(models),
			PromptTokens:     prompt,
			CompletionTokens: completion,
			TotalTokens:      prompt + completion,
			UsageSource:      sluice.UsageUpstream,
			CostMicros:       rng.Int64N(5_000_000_000),
			PriceVersion:     "v1",
			Status:           200,
			Latency:          time.Duration(rng.Int64N(int64(time.Minute/time.Microsecond))) * time.Microsecond,
		}
		if rng.IntN(7) == 0 {
			r.Status, r.ErrorClass = 502, sluice.ErrClassUpstreamError
		}
		recs[i] = r
	}
	return recs
}

// expectedReport computes in Go what UsageReport must return.
func expectedReport(recs []sluice.UsageRecord, q sluice.UsageQuery) []sluice.UsageRow {
	byKey := map[string]*sluice.UsageRow{}
	var out []*sluice.UsageRow
	for _, r := range recs {
		if !q.From.IsZero() && r.Time.Before(q.From) || !q.To.IsZero() && !r.Time.Before(q.To) {
			continue
		}
		keys := make([]string, len(q.GroupBy))
		for i, g := range q.GroupBy {
			keys[i] = groupValue(r, g)
		}
		id := strings.Join(keys, "\x00")
		row := byKey[id]
		if row == nil {
			row = &sluice.UsageRow{Keys: keys}
			byKey[id] = row
			out = append(out, row)
		}
		row.Requests++
		if r.ErrorClass != "" {
			row.Errors++
		}
		row.PromptTokens += r.PromptTokens
		row.CompletionTokens += r.CompletionTokens
		row.TotalTokens += r.TotalTokens
		row.CostMicros += r.CostMicros
	}
	slices.SortFunc(out, func(a, b *sluice.UsageRow) int { return slices.Compare(a.Keys, b.Keys) })
	rows := make([]sluice.UsageRow, len(out))
	for i, r := range out {
		rows[i] = *r
	}
	return rows
}

func groupValue(r sluice.UsageRecord, g sluice.UsageGroup) string {
	switch g {
	case sluice.GroupTeam:
		return r.Team
	case sluice.GroupEndpoint:
		return r.Endpoint
	case sluice.GroupKey:
		return r.KeyID
	case sluice.GroupUser:
		return r.User
	case sluice.GroupModel:
		return r.UpstreamModel
	case sluice.GroupUpstream:
		return r.Upstream
	case sluice.GroupDay:
		return r.Time.UTC().Format(time.DateOnly)
	}
	panic("unknown group " + g)
}

func assertReport(t *testing.T, st sluice.Store, recs []sluice.UsageRecord, q sluice.UsageQuery) {
	t.Helper()
	got, err := st.UsageReport(context.Background(), q)
	if err != nil {
		t.Fatalf("UsageReport(%v): %v", q.GroupBy, err)
	}
	want := expectedReport(recs, q)
	if len(got) != len(want) {
		t.Fatalf("UsageReport(%v from %v to %v): %d rows, want %d\n got %+v\nwant %+v",
			q.GroupBy, q.From, q.To, len(got), len(want), got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if !slices.Equal(g.Keys, w.Keys) || len(g.Keys) != len(q.GroupBy) {
			t.Fatalf("UsageReport(%v) row %d keys = %q, want %q (rows must be ordered by keys)", q.GroupBy, i, g.Keys, w.Keys)
		}
		g.Keys, w.Keys = nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("UsageReport(%v) row %d sums\n got %+v\nwant %+v", q.GroupBy, i, g, w)
		}
	}
}

func testReport(t *testing.T, open func(t *testing.T) sluice.Store) {
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	st := open(t)
	recs := randomRecords(rng, 400)
	// Records on the edges of days and of the query bounds used below.
	edges := []time.Time{
		base.Add(24*time.Hour - time.Microsecond), // last instant of a UTC day
		base.Add(24 * time.Hour),                  // first instant of the next
		base.Add(-time.Microsecond),               // before every random record
		base.Add(48 * time.Hour),                  // exactly on From below
		base.Add(72 * time.Hour),                  // exactly on To below
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Unix(0, 0),
	}
	for i, at := range edges {
		r := fullRecord(fmt.Sprintf("edge-%d", i))
		r.Time = at.In(plus5)
		recs = append(recs, r)
	}
	for batch := range slices.Chunk(recs, 64) {
		if err := st.InsertUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Groupings", func(t *testing.T) {
		for _, g := range groupings {
			assertReport(t, st, recs, sluice.UsageQuery{GroupBy: g})
		}
	})

	t.Run("Bounds", func(t *testing.T) {
		from, to := base.Add(48*time.Hour).In(plus5), base.Add(72*time.Hour)
		for _, q := range []sluice.UsageQuery{
			{From: from},
			{To: to},
			{From: from, To: to},
			{From: from, To: to, GroupBy: []sluice.UsageGroup{sluice.GroupDay, sluice.GroupTeam}},
			{From: to, To: from}, // empty range
			{From: from, To: from},
			{From: from, To: from.Add(time.Microsecond)}, // just the record on From
		} {
			assertReport(t, st, recs, q)
		}
	})

	// Stores may answer whole days from a daily rollup and partial days
	// from the records; either way the sums must be those of the records.
	t.Run("PartialDays", func(t *testing.T) {
		at := func(d, h int, extra time.Duration) time.Time {
			return base.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + extra)
		}
		for _, q := range []sluice.UsageQuery{
			{From: at(0, 5, 0), To: at(3, 7, 0)},                                // partial days at both ends
			{From: at(0, 5, 0).In(plus5), To: at(3, 0, 0)},                      // partial start only
			{From: at(1, 0, 0), To: at(4, 0, -time.Microsecond)},                // partial end only
			{From: at(1, 0, time.Microsecond)},                                  // partial start, open end
			{To: at(2, 0, time.Microsecond)},                                    // open start, partial end
			{From: at(1, 3, 0), To: at(1, 20, 0)},                               // inside one day
			{From: at(1, 3, 0), To: at(2, 20, 0)},                               // across one midnight, no whole day
			{From: at(1, 0, -time.Microsecond), To: at(2, 0, time.Microsecond)}, // one whole day and an instant each side
			{From: at(1, 0, 500*time.Nanosecond), To: at(3, 0, 1500*time.Nanosecond)},
		} {
			for _, g := range groupings {
				q.GroupBy = g
				assertReport(t, st, recs, q)
			}
		}
		// Random bounds, a third of them on a midnight.
		for range 40 {
			var q sluice.UsageQuery
			for _, p := range []*time.Time{&q.From, &q.To} {
				switch rng.IntN(4) {
				case 0: // open
				case 1:
					*p = base.Add(time.Duration(rng.IntN(7)-1) * 24 * time.Hour)
				default:
					*p = base.Add(time.Duration(rng.Int64N(int64(7*24*time.Hour/time.Microsecond)))*time.Microsecond - 24*time.Hour)
				}
			}
			q.GroupBy = groupings[rng.IntN(len(groupings))]
			assertReport(t, st, recs, q)
		}
	})

	t.Run("DaysAreUTC", func(t *testing.T) {
		rows, err := st.UsageReport(ctx, sluice.UsageQuery{
			From:    base.Add(24*time.Hour - time.Microsecond),
			To:      base.Add(24*time.Hour + time.Microsecond),
			GroupBy: []sluice.UsageGroup{sluice.GroupDay},
		})
		if err != nil {
			t.Fatal(err)
		}
		var days []string
		for _, r := range rows {
			days = append(days, r.Keys[0])
		}
		if want := []string{"2026-03-01", "2026-03-02"}; !slices.Equal(days, want) {
			t.Errorf("days = %v, want %v", days, want)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		for _, q := range []sluice.UsageQuery{
			{From: base.Add(-48 * time.Hour), To: base.Add(-24 * time.Hour)},
			// A whole day and partial days on both sides, none with records.
			{From: base.Add(-66 * time.Hour), To: base.Add(-6 * time.Hour)},
		} {
			rows, err := st.UsageReport(ctx, q)
			if err != nil || len(rows) != 0 {
				t.Errorf("report from %v to %v, where there are no records = %+v, %v; want no rows", q.From, q.To, rows, err)
			}
		}
	})

	t.Run("UnknownGroup", func(t *testing.T) {
		if _, err := st.UsageReport(ctx, sluice.UsageQuery{GroupBy: []sluice.UsageGroup{"colour"}}); err == nil {
			t.Error("unknown group accepted")
		}
	})
}
