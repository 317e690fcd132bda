package storetest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice"
)

// RunServing runs the serving-endpoint conformance suite. open must return
// a new, empty store for each call and arrange for it to be closed when t
// ends.
func RunServing(t *testing.T, open func(t *testing.T) sluice.ServingStore) {
	t.Run("RoundTrip", func(t *testing.T) { testServingRoundTrip(t, open(t)) })
	t.Run("Conflict", func(t *testing.T) { testServingConflict(t, open(t)) })
	t.Run("Update", func(t *testing.T) { testServingUpdate(t, open(t)) })
	t.Run("ConcurrentUpdates", func(t *testing.T) { testServingConcurrentUpdates(t, open(t)) })
	t.Run("Delete", func(t *testing.T) { testServingDelete(t, open(t)) })
	t.Run("List", func(t *testing.T) { testServingList(t, open(t)) })
}

// servingRecord returns a record whose spec is JSON with its keys out of
// order, odd spacing, escapes and non-ASCII text: the store must return
// it byte for byte.
func servingRecord(name string) sluice.ServingEndpointRecord {
	return sluice.ServingEndpointRecord{
		Name:    name,
		ID:      "ep-id-" + name,
		Creator: "k_admin",
		Spec: []byte(`{"name":"` + name + `",  "config":{"served_entities":[{"name":"b","entity_name":"gpt-4o"},` +
			`{"name":"a"}]}, "tags":[{"key":"zeta","value":"é \u00e9 \"q\""}],"ai_gateway":{}, "description":"` +
			"tab\there" + `"}` + "\n"),
		CreatedAt: base.Add(3*time.Hour + 123456789*time.Nanosecond).In(plus5),
		UpdatedAt: base.Add(4*time.Hour + 987654321*time.Nanosecond).In(plus5),
	}
}

// storedServing is e as a store returns it: version v, UTC times kept to
// the microsecond.
func storedServing(e sluice.ServingEndpointRecord, v int64) sluice.ServingEndpointRecord {
	e.Version = v
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Microsecond)
	e.UpdatedAt = e.UpdatedAt.UTC().Truncate(time.Microsecond)
	return e
}

func sameServing(got, want sluice.ServingEndpointRecord) bool {
	return got.Name == want.Name && got.ID == want.ID && got.Creator == want.Creator &&
		bytes.Equal(got.Spec, want.Spec) && got.Version == want.Version &&
		sameTime(got.CreatedAt, want.CreatedAt) && sameTime(got.UpdatedAt, want.UpdatedAt)
}

func assertServing(t *testing.T, st sluice.ServingStore, want sluice.ServingEndpointRecord) {
	t.Helper()
	got, err := st.ServingEndpoint(context.Background(), want.Name)
	if err != nil {
		t.Fatalf("ServingEndpoint(%s): %v", want.Name, err)
	}
	if !sameServing(got, want) {
		t.Errorf("serving endpoint mismatch\n got %+v\n     spec %q\nwant %+v\n     spec %q", got, got.Spec, want, want.Spec)
	}
}

func mustCreateServing(t *testing.T, st sluice.ServingStore, e sluice.ServingEndpointRecord) {
	t.Helper()
	if err := st.CreateServingEndpoint(context.Background(), e); err != nil {
		t.Fatalf("CreateServingEndpoint(%s): %v", e.Name, err)
	}
}

func testServingRoundTrip(t *testing.T, st sluice.ServingStore) {
	e := servingRecord("chat-prod")
	e.Version = 7 // ignored: a new endpoint is version 1
	mustCreateServing(t, st, e)
	assertServing(t, st, storedServing(e, 1))

	empty := sluice.ServingEndpointRecord{Name: "empty", ID: "ep-empty", CreatedAt: base, UpdatedAt: base}
	mustCreateServing(t, st, empty)
	got, err := st.ServingEndpoint(context.Background(), "empty")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec) != 0 || got.Creator != "" || got.Version != 1 {
		t.Errorf("endpoint with empty spec = %+v", got)
	}
}

func testServingConflict(t *testing.T, st sluice.ServingStore) {
	ctx := context.Background()
	e := servingRecord("dup")
	mustCreateServing(t, st, e)
	again := servingRecord("dup")
	again.ID, again.Spec = "ep-other-id", []byte(`{"other":true}`)
	if err := st.CreateServingEndpoint(ctx, again); !errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("creating an existing name: got %v, want ErrConflict", err)
	}
	sameID := servingRecord("other-name")
	sameID.ID = e.ID
	if err := st.CreateServingEndpoint(ctx, sameID); !errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("creating an existing id under a new name: got %v, want ErrConflict", err)
	}
	assertServing(t, st, storedServing(e, 1))
	if _, err := st.ServingEndpoint(ctx, "other-name"); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("refused endpoint stored: %v", err)
	}
}

func testServingUpdate(t *testing.T, st sluice.ServingStore) {
	ctx := context.Background()
	e := servingRecord("upd")
	mustCreateServing(t, st, e)

	u := e
	u.Version = 1
	u.Spec = []byte(`{"z":1,"a":2}`)
	u.UpdatedAt = base.Add(48*time.Hour + 5*time.Microsecond).In(plus5)
	// Only the spec and the update time change.
	u.ID, u.Creator, u.CreatedAt = "ignored-id", "ignored-creator", base.Add(time.Hour)
	if err := st.UpdateServingEndpoint(ctx, u); err != nil {
		t.Fatalf("update from the stored version: %v", err)
	}
	want := storedServing(e, 2)
	want.Spec, want.UpdatedAt = u.Spec, u.UpdatedAt.UTC()
	assertServing(t, st, want)

	stale := u
	stale.Spec = []byte(`{"stale":true}`)
	if err := st.UpdateServingEndpoint(ctx, stale); !errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("update from a stale version: got %v, want ErrConflict", err)
	}
	ahead := u
	ahead.Version = 5
	if err := st.UpdateServingEndpoint(ctx, ahead); !errors.Is(err, sluice.ErrConflict) {
		t.Fatalf("update from a version never stored: got %v, want ErrConflict", err)
	}
	assertServing(t, st, want)

	next := u
	next.Version, next.Spec = 2, nil
	if err := st.UpdateServingEndpoint(ctx, next); err != nil {
		t.Fatalf("second update: %v", err)
	}
	want.Version, want.Spec = 3, nil
	assertServing(t, st, want)

	missing := servingRecord("missing")
	missing.Version = 1
	if err := st.UpdateServingEndpoint(ctx, missing); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("update of an unknown name: got %v, want ErrNotFound", err)
	}
}

// Eight writers update from the same version at once: one wins, the
// others are told the version moved on, and the stored spec is the
// winner's.
func testServingConcurrentUpdates(t *testing.T, st sluice.ServingStore) {
	ctx := context.Background()
	e := servingRecord("race")
	mustCreateServing(t, st, e)
	const writers = 8
	errs := make([]error, writers)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range writers {
		wg.Go(func() {
			u := e
			u.Version = 1
			u.Spec = fmt.Appendf(nil, `{"writer":%d}`, i)
			u.UpdatedAt = base.Add(time.Duration(i+1) * time.Minute)
			<-start
			errs[i] = st.UpdateServingEndpoint(ctx, u)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both updated from version 1", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, sluice.ErrConflict):
			t.Fatalf("writer %d: got %v, want nil or ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer updated the endpoint")
	}
	want := storedServing(e, 2)
	want.Spec = fmt.Appendf(nil, `{"writer":%d}`, winner)
	want.UpdatedAt = base.Add(time.Duration(winner+1) * time.Minute)
	assertServing(t, st, want)
}

func testServingDelete(t *testing.T, st sluice.ServingStore) {
	ctx := context.Background()
	e := servingRecord("gone")
	mustCreateServing(t, st, e)
	keep := servingRecord("kept")
	mustCreateServing(t, st, keep)
	if err := st.DeleteServingEndpoint(ctx, e.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ServingEndpoint(ctx, e.Name); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("ServingEndpoint after delete: got %v, want ErrNotFound", err)
	}
	if err := st.DeleteServingEndpoint(ctx, e.Name); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("deleting twice: got %v, want ErrNotFound", err)
	}
	u := e
	u.Version = 1
	if err := st.UpdateServingEndpoint(ctx, u); !errors.Is(err, sluice.ErrNotFound) {
		t.Errorf("update after delete: got %v, want ErrNotFound", err)
	}
	assertServing(t, st, storedServing(keep, 1))
	// The name and id are free again, and the new endpoint starts over.
	mustCreateServing(t, st, e)
	assertServing(t, st, storedServing(e, 1))
}

func testServingList(t *testing.T, st sluice.ServingStore) {
	ctx := context.Background()
	es, err := st.ServingEndpoints(ctx)
	if err != nil || len(es) != 0 {
		t.Fatalf("ServingEndpoints on an empty store = %v, %v", es, err)
	}
	// Byte order, not a locale's: upper case first, '-' before '_'.
	names := []string{"b_x", "a-x", "B", "a_x", "a"}
	for _, n := range names {
		mustCreateServing(t, st, servingRecord(n))
	}
	if err := st.UpdateServingEndpoint(ctx, func() sluice.ServingEndpointRecord {
		e := servingRecord("a_x")
		e.Version, e.Spec = 1, []byte("{}")
		return e
	}()); err != nil {
		t.Fatal(err)
	}
	es, err = st.ServingEndpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Name)
		want := storedServing(servingRecord(e.Name), 1)
		if e.Name == "a_x" {
			want.Version, want.Spec = 2, []byte("{}")
		}
		if !sameServing(e, want) {
			t.Errorf("listed endpoint %+v, want %+v", e, want)
		}
	}
	if want := []string{"B", "a", "a-x", "a_x", "b_x"}; !slices.Equal(got, want) {
		t.Errorf("ServingEndpoints order = %v, want %v", got, want)
	}
}

// CapacityStore is what the capacity conformance suite needs of a store:
// the charges and the ledger whose records they are attributed by.
type CapacityStore interface {
	sluice.UsageStore
	sluice.CapacityStore
}

// RunCapacity runs the capacity conformance suite. open must return a new,
// empty store for each call and arrange for it to be closed when t ends.
func RunCapacity(t *testing.T, open func(t *testing.T) CapacityStore) {
	t.Run("AccrueIdempotent", func(t *testing.T) { testAccrueIdempotent(t, open(t)) })
	t.Run("AccrueConcurrent", func(t *testing.T) { testAccrueConcurrent(t, open(t)) })
	t.Run("EntityUsage", func(t *testing.T) { testEntityUsage(t, open(t)) })
}

func capacityCharges(t *testing.T, st CapacityStore, from, to time.Time) []sluice.CapacityCharge {
	t.Helper()
	cs, err := st.CapacityCharges(context.Background(), from, to)
	if err != nil {
		t.Fatalf("CapacityCharges(%v, %v): %v", from, to, err)
	}
	for _, c := range cs {
		if c.Hour.Location() != time.UTC {
			t.Fatalf("charge hour %v not in UTC", c.Hour)
		}
	}
	return cs
}

func sameCharges(a, b []sluice.CapacityCharge) bool {
	return slices.EqualFunc(a, b, func(x, y sluice.CapacityCharge) bool {
		return x.Endpoint == y.Endpoint && x.ServedEntity == y.ServedEntity && x.Hour.Equal(y.Hour) &&
			x.CostMicros == y.CostMicros && x.TokensPerSecond == y.TokensPerSecond && x.Concurrency == y.Concurrency
	})
}

func testAccrueIdempotent(t *testing.T, st CapacityStore) {
	ctx := context.Background()
	h := base.Add(10 * time.Hour)
	charge := func(ep, entity string, hour time.Time, cost int64) sluice.CapacityCharge {
		return sluice.CapacityCharge{Endpoint: ep, ServedEntity: entity, Hour: hour, CostMicros: cost, TokensPerSecond: 970, Concurrency: 0}
	}
	first := []sluice.CapacityCharge{
		charge("llama", "b", h, 1_250_000),
		charge("llama", "a", h.Add(time.Hour).In(plus5), 1_500_000), // another zone: the same instant
		charge("llama", "a", h, 1_000_000),
		charge("llama", "a", h, 9), // again in the same batch: the first wins
		{Endpoint: "Embed", ServedEntity: "e", Hour: h, CostMicros: 42, Concurrency: 8},
	}
	if err := st.AccrueCapacity(ctx, first); err != nil {
		t.Fatal(err)
	}
	// A restart, or another replica, accrues the same hours again.
	second := []sluice.CapacityCharge{
		charge("llama", "a", h, 7),
		charge("llama", "a", h.Add(2*time.Hour), 2_000_000),
	}
	if err := st.AccrueCapacity(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := st.AccrueCapacity(ctx, nil); err != nil {
		t.Fatalf("AccrueCapacity(nil): %v", err)
	}
	want := []sluice.CapacityCharge{
		{Endpoint: "Embed", ServedEntity: "e", Hour: h, CostMicros: 42, Concurrency: 8},
		charge("llama", "a", h, 1_000_000),
		charge("llama", "a", h.Add(time.Hour), 1_500_000),
		charge("llama", "a", h.Add(2*time.Hour), 2_000_000),
		charge("llama", "b", h, 1_250_000),
	}
	if got := capacityCharges(t, st, time.Time{}, time.Time{}); !sameCharges(got, want) {
		t.Errorf("charges\n got %+v\nwant %+v", got, want)
	}
	// [from, to): the hour on from is in, the hour on to is out.
	if got := capacityCharges(t, st, h.Add(time.Hour), h.Add(2*time.Hour)); !sameCharges(got, want[2:3]) {
		t.Errorf("charges in one hour = %+v, want %+v", got, want[2:3])
	}
	if got := capacityCharges(t, st, h.Add(time.Nanosecond), time.Time{}); !sameCharges(got, want[2:4]) {
		t.Errorf("charges after the first hour = %+v, want %+v", got, want[2:4])
	}
	if got := capacityCharges(t, st, time.Time{}, h.Add(time.Hour)); !sameCharges(got, []sluice.CapacityCharge{want[0], want[1], want[4]}) {
		t.Errorf("charges before the second hour = %+v", got)
	}
	if got := capacityCharges(t, st, h.Add(3*time.Hour), h); len(got) != 0 {
		t.Errorf("charges in an empty range = %+v", got)
	}
}

// Replicas accrue the same hours at the same time: each hour is charged
// once, and none of them fails.
func testAccrueConcurrent(t *testing.T, st CapacityStore) {
	ctx := context.Background()
	var charges []sluice.CapacityCharge
	for e := range 3 {
		for h := range 24 {
			charges = append(charges, sluice.CapacityCharge{Endpoint: "ep", ServedEntity: fmt.Sprintf("entity-%d", e),
				Hour: base.Add(time.Duration(h) * time.Hour), CostMicros: int64(e*100 + h), TokensPerSecond: 100})
		}
	}
	const replicas = 6
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			mine := slices.Clone(charges)
			if i%2 == 1 {
				slices.Reverse(mine)
			}
			errs[i] = st.AccrueCapacity(ctx, mine)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	if got := capacityCharges(t, st, time.Time{}, time.Time{}); !sameCharges(got, charges) {
		t.Errorf("after concurrent accrual: %d charges, want %d\n got %+v", len(got), len(charges), got)
	}
}

// expectedEntityUsage computes in Go what EntityUsage must return.
func expectedEntityUsage(recs []sluice.UsageRecord, from, to time.Time) []sluice.EntityHourUsage {
	type key struct {
		endpoint, entity string
		hour             int64
		team             string
	}
	sums := map[key]*sluice.EntityHourUsage{}
	busy := map[key]int64{} // microseconds
	var keys []key
	for _, r := range recs {
		at := r.Time.Truncate(time.Microsecond)
		if r.ServedEntity == "" || !from.IsZero() && at.Before(from) || !to.IsZero() && !at.Before(to) {
			continue
		}
		k := key{r.Endpoint, r.ServedEntity, at.UTC().Truncate(time.Hour).Unix(), r.Team}
		u := sums[k]
		if u == nil {
			u = &sluice.EntityHourUsage{Endpoint: k.endpoint, ServedEntity: k.entity, Hour: time.Unix(k.hour, 0).UTC(), Team: k.team}
			sums[k] = u
			keys = append(keys, k)
		}
		u.Requests++
		u.Tokens += r.TotalTokens
		busy[k] += r.Latency.Microseconds()
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(strings.Compare(a.endpoint, b.endpoint), strings.Compare(a.entity, b.entity),
			cmp.Compare(a.hour, b.hour), strings.Compare(a.team, b.team))
	})
	out := make([]sluice.EntityHourUsage, len(keys))
	for i, k := range keys {
		out[i] = *sums[k]
		out[i].BusyMillis = busy[k] / 1000
	}
	return out
}

func testEntityUsage(t *testing.T, st CapacityStore) {
	ctx := context.Background()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	var recs []sluice.UsageRecord
	// Six hours from base, at microsecond resolution and given in a zone
	// with a whole-hour offset; a served entity of "" is a record of an
	// endpoint without served entities and is not attributed.
	for i := range 600 {
		total := rng.Int64N(100_000)
		recs = append(recs, sluice.UsageRecord{
			RequestID:    fmt.Sprintf("eu-%04d", i),
			Time:         base.Add(time.Duration(rng.Int64N(int64(6*time.Hour/time.Microsecond))) * time.Microsecond).In(plus5),
			Team:         pick([]string{"ml", "ML", "finance", ""}),
			Endpoint:     pick([]string{"llama", "Llama", "embed"}),
			ServedEntity: pick([]string{"a", "b", "B", ""}),
			TotalTokens:  total,
			PromptTokens: total,
			Latency:      time.Duration(rng.Int64N(int64(90*time.Second/time.Microsecond))) * time.Microsecond,
			Attempts:     1,
			Status:       200,
		})
	}
	// Records on hour boundaries and on the query bounds used below, one
	// before 1970 (whose hour is floored), and one in a zone with a
	// fractional offset.
	edges := []time.Time{
		base.Add(time.Hour - time.Microsecond),
		base.Add(time.Hour),
		base.Add(2 * time.Hour),
		base.Add(4*time.Hour - time.Microsecond),
		base.Add(4 * time.Hour),
		base.Add(90 * time.Minute).In(time.FixedZone("UTC+05:45", 5*3600+45*60)),
		time.Unix(0, 0).Add(-time.Microsecond),
		base.Add(-time.Microsecond),
	}
	for i, at := range edges {
		recs = append(recs, sluice.UsageRecord{RequestID: fmt.Sprintf("edge-%d", i), Time: at, Team: "ml",
			Endpoint: "llama", ServedEntity: "a", TotalTokens: 1000 + int64(i), Latency: 1500*time.Microsecond + time.Duration(i)})
	}
	for batch := range slices.Chunk(recs, 100) {
		if err := st.InsertUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range [][2]time.Time{
		{},
		{base, base.Add(6 * time.Hour)},
		{base.Add(time.Hour), base.Add(4 * time.Hour)},                                   // hour bounds, edge records on both
		{base.Add(time.Hour).In(plus5), base.Add(2 * time.Hour)},                         // one hour
		{base.Add(90 * time.Minute), base.Add(150*time.Minute + 3*time.Microsecond)},     // across an hour boundary, mid-hour bounds
		{base.Add(time.Hour - time.Microsecond), base.Add(time.Hour + time.Microsecond)}, // two microseconds
		{base.Add(time.Hour + 500*time.Nanosecond), base.Add(4*time.Hour + 1)},           // sub-microsecond bounds
		{time.Time{}, base},
		{base.Add(3 * time.Hour), time.Time{}},
		{base.Add(-48 * time.Hour), base.Add(-24 * time.Hour)}, // nothing there
		{base.Add(2 * time.Hour), base.Add(time.Hour)},         // empty range
	} {
		got, err := st.EntityUsage(ctx, q[0], q[1])
		if err != nil {
			t.Fatalf("EntityUsage(%v, %v): %v", q[0], q[1], err)
		}
		want := expectedEntityUsage(recs, q[0], q[1])
		if len(got) != len(want) {
			t.Fatalf("EntityUsage(%v, %v): %d rows, want %d\n got %+v\nwant %+v", q[0], q[1], len(got), len(want), got, want)
		}
		for i := range want {
			g, w := got[i], want[i]
			if !sameTime(g.Hour, w.Hour) {
				t.Fatalf("EntityUsage(%v, %v) row %d: hour %v, want %v (UTC)", q[0], q[1], i, g.Hour, w.Hour)
			}
			g.Hour, w.Hour = time.Time{}, time.Time{}
			if g != w {
				t.Fatalf("EntityUsage(%v, %v) row %d\n got %+v\nwant %+v", q[0], q[1], i, got[i], want[i])
			}
		}
	}
}

// RunInferenceLog runs the inference-log conformance suite. open must
// return a new, empty store for each call and arrange for it to be closed
// when t ends.
func RunInferenceLog(t *testing.T, open func(t *testing.T) sluice.InferenceLogStore) {
	t.Run("InsertAndQuery", func(t *testing.T) { testInferenceLog(t, open(t)) })
	t.Run("AllOrNothing", func(t *testing.T) { testInferenceAllOrNothing(t, open(t)) })
	t.Run("UnusualStrings", func(t *testing.T) { testInferenceUnusualStrings(t, open(t)) })
}

func inferenceRow(id, endpoint string, at time.Time) sluice.InferenceLogRecord {
	return sluice.InferenceLogRecord{
		RequestTime:         at,
		RequestID:           id,
		ClientRequestID:     "client-" + id,
		Endpoint:            endpoint,
		ServedEntity:        "gpt-b",
		StatusCode:          200,
		ExecutionDurationMs: 1234,
		Request:             `{"messages":[{"role":"user","content":"[REDACTED] é"}],"max_tokens":5}`,
		Response:            `{"choices":[{"message":{"content":"hi"}}],"usage":{"total_tokens":9}}`,
		SamplingFraction:    0.25,
		Requester:           "k_abc/alice@example.com",
	}
}

// storedInference is r as a store returns it: UTC, to the microsecond.
func storedInference(r sluice.InferenceLogRecord) sluice.InferenceLogRecord {
	r.RequestTime = r.RequestTime.UTC().Truncate(time.Microsecond)
	return r
}

func inferenceLog(t *testing.T, st sluice.InferenceLogStore, endpoint string, from, to time.Time, limit int) []sluice.InferenceLogRecord {
	t.Helper()
	rows, err := st.InferenceLog(context.Background(), endpoint, from, to, limit)
	if err != nil {
		t.Fatalf("InferenceLog(%s, %v, %v, %d): %v", endpoint, from, to, limit, err)
	}
	return rows
}

func assertInference(t *testing.T, got, want []sluice.InferenceLogRecord) {
	t.Helper()
	ok := slices.EqualFunc(got, want, func(a, b sluice.InferenceLogRecord) bool {
		if !sameTime(a.RequestTime, b.RequestTime) {
			return false
		}
		a.RequestTime, b.RequestTime = time.Time{}, time.Time{}
		return a == b
	})
	if !ok {
		var g, w []string
		for _, r := range got {
			g = append(g, r.RequestID)
		}
		for _, r := range want {
			w = append(w, r.RequestID)
		}
		t.Errorf("inference log = %v, want %v\n got %+v\nwant %+v", g, w, got, want)
	}
}

func testInferenceLog(t *testing.T, st sluice.InferenceLogStore) {
	ctx := context.Background()
	t0 := base.Add(5*time.Hour + 123456*time.Microsecond)
	r1 := inferenceRow("r1", "chat", t0.Add(789*time.Nanosecond).In(plus5)) // stored at t0
	r2 := inferenceRow("r2", "chat", t0.Add(time.Second))
	r2.StatusCode, r2.Response, r2.ServedEntity, r2.SamplingFraction = 502, "", "gpt-a", 1
	r3 := inferenceRow("r3", "chat", t0.Add(2*time.Second))
	r3.Request, r3.ClientRequestID = "", ""                 // over the size cap; no client id
	r4 := inferenceRow("r4", "chat", t0.Add(2*time.Second)) // the same instant as r3
	other := inferenceRow("o1", "embed", t0.Add(time.Second))
	dup := r1
	dup.Response = "second copy"
	if err := st.InsertInferenceLog(ctx, []sluice.InferenceLogRecord{r1, r3, dup, other}); err != nil {
		t.Fatal(err)
	}
	// A retried batch: r1 is stored already and stays as it was.
	if err := st.InsertInferenceLog(ctx, []sluice.InferenceLogRecord{dup, r2, r4}); err != nil {
		t.Fatalf("re-inserting a stored request id: %v", err)
	}
	if err := st.InsertInferenceLog(ctx, nil); err != nil {
		t.Fatalf("InsertInferenceLog(nil): %v", err)
	}
	all := []sluice.InferenceLogRecord{storedInference(r4), storedInference(r3), storedInference(r2), storedInference(r1)}
	assertInference(t, inferenceLog(t, st, "chat", time.Time{}, time.Time{}, 100), all)
	assertInference(t, inferenceLog(t, st, "chat", time.Time{}, time.Time{}, 2), all[:2])
	assertInference(t, inferenceLog(t, st, "chat", time.Time{}, time.Time{}, 0), nil)
	assertInference(t, inferenceLog(t, st, "embed", time.Time{}, time.Time{}, 10), []sluice.InferenceLogRecord{storedInference(other)})
	assertInference(t, inferenceLog(t, st, "missing", time.Time{}, time.Time{}, 10), nil)
	// [from, to): r1's (stored) instant is in, r3's and r4's is out; a
	// bound a nanosecond after r1 excludes it.
	assertInference(t, inferenceLog(t, st, "chat", t0, t0.Add(2*time.Second), 10), all[2:])
	assertInference(t, inferenceLog(t, st, "chat", t0.Add(time.Nanosecond), time.Time{}, 10), all[:3])
	assertInference(t, inferenceLog(t, st, "chat", time.Time{}, t0.Add(time.Second), 10), all[3:])
	assertInference(t, inferenceLog(t, st, "chat", t0.Add(time.Second), t0.Add(time.Second+time.Microsecond), 10), all[2:3])
	assertInference(t, inferenceLog(t, st, "chat", t0.Add(time.Hour), t0, 10), nil)
}

func testInferenceAllOrNothing(t *testing.T, st sluice.InferenceLogStore) {
	ctx := context.Background()
	batch := []sluice.InferenceLogRecord{inferenceRow("a", "chat", base), inferenceRow("", "chat", base), inferenceRow("b", "chat", base)}
	if err := st.InsertInferenceLog(ctx, batch); err == nil {
		t.Fatal("batch with an empty request id was accepted")
	}
	assertInference(t, inferenceLog(t, st, "chat", time.Time{}, time.Time{}, 10), nil)
	if err := st.InsertInferenceLog(ctx, []sluice.InferenceLogRecord{batch[0], batch[2]}); err != nil {
		t.Fatalf("retrying the good rows: %v", err)
	}
	assertInference(t, inferenceLog(t, st, "chat", time.Time{}, time.Time{}, 10),
		[]sluice.InferenceLogRecord{storedInference(batch[2]), storedInference(batch[0])})
}

// Payloads come from clients and upstreams and may hold a NUL or invalid
// UTF-8. A store may clean such text but must keep the row.
func testInferenceUnusualStrings(t *testing.T, st sluice.InferenceLogStore) {
	ctx := context.Background()
	r := inferenceRow("odd", "chat", base)
	r.Request = "{\"x\":\"a\x00b\xff\"}"
	r.ClientRequestID = "\xc3("
	if err := st.InsertInferenceLog(ctx, []sluice.InferenceLogRecord{r}); err != nil {
		t.Fatalf("row with NUL and invalid UTF-8: %v", err)
	}
	rows := inferenceLog(t, st, "chat", time.Time{}, time.Time{}, 10)
	if len(rows) != 1 || rows[0].RequestID != "odd" || rows[0].Response != r.Response || len(rows[0].Request) < 8 {
		t.Errorf("row not kept: %+v", rows)
	}
}
